"""Where archived bytes go. The engine talks only to `Storage`; see local.py and s3.py."""

from archiver.storage.base import Storage, check_key

__all__ = ["Storage", "check_key"]
