"""`run` on a disk that fills up: archiving pauses (said once, /healthz failing, a metric, an
alert), no task is charged for it, and it resumes by itself when space returns, without a
restart."""

from __future__ import annotations

import json
import signal

from alert_receiver import Receiver
from daemons import Site, metric
from smallfs import fill, mounted_tmpfs


async def test_a_full_disk_pauses_archiving_and_it_resumes_when_space_returns(
    daemon_site: Site,
) -> None:
    receiver = await Receiver().start()
    try:
        daemon_site.configure(extra=f'[notify]\nurls = ["{receiver.url}"]\n')
        with mounted_tmpfs(daemon_site.archive, 4 << 20) as archive:
            ballast = fill(archive)
            daemon_site.sandbox.add_music("song_a")
            daemon_site.sandbox.add_music("song_b")
            daemon_site.sandbox.add_music("song_x", fail_status="SENSITIVE_WORD_ERROR")
            daemon_site.list_tasks("song_a", "song_b", "song_x")
            daemon = await daemon_site.daemon()

            paused = await daemon.wait_for("archiving_paused")
            assert paused["cause"] == "storage_full" and paused["where"] == str(archive)
            assert paused["free_bytes"] < 64 << 10
            status, body = await daemon_site.get("/healthz")
            assert status == 503 and json.loads(body)["archiving_paused"]["cause"] == "storage_full"
            _, metrics = await daemon_site.get("/metrics")
            assert metric(metrics, "suno_archiver_storage_full") == 1
            assert daemon_site.manifest("song_a") is None and daemon_site.temp_leftovers() == []
            assert not daemon.named("file_unobtainable") and not daemon.named("task_retry_later")

            ballast.unlink()
            await daemon.send(signal.SIGHUP)  # checks at once (else within WATCH_INTERVAL_S)
            resumed = await daemon.wait_for("archiving_resumed")
            assert resumed["free_bytes"] > 1 << 20
            await daemon_site.wait_archived("song_a", "song_b", "song_x")
            daemon_site.check_archive()
            status, _ = await daemon_site.get("/healthz")
            assert status == 200
            assert len(daemon.named("archiving_paused")) == 1
            await receiver.wait_for(3)
            assert await daemon.stop() == 0
        assert sorted(receiver.events()) == ["archiving_paused", "archiving_resumed", "task_failed"]
        paused = receiver.bodies[receiver.events().index("archiving_paused")]
        assert "storage_full" in paused["message"] and str(archive) in paused["message"]
    finally:
        await receiver.stop()
