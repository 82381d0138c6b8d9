"""A Standard Webhooks secret (`whsec_` + base64): the key `[events] secret_file` holds."""

from __future__ import annotations

import base64

SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret. ValueError saying what is wrong with it
    (never echoing it)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f'the secret must start with "{SECRET_PREFIX}"')
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise ValueError(f'the secret after "{SECRET_PREFIX}" is not base64') from None
    # The Standard Webhooks spec's bounds; a shorter key is guessable.
    if not 24 <= len(key) <= 64:
        raise ValueError(f"the secret must be 24 to 64 bytes once decoded, not {len(key)}")
    return key
