"""suno-archiver: archive finished Suno generations before their URLs expire."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("suno-archiver")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
