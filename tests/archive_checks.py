"""Checks every archive test makes: what the manifests say is exactly what is on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

TEMP_DIR = ".suno-archiver-tmp"
LOCK_FILE = ".suno-archiver.lock"  # held while a LocalStorage is open; not a temp file
VIEWS = ("index.html", "playlist.m3u8")  # derived from the manifests, at the archive root
VIEW_FOLDERS = ("browse", "playlists")  # the page's shard files and the playlists, likewise


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def id3v2_size(head: bytes) -> int:
    """Bytes of a leading ID3v2 tag, by the size in its header (footer included); 0 if none."""
    if not head.startswith(b"ID3"):
        return 0
    size = 0
    for byte in head[6:10]:
        size = (size << 7) | byte
    footer = 10 if head[3] == 4 and head[5] & 0x10 else 0
    return 10 + size + footer


def strip_id3v2(data: bytes) -> bytes:
    """The audio frames: what follows the leading ID3v2 tag."""
    return data[id3v2_size(data[:10]) :]


def file_entries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    entries = [e for e in (*doc.get("images", []), *doc.get("files", [])) if e]
    for track in doc.get("tracks", []):
        entries += [track[role] for role in ("audio", "image", "lyrics", "lrc") if track.get(role)]
    return entries


def verify_archive(root: Path) -> dict[str, dict[str, Any]]:
    """Every stored file named by a manifest exists with the manifest's size and SHA-256,
    every file in the archive is named by a manifest, and no temp file is left behind.
    Returns the manifests by task ID."""
    manifests: dict[str, dict[str, Any]] = {}
    named: set[Path] = set()
    for path in sorted(root.glob("*/manifest.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["task_id"] == path.parent.name
        manifests[doc["task_id"]] = doc
        named.add(path)
        for entry in file_entries(doc):
            if "path" not in entry:
                assert entry["error"] and entry["source_url"]
                continue
            stored = root / entry["path"]
            assert stored.resolve().is_relative_to(root.resolve())
            assert stored.stat().st_size == entry["bytes"], entry["path"]
            assert sha256_of(stored) == entry["sha256"], entry["path"]
            named.add(stored)
    named |= {root / name for name in VIEWS}
    named |= {p for folder in VIEW_FOLDERS for p in (root / folder).rglob("*")}
    on_disk = {p for p in root.rglob("*") if p.is_file() and TEMP_DIR not in p.parts}
    assert on_disk <= named, f"files no manifest names: {sorted(map(str, on_disk - named))}"
    temp = root / TEMP_DIR
    leftovers = [p for p in temp.iterdir() if p.name != LOCK_FILE] if temp.exists() else []
    assert not leftovers, f"temp files left: {leftovers}"
    return manifests
