"""suno-archiver: archive finished Suno generations before their URLs expire."""

# The one place the version is written (pyproject.toml reads it): importlib.metadata would
# cost every start ~35 ms of imports.
__version__ = "0.1.0"
