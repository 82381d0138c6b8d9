"""Standard Webhooks signing (https://www.standardwebhooks.com): the three headers an event
POST carries.

Our own eight lines rather than the `standardwebhooks` package: signing is one HMAC, and the
package would bring its HTTP client's dependencies into the daemon for it. The tests verify
every signature we make with that package (tests/service/test_sender.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature (`v1,` + base64 HMAC-SHA256 of
    `<id>.<timestamp>.<body>`)."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac).decode("ascii"),
    }
