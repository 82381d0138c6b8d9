"""kie.ai's webhook signature (API-NOTES.md 3.2): `X-Webhook-Signature` =
base64(HMAC-SHA256(key, "<taskId>.<X-Webhook-Timestamp>")). It covers the task ID and the time,
not the body: enough to know kie sent a hint about that task, which is all a callback is."""

from __future__ import annotations

import base64
import hashlib
import hmac

MAX_SKEW_S = 300.0  # a timestamp further than 5 minutes from now is refused (replays)


def signature(key: bytes, task_id: str, timestamp: str) -> str:
    digest = hmac.new(key, f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_problem(
    key: bytes, task_id: str | None, timestamp: str | None, given: str | None, now: float
) -> str | None:
    """Why the signature does not hold (one short reason), or None when it does."""
    if not timestamp or not given:
        return "unsigned: X-Webhook-Timestamp and X-Webhook-Signature are required"
    if task_id is None:
        return "a signed callback needs its task ID in the body"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "X-Webhook-Timestamp is not Unix seconds"
    if abs(now - int(timestamp)) > MAX_SKEW_S:
        return "X-Webhook-Timestamp is more than 5 minutes off"
    expected = signature(key, task_id, timestamp).encode("ascii")
    if not hmac.compare_digest(expected, given.strip().encode("ascii", "replace")):
        return "X-Webhook-Signature does not match"
    return None
