"""The integrity arithmetic of S3 uploads, pure: what we hash of a local file, and whether what
the store reports of an object is that.

A file is hashed in one chunked pass: its SHA-256 and, for a multipart upload, the SHA-256 of
every part. The store reports a single PUT's object by its full SHA-256, and a multipart object
by its checksum-of-checksums: the SHA-256 of the parts' SHA-256 digests, written
"<base64>-<parts>" (some stores leave off the suffix). An upload's answer (ETag, VersionId)
names the object it wrote, so a writer can tell its own object from one another writer stored
over it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024  # bytes per read when hashing


@dataclass(frozen=True)
class Scan:
    """What we hashed of the bytes we upload."""

    size: int
    sha256: str  # hex
    full_b64: str  # the same digest as S3 writes it
    composite_b64: str | None  # multipart: base64 SHA-256 of the parts' SHA-256 digests
    parts: int


def scan_file(path: Path, part_size: int | None) -> Scan:
    """Hash `path` in one chunked pass: the whole file and, for multipart, each part."""
    whole = hashlib.sha256()
    parts: list[bytes] = []
    part = hashlib.sha256()
    in_part = size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK if part_size is None else min(CHUNK, part_size - in_part)):
            whole.update(chunk)
            size += len(chunk)
            if part_size is not None:
                part.update(chunk)
                in_part += len(chunk)
                if in_part == part_size:
                    parts.append(part.digest())
                    part, in_part = hashlib.sha256(), 0
    if part_size is not None and (in_part or not parts):
        parts.append(part.digest())
    composite = _b64(hashlib.sha256(b"".join(parts)).digest()) if part_size else None
    return Scan(size, whole.hexdigest(), _b64(whole.digest()), composite, len(parts))


def scan_bytes(data: bytes) -> Scan:
    """`data` as one PUT sends it."""
    digest = hashlib.sha256(data)
    return Scan(len(data), digest.hexdigest(), _b64(digest.digest()), None, 1)


def checksum_matches(checksum: str, scan: Scan) -> bool:
    """Whether the store's ChecksumSHA256 is the file's: its full SHA-256, or for multipart
    the SHA-256 of the parts' SHA-256 digests written "<base64>-<parts>" (some stores leave
    off the suffix)."""
    value, _, parts = checksum.partition("-")
    if value == scan.full_b64 and not parts:
        return True
    return (
        scan.composite_b64 is not None
        and value == scan.composite_b64
        and (not parts or parts == str(scan.parts))
    )


def full_object_sha256(head: dict[str, Any]) -> str | None:
    """The store's SHA-256 of the whole object (hex), if it reports one: not a multipart
    checksum-of-checksums, which is typed COMPOSITE, or written "<base64>-<parts>", or on
    stores that give no type, belongs to an object with a multipart ETag ("…-<parts>")."""
    checksum = head.get("ChecksumSHA256")
    kind = head.get("ChecksumType")
    if not checksum or "-" in checksum or kind == "COMPOSITE":
        return None
    if kind is None and "-" in str(head.get("ETag", "")):
        return None
    try:
        digest = base64.b64decode(checksum, validate=True)
    except ValueError:
        return None
    return digest.hex() if len(digest) == 32 else None


def same_object(head: dict[str, Any], written: dict[str, Any]) -> bool:
    """Whether `head` describes the object whose upload answered `written`."""
    if not written.get("ETag") or head.get("ETag") != written["ETag"]:
        return False
    version = written.get("VersionId")
    return version in (None, "null") or head.get("VersionId") in (None, version)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
