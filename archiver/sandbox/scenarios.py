"""Ready-made task sets for `suno-archiver demo` and the benchmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archiver.sandbox.songs import fake_hex_id

if TYPE_CHECKING:
    from archiver.sandbox import Sandbox


def add_demo_tasks(sb: Sandbox, *, pending_after_s: float = 6.0) -> list[str]:
    """A small mix of what the archiver meets; returns the task-list lines (with comments)."""
    rock, cjk, callback, pending, failed = (fake_hex_id(f"demo:{n}") for n in range(5))
    cover = fake_hex_id("demo:cover")
    sb.add_music(rock, title="Neon Highway", create_time="ms", tags="synthwave, driving")
    sb.add_music(cjk, title="钢铁侠", create_time="string", prompt="[Verse] 夜晚城市 灯火辉煌")
    sb.add_music(callback, title="Callback Blues", callback_exception=True, tags="blues")
    # As live: `data` is empty for the cover's first seconds, then it is generating, then done.
    sb.add_cover(cover, parent_task_id=rock, empty_for_s=1.0, ready_after_s=2.0)
    sb.add_music(pending, title="Slow Bloom", ready_after_s=pending_after_s, tags="ambient")
    sb.add_music(
        failed,
        fail_status="SENSITIVE_WORD_ERROR",
        error_code=400,
        error_message="Lyrics contained copyrighted material",
    )
    # One task of every other kind, made from the songs above; the lyrics are listed bare, so
    # the archiver asks the endpoints in turn until one knows the ID.
    made = {kind: fake_hex_id(f"demo:{kind}") for kind in ("wav", "stems", "mp4", "midi", "lyrics")}
    sb.add_output("wav", made["wav"], wav_seconds=2.0)
    sb.add_output("stems", made["stems"], create_time="ms")
    sb.add_output("mp4", made["mp4"], ready_after_s=pending_after_s / 2)
    sb.add_output("midi", made["midi"], create_time="ms")
    sb.add_output("lyrics", made["lyrics"])
    return [
        "# suno-archiver demo tasks",
        f"music:{rock}",
        cjk,
        callback,
        f"cover:{cover}",
        pending,
        failed,
        *(f"{kind}:{task_id}" for kind, task_id in made.items() if kind != "lyrics"),
        made["lyrics"],
    ]


def add_bench_tasks(
    sb: Sandbox, n: int, seconds: float = 180.0, *, ready_after_s: float = 0.0
) -> list[str]:
    """`n` music tasks of two `seconds`-long tracks (files shared on disk); returns the IDs."""
    ids = [fake_hex_id(f"bench:{i}") for i in range(n)]
    for task_id in ids:
        sb.add_music(task_id, seconds=seconds, ready_after_s=ready_after_s)
    return ids
