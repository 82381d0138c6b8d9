"""The commands: arguments and exit codes (main.py), and each command's own shell — backfill,
run (the daemon), status, demo — with the terminal's progress lines."""
