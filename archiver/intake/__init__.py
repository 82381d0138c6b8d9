"""The HTTP intake: vendor callbacks and task IDs posted by other programs (SPEC "HTTP
intake"). `callbacks` and `signing` are pure; `feed` is what they do to the engine; `server`
is the aiohttp app inside `run`'s event loop."""

from archiver.intake.server import Intake

__all__ = ["Intake"]
