"""What the record-info API's answers mean: an HTTP status and body → a record's `data`, or
the `archiver.errors` class that says what to do.

Every answer is classified here (`classify_answer`, with its code table `error_for_code`), so
the engine only ever sees a record or an error; the same code means different things at the two
vendors (API-NOTES §4), told apart by the API's host (`vendor_of`). Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal
from urllib.parse import urlsplit

from archiver.api.backoff import parse_retry_after
from archiver.errors import (
    ApiError,
    ApiRejected,
    AuthError,
    Maintenance,
    NoCredits,
    SlowDown,
    TransientApiError,
    UnknownTask,
    WrongEndpoint,
)
from archiver.kinds import KINDS
from archiver.kinds.records import Kind, Record

MAX_RETRY_AFTER_S = 3600.0
# What a code means for the user: the same number differs between the vendors (API-NOTES §4).
_SLOW_DOWN = {
    429: "the API rate-limits this key",  # kie.ai; sunoapi.org's body 429 is credits
    430: "the API asks to call less often",  # sunoapi.org
    405: "the API asks to call less often",  # sunoapi.org
    433: "the kie.ai sub-key is over its usage limit (raise it in the key's settings)",
}
Vendor = Literal["kie", "sunoapi"] | None
_UNKNOWN_TASK_CODES = frozenset({404, 422})


def classify_answer(
    kind: Kind,
    task_id: str,
    status: int,
    body: bytes,
    *,
    path: str,
    retry_after: str | None = None,
    reason: str = "",
    vendor: Vendor = None,
) -> Record:
    """The HTTP answer to a call about `task_id` at URL `path` → the parsed record, or the
    `archiver.errors` class that says what to do.

    HTTP status and body `code` mean the same thing and go through the same table.
    """
    data = answer_data(
        f"{kind} endpoint",
        status,
        body,
        path=path,
        retry_after=retry_after,
        reason=reason,
        vendor=vendor,
    )
    try:
        return KINDS[kind].parse(data, task_id)  # type: ignore[no-any-return]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TransientApiError(f"the API's {kind} record is unusable: {exc}") from exc


def answer_data(
    what: str,
    status: int,
    body: bytes,
    *,
    path: str,
    retry_after: str | None = None,
    reason: str = "",
    vendor: Vendor = None,
) -> dict[str, Any]:
    """The `data` object of an answer from `what` (named in errors), or the error class."""
    doc = _json_or_none(body)
    msg = _short(doc.get("msg")) if isinstance(doc, dict) else ""
    if status != 200:
        if status in _UNKNOWN_TASK_CODES and not _is_envelope(doc):
            # The vendor says "unknown task" in its JSON; a bare 404 is a router's: a wrong
            # base_url would otherwise make every task "not found", for good.
            raise WrongEndpoint(
                f"HTTP {status} for {_short(path)} is not an answer of the record-info API: "
                "check api.base_url (the API's root, e.g. https://api.kie.ai)"
            )
        raise error_for_code(
            status, msg or reason, retry_after=_retry_after_s(retry_after), vendor=vendor
        )
    if doc is None:
        looks_html = body.lstrip()[:1] == b"<"
        shape = "an HTML page" if looks_html else "malformed JSON"
        raise TransientApiError(f"the API answered with {shape} instead of a record")
    if not isinstance(doc, dict):
        raise TransientApiError("the API's answer is not a JSON object")
    code = doc.get("code")
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        raise TransientApiError(f"the API's answer has no usable code ({_short(code)})")
    if code != 200:
        raise error_for_code(
            code, msg, retry_after=_retry_after_s(retry_after), vendor=vendor, in_body=True
        )
    data = doc.get("data")
    if data is None or data == {}:  # the cover endpoint's first seconds after creation: {}
        said = "null" if data is None else "{}"
        raise UnknownTask(f"the {what} does not know this task (data: {said})")
    if not isinstance(data, dict):
        raise TransientApiError("the API's `data` is not an object")
    return data


def error_for_code(
    code: int,
    msg: str,
    *,
    retry_after: float | None = None,
    vendor: Vendor = None,
    in_body: bool = False,
) -> ApiError:
    """The error class for an HTTP status or body code other than 200 (`in_body`: the
    envelope's `code` of an HTTP 200), as `vendor` means it."""
    said = f"{code}: {msg}" if msg else str(code)
    if code == 401:
        return AuthError(
            "the API rejected the key (401): check the API key "
            "(api.api_key, api.api_key_file or SUNO_API_KEY)"
        )
    if _no_credits(code, msg, vendor, in_body=in_body):
        return NoCredits(
            f"the API account is out of credits ({said}): top up the account",
            retry_after=retry_after,
        )
    if code in _SLOW_DOWN:
        return SlowDown(f"{_SLOW_DOWN[code]} ({said}): slowing down", retry_after=retry_after)
    if code == 455:
        return Maintenance(f"the API is in maintenance ({said})", retry_after=retry_after)
    if code in _UNKNOWN_TASK_CODES:
        return UnknownTask(f"the endpoint does not know this task ({said})")
    if code >= 500:
        return TransientApiError(f"the API failed ({said})", retry_after=retry_after)
    if 400 <= code < 500:
        return ApiRejected(f"the API refused the request ({said})")
    return TransientApiError(f"the API answered an unexpected code ({said})")


def vendor_of(base_url: str) -> Vendor:
    """Which vendor's code table applies: by the API's host name (None: another host, such
    as a proxy or the stand-in API, where only the message tells a 429's meaning)."""
    host = (urlsplit(base_url).hostname or "").lower()
    for vendor, domain in (("kie", "kie.ai"), ("sunoapi", "sunoapi.org")):
        if host == domain or host.endswith("." + domain):
            return vendor  # type: ignore[return-value]
    return None


def _no_credits(code: int, msg: str, vendor: Vendor, *, in_body: bool) -> bool:
    """402 is kie.ai's "insufficient credits"; a body 429 is sunoapi.org's (kie.ai's 429 is a
    rate limit). Elsewhere the message decides."""
    if code == 402:
        return True
    if code != 429 or vendor == "kie":
        return False
    return in_body if vendor == "sunoapi" else "credit" in msg.lower()


def _retry_after_s(value: str | None) -> float | None:
    return parse_retry_after(value, cap_s=MAX_RETRY_AFTER_S)


def _json_or_none(body: bytes) -> Any:
    # NaN and ±Infinity (as words, or as a number like 1e999) become null: JSON has no such
    # values, and the manifest (which keeps `raw`) could never be written with them.
    try:
        return json.loads(body, parse_constant=_null, parse_float=_finite_or_null)
    except (ValueError, UnicodeDecodeError):
        return None


def _null(_word: str) -> None:
    return None


def _finite_or_null(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def _is_envelope(doc: Any) -> bool:
    """The vendor's JSON answer shape (`code`, `msg`, `data`), error or not."""
    return isinstance(doc, dict) and ("code" in doc or "msg" in doc)


def _short(value: object, limit: int = 200) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
