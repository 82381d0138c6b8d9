"""Benchmarks of suno-archiver against plain tools, on 127.0.0.1 only: `python -m bench`.

Each measurement prints one table with its baseline measured in the same run (see
docs/benchmarks.md for the latest figures and what each one means).
"""
