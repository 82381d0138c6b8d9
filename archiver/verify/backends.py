"""Which view of the archive a storage config opens: kept apart from view.py, which both
views import, so that neither imports the other's module back."""

from __future__ import annotations

from archiver.config import StorageConfig
from archiver.verify.view import ArchiveView


def open_view(config: StorageConfig) -> ArchiveView:
    """The view of the archive `config` names (StorageAccessError when it cannot be read)."""
    if config.backend == "s3":
        from archiver.verify.s3_view import S3View  # boto3 loads only when a bucket is used

        return S3View(config)
    from archiver.verify.local_view import LocalView

    return LocalView(config.path)
