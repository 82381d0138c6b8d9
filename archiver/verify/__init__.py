"""`verify` and `reindex`: the archive checked against its manifests, and the state rebuilt
from them. The checks are pure (findings.py); views read a local folder or a bucket."""

from __future__ import annotations

from archiver.config import Config
from archiver.verify.backends import open_view
from archiver.verify.check import OnProgress, verify
from archiver.verify.findings import VerifyReport, format_report, report_json


def verify_archive(
    config: Config,
    *,
    only: list[str] | None = None,
    read_data: bool = False,
    on_progress: OnProgress | None = None,
) -> VerifyReport:
    """Verify the archive `config` names against its state (StorageAccessError when the
    storage cannot be read)."""
    view = open_view(config.storage)
    try:
        return verify(view, config.state, only=only, read_data=read_data, on_progress=on_progress)
    finally:
        view.close()


__all__ = ["VerifyReport", "format_report", "report_json", "verify_archive"]
