"""The HTTP intake `run` serves with `[intake] listen` (SPEC "HTTP intake"): vendor callbacks
at `POST /callback/<token>`, `POST /tasks`, `GET /tasks/<id>` and the task events' pull feed
`GET /events` (SPEC "Task events") with `Bearer <token>`.

Every answer is quick: a handler saves to the state (one committed SQLite write) and schedules
a poll; the polling and archiving happen in the engine, after the answer. Nothing else answers
(404/405), bodies over 1 MiB get 413, and the token is compared in constant time and never
logged (there is no access log; the log names the client's address, never the path).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import Counter

from archiver.config import IntakeConfig
from archiver.config.listen import start_listener
from archiver.engine.loop import Engine
from archiver.errors import StorageError, UsageError
from archiver.intake.callbacks import MalformedCallback, parse_callback
from archiver.intake.feed import IntakeFeed
from archiver.intake.signing import signature_problem
from archiver.kinds.records import is_id
from archiver.service.eventbody import EventBodies
from archiver.service.metrics import Metrics
from archiver.state.opening import STATE_ERRORS
from archiver.state.outboxes import outbox_of
from archiver.tasks.manifest import manifest_key
from archiver.tasks.tasklist import BadLine, TaskList, parse_text
from archiver.tasks.taskstate import Phase

log = structlog.get_logger()

MAX_BODY = 1024 * 1024
FEED_LIMIT, FEED_MAX = 100, 1000  # events per GET /events: by default, at most
OUTCOMES = ("accepted", "duplicate", "bad_token", "bad_signature", "malformed", "no_task_id")
_MANIFESTED = frozenset({Phase.ARCHIVED, Phase.PARTIAL, Phase.FAILED})


class _Refused(Exception):
    """An answer other than success, with the reason said to the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Intake:
    def __init__(
        self,
        config: IntakeConfig,
        engine: Engine,
        metrics: Metrics,
        archive: str,
        bodies: EventBodies,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token = config.token.encode()
        self._kie_key = config.kie_webhook_key
        self._engine = engine
        self._feed = IntakeFeed(engine)
        self._archive = archive  # where manifests are, as people name it (a folder, s3://…)
        self._bodies = bodies  # the files of a task, and what an event says
        self._clock = clock
        self.callbacks = Counter(
            "suno_archiver_intake_callbacks",
            "Vendor callbacks by outcome: " + ", ".join(OUTCOMES),
            ["outcome"],
            registry=metrics.registry,
        )
        for outcome in OUTCOMES:
            self.callbacks.labels(outcome)
        self.tasks_added = Counter(
            "suno_archiver_intake_tasks_added",
            "Tasks new to the state that came in over HTTP (callbacks and POST /tasks)",
            registry=metrics.registry,
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/callback/{token}", self._callback)
        app.router.add_post("/tasks", self._post_tasks)
        app.router.add_get("/tasks/{task_id}", self._get_task, allow_head=False)
        app.router.add_get("/events", self._get_events, allow_head=False)
        return app

    async def serve(self, listen: str) -> web.AppRunner:
        """Start listening on `listen`; UsageError naming the key when it cannot bind."""
        runner = await start_listener(self.app(), listen, "[intake] listen")
        log.info("intake_listening", address=listen, signed=bool(self._kie_key))
        return runner

    # --- handlers ------------------------------------------------------------------------

    async def _callback(self, request: web.Request) -> web.Response:
        if not self._token_matches(request.match_info["token"]):
            return self._refuse_callback(request, "bad_token", _Refused(404, "Not Found"))
        try:
            cb = parse_callback(await _json_body(request))
        except MalformedCallback as exc:
            return self._refuse_callback(request, "malformed", _Refused(400, str(exc)))
        except _Refused as exc:
            return self._refuse_callback(request, "malformed", exc)
        if self._kie_key:
            problem = signature_problem(
                self._kie_key,
                cb.task_id,
                request.headers.get("X-Webhook-Timestamp"),
                request.headers.get("X-Webhook-Signature"),
                self._clock(),
            )
            if problem is not None:
                return self._refuse_callback(request, "bad_signature", _Refused(401, problem))
        if cb.task_id is None:
            self.callbacks.labels("no_task_id").inc()
            log.warning("callback_without_task_id", stage=cb.stage, code=cb.code, kind=cb.kind)
            return _json(200, {"ok": True, "task_id": None})
        try:
            outcome, added = self._feed.callback(cb)
        except UsageError as exc:  # the state cannot be written: the vendor retries later
            log.error("callback_not_saved", task_id=cb.task_id, error=str(exc))
            return _json(503, {"error": "cannot save the task now"})
        self.callbacks.labels(outcome).inc()
        self.tasks_added.inc(added)
        event = "callback_accepted" if outcome == "accepted" else "callback_duplicate"
        (log.info if outcome == "accepted" else log.debug)(
            event,
            task_id=cb.task_id,
            kind=cb.kind,
            stage=cb.stage,
            finished=cb.finished,
            code=cb.code,
            new=bool(added),
        )
        return _json(200, {"ok": True, "task_id": cb.task_id})

    def _refuse_callback(self, request: web.Request, outcome: str, why: _Refused) -> web.Response:
        self.callbacks.labels(outcome).inc()
        log.warning("callback_refused", outcome=outcome, reason=str(why), client=request.remote)
        return _json(why.status, {"error": str(why)})

    async def _post_tasks(self, request: web.Request) -> web.Response:
        try:
            self._require_bearer(request)
            tasklist = await _posted_tasks(request)
        except _Refused as exc:
            log.warning("tasks_post_refused", status=exc.status, reason=str(exc))
            return _json(exc.status, {"error": str(exc)}, bearer=exc.status == 401)
        try:
            added = self._feed.add(tasklist.tasks)
        except UsageError as exc:
            log.error("tasks_not_saved", error=str(exc))
            return _json(503, {"error": "cannot save the tasks now"})
        self.tasks_added.inc(added)
        rejected = [_rejection(bad) for bad in tasklist.bad_lines]
        known = len(tasklist.tasks) - added
        log.info("tasks_posted", added=added, known=known, rejected=len(rejected))
        return _json(202, {"added": added, "known": known, "rejected": rejected})

    async def _get_task(self, request: web.Request) -> web.Response:
        try:
            self._require_bearer(request)
        except _Refused as exc:
            return _json(exc.status, {"error": str(exc)}, bearer=True)
        task_id = request.match_info["task_id"]
        try:
            state = self._engine.task(task_id) if is_id(task_id) else None
        except UsageError as exc:
            return _json(503, {"error": str(exc)})
        if state is None:
            return _json(404, {"error": "unknown task"})
        manifested = state.phase in _MANIFESTED
        manifest = f"{self._archive}/{manifest_key(task_id)}" if manifested else None
        try:
            files = await self._bodies.task_files(task_id) if manifested else []
        except StorageError as exc:
            return _json(503, {"error": f"cannot read the manifest now: {exc}"})
        return _json(
            200,
            {
                "task_id": task_id,
                "kind": state.kind.value if state.kind else None,
                "phase": state.phase.value,
                "last_status": state.last_status,
                "last_error": state.last_error,
                "manifest": manifest,
                "files": files,
            },
        )

    async def _get_events(self, request: web.Request) -> web.Response:
        """The pull feed: events with an ID above `after`, oldest first, at most `limit`."""
        try:
            self._require_bearer(request)
            after = _count(request, "after", 0, minimum=0)
            limit = _count(request, "limit", FEED_LIMIT, minimum=1, maximum=FEED_MAX)
        except _Refused as exc:
            return _json(exc.status, {"error": str(exc)}, bearer=exc.status == 401)
        try:
            events = outbox_of(self._engine.state).after(after, limit)
            items = [
                {"id": e.id, "webhook_id": e.msg_id, **await self._bodies.item(e)} for e in events
            ]
        except (*STATE_ERRORS, StorageError) as exc:
            return _json(503, {"error": f"cannot read the events now: {exc}"})
        return _json(200, {"events": items, "next_after": events[-1].id if events else after})

    # --- helpers --------------------------------------------------------------------------

    def _token_matches(self, given: str) -> bool:
        return hmac.compare_digest(self._token, given.encode("utf-8", "replace"))

    def _require_bearer(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self._token_matches(token.strip()):
            raise _Refused(401, "a valid Authorization: Bearer <token> header is required")


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _Refused(413, f"the body is over {MAX_BODY} bytes (1 MiB)") from None


async def _json_body(request: web.Request) -> Any:
    raw = await _body(request)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Refused(400, f"malformed JSON: {exc}") from None
    except RecursionError:  # "[[[[…" a million deep fits in 1 MiB
        raise _Refused(400, "malformed JSON: nested too deeply") from None


async def _posted_tasks(request: web.Request) -> TaskList:
    """A body of task-list lines (text/plain) or {"tasks": ["ID", "wav:ID", …]} (JSON)."""
    if request.content_type == "application/json":
        doc = await _json_body(request)
        entries = doc.get("tasks") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise _Refused(400, 'expected {"tasks": ["ID", "KIND:ID", …]}')
        bad = [i for i, e in enumerate(entries) if not isinstance(e, str) or "\n" in e or "\r" in e]
        if bad:
            raise _Refused(400, f"tasks[{bad[0]}] is not a one-line string")
        return parse_text("\n".join(entries))
    raw = await _body(request)
    try:
        return parse_text(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise _Refused(400, f"the body is not UTF-8 text (byte {exc.start})") from None


def _count(
    request: web.Request, name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    """A whole-number query parameter within its bounds, else 400 naming it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
    ok = raw.isascii() and raw.isdigit() and len(raw) <= 18  # an SQLite integer
    value = int(raw) if ok else -1
    if value < minimum or (maximum is not None and value > maximum):
        raise _Refused(400, f"{name} must be a whole number {bounds}")
    return value


def _rejection(bad: BadLine) -> dict[str, Any]:
    return {"line": bad.text, "line_no": bad.line_no, "reason": bad.reason}


def _json(status: int, body: dict[str, Any], *, bearer: bool = False) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if bearer and status == 401 else None
    return web.json_response(body, status=status, headers=headers)
