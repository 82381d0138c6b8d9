"""WAV, stems, MP4, MIDI and lyrics tasks in `run`: a real daemon process, killed and restarted."""

from __future__ import annotations

import asyncio
import signal

from archive_checks import LOCK_FILE, TEMP_DIR
from daemons import Site

from archiver.sandbox import fake_hex_id
from archiver.sandbox.cdn import FileFaults


async def test_kill_9_mid_wav_leaves_no_partial_file_and_a_restart_completes(
    daemon_site: Site,
) -> None:
    sb = daemon_site.sandbox
    task = fake_hex_id("wav:kill")
    sb.add_output("wav", task, wav_seconds=30)
    sb.cdn.set_faults(f"{task}.wav", FileFaults(stall_after_bytes=100_000))  # in flight at the kill
    daemon_site.list_tasks(f"wav:{task}")
    daemon = await daemon_site.daemon()
    temp = daemon_site.archive / TEMP_DIR
    for _ in range(2000):
        # The .part file is made before the GET is sent: wait for the file host to have seen
        # the request too, or the stall would catch the restarted daemon instead.
        started = temp.exists() and any(p.name != LOCK_FILE for p in temp.iterdir())
        if started and sb.cdn.hits[f"{task}.wav"]:
            break
        await asyncio.sleep(0.005)
    else:
        raise AssertionError("no download started")
    await daemon.stop(signal.SIGKILL)
    assert daemon_site.manifest(task) is None
    assert not list(
        daemon_site.archive.glob(f"{task}/*.wav")
    )  # nothing under a final name but whole

    again = await daemon_site.daemon()
    await daemon_site.wait_archived(task, timeout=60)
    assert await again.stop() == 0
    daemon_site.check_archive()
    doc = daemon_site.manifest(task)
    assert doc is not None and doc["outcome"] == "archived"
    served = sb.cdn._files[f"{task}.wav"].data
    assert (daemon_site.archive / task / "wav.wav").read_bytes() == served
