"""The storage tests' fixture: a new bucket on the module's moto server."""

from __future__ import annotations

import itertools

import pytest
from s3server import MotoServer
from s3stores import raw_client

_bucket_numbers = itertools.count()


@pytest.fixture
def bucket(server: MotoServer) -> str:
    """A new, empty bucket on `server`; its name."""
    name = f"archive-{next(_bucket_numbers)}"
    raw_client(server.url).create_bucket(Bucket=name)
    return name
