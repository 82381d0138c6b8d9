"""Throughput: `suno-archiver backfill` against `curl` fetching the same URLs, + `sha256sum`.

Both sides fetch every MP3 and image of the same tasks from the bench server (its own
process), with the same number of files in flight, into the same filesystem. The runs
alternate (curl, archiver, archiver, curl, …) so that a noisy neighbour hurts both alike.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from bench.options import Options
from bench.procs import BenchServer, archiver_command, log_tail, run_child, write_config, write_ids
from bench.report import MB, Table, mb, median, verdict

TARGET = 0.8
MUSIC_PATH = "/api/v1/generate/record-info"


def _file_urls(server: BenchServer, task_ids: list[str]) -> list[str]:
    """Every audioUrl and imageUrl of the tasks, as the API gives them."""
    urls: list[str] = []
    for task_id in task_ids:
        request = urllib.request.Request(
            f"{server.base_url}{MUSIC_PATH}?taskId={quote(task_id)}",
            headers={"Authorization": f"Bearer {server.api_key}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            data = json.load(answer)["data"]
        for track in data["response"]["sunoData"]:
            urls += [track["audioUrl"], track["imageUrl"]]
    return urls


def _curl_config(urls: list[str], out: Path, path: Path) -> list[Path]:
    """A `curl -K` file fetching each URL into `out`; returns the output paths."""
    files = [out / PurePosixPath(urlsplit(url).path).name for url in urls]
    lines = [
        f"url = {json.dumps(url)}\noutput = {json.dumps(str(f))}"
        for url, f in zip(urls, files, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return files


@dataclass
class _Timings:
    curl_only: list[float] = field(default_factory=list)  # curl alone
    curl: list[float] = field(default_factory=list)  # curl, then sha256sum: the baseline
    curl_synced: list[float] = field(default_factory=list)  # and then `sync FILE...`
    ours: list[float] = field(default_factory=list)  # suno-archiver backfill
    # CPU seconds (user + system): steadier than wall time on a shared machine
    curl_cpu: list[float] = field(default_factory=list)  # curl and sha256sum
    ours_cpu: list[float] = field(default_factory=list)
    curl_digests: dict[str, str] = field(default_factory=dict)


def _run_curl(curl: str, config: Path, files: list[Path], parallel: int, t: _Timings) -> None:
    """curl, then sha256sum, then sync (fsync of every file, as the archiver does)."""
    out = files[0].parent
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    start, cpu = time.perf_counter(), _children_cpu_s()
    command = [curl, "--parallel", "--parallel-max", str(parallel), "--no-progress-meter"]
    subprocess.run([*command, "--fail", "--config", str(config)], check=True)
    fetched = time.perf_counter()
    sums = subprocess.run(
        ["sha256sum", *map(str, files)], check=True, capture_output=True, text=True
    ).stdout
    hashed = time.perf_counter()
    t.curl_cpu.append(_children_cpu_s() - cpu)
    subprocess.run(["sync", *map(str, files)], check=True)
    synced = time.perf_counter()
    t.curl_only.append(fetched - start)
    t.curl.append(hashed - start)
    t.curl_synced.append(synced - start)
    t.curl_digests = {}
    for line in sums.splitlines():
        digest, name = line.split(maxsplit=1)
        t.curl_digests[Path(name.lstrip("*")).name] = digest


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _archived_sources(archive: Path) -> tuple[int, dict[str, str]]:
    """(bytes downloaded, sha256 of the downloaded bytes by URL file name) from the manifests."""
    total, digests = 0, {}
    for manifest in archive.glob("*/manifest.json"):
        for track in json.loads(manifest.read_bytes())["tracks"]:
            audio, image = track["audio"], track["image"]
            for url, size, digest in (
                (audio["source_url"], audio["source_bytes"], audio["source_sha256"]),
                (image["source_url"], image["bytes"], image["sha256"]),
            ):
                total += size
                digests[PurePosixPath(urlsplit(url).path).name] = digest
    return total, digests


def _run_rounds(
    opts: Options, work: Path, curl: str | None, table: Table
) -> tuple[_Timings, int, dict[str, str], int]:
    """Alternating runs of both sides; returns the timings, the bytes fetched, the archiver's
    sha256 of each source file (by URL file name) and the number of URLs."""
    archive = work / "archive"
    timings = _Timings()
    with BenchServer("--songs", str(opts.tasks), "--seconds", f"{opts.seconds:g}") as server:
        task_ids = server.tasks["songs"]
        urls = _file_urls(server, task_ids)
        ids = write_ids(work / "ids.txt", task_ids)
        config = write_config(
            work / "archive.toml", server, archive=archive, concurrency=opts.parallel
        )
        files = _curl_config(urls, work / "curl-out", work / "curl.cfg")
        for round_no in range(opts.rounds):
            sides = ("curl", "archiver") if round_no % 2 == 0 else ("archiver", "curl")
            for side in sides:
                if side == "curl" and curl is not None:
                    _run_curl(curl, work / "curl.cfg", files, opts.parallel, timings)
                elif side == "archiver":
                    shutil.rmtree(archive, ignore_errors=True)
                    for stale in work.glob("archive.state.sqlite3*"):
                        stale.unlink()
                    log = work / "backfill.log"
                    run = run_child(
                        [*archiver_command(), "backfill", str(ids), "--config", str(config)],
                        log=log,
                        cwd=work,
                    )
                    if run.returncode != 0:
                        table.failures.append(f"backfill exited {run.returncode}: {log_tail(log)}")
                    timings.ours.append(run.wall_s)
                    timings.ours_cpu.append(run.cpu_s)
    size, our_digests = _archived_sources(archive)
    return timings, size, our_digests, len(urls)


def measure(opts: Options, work: Path, curl: str | None) -> Table:
    table = Table(
        f"Throughput: {opts.tasks} tasks x 2 tracks of {opts.seconds:g} s MP3s + images, "
        f"{opts.parallel} files at once",
        ["side", "files", "MB", f"wall s (median of {opts.rounds})", "MB/s", "vs curl"],
    )
    t, size, our_digests, n_urls = _run_rounds(opts, work, curl, table)
    if table.failures:
        return table
    if len(our_digests) != n_urls:
        table.failures.append(f"the manifests name {len(our_digests)} files, not {n_urls}")
    ours_cell = "-"
    if curl is None:
        table.add(
            "curl + sha256sum", "-", "-", "-", "-", "curl or sha256sum not installed: skipped"
        )
    else:
        if t.curl_digests != our_digests:
            table.failures.append("curl and the archiver did not download the same bytes")
        rate = size / median(t.curl) / MB
        table.add("curl --parallel + sha256sum", n_urls, mb(size), f"{median(t.curl):.2f}",
                  f"{rate:.0f}", "1 (baseline)")  # fmt: skip
        ratios = [c / o for c, o in zip(t.curl, t.ours, strict=True)]
        ratio = median(ratios)
        ours_cell = f"{ratio:.2f} (target >= {TARGET}: {verdict(ratio >= TARGET)})"
        synced = median([c / o for c, o in zip(t.curl_synced, t.ours, strict=True)])
        table.notes += [
            "vs curl: the median of the rounds' ratios (each round runs both sides back to "
            "back): " + ", ".join(f"{r:.3f}" for r in ratios),
            f"curl alone, without sha256sum: {median(t.curl_only):.2f} s, "
            f"{size / median(t.curl_only) / MB:.0f} MB/s",
            f"curl + sha256sum + `sync FILE...` (every file on disk, as the archiver leaves "
            f"them): {median(t.curl_synced):.2f} s, {size / median(t.curl_synced) / MB:.0f} "
            f"MB/s; the archiver does {synced:.2f} x that",
            f"CPU time (median): curl + sha256sum {median(t.curl_cpu):.2f} s, the archiver "
            f"{median(t.ours_cpu):.2f} s ({median(t.ours_cpu) / (size / 1e9):.1f} s a GB)",
            "same bytes on both sides: every sha256sum equals the manifest's source_sha256",
        ]
    start_up = run_child([*archiver_command(), "--version"], log=work / "version.log", cwd=work)
    table.notes.append(
        f"fixed cost in the archiver's wall time: {start_up.wall_s:.2f} s of Python start-up "
        "and imports (`suno-archiver --version`)"
    )
    rate = size / median(t.ours) / MB
    table.add("suno-archiver backfill", n_urls, mb(size), f"{median(t.ours):.2f}", f"{rate:.0f}",
              ours_cell)  # fmt: skip
    table.notes.append(
        "the archiver's wall time is the whole command: Python start-up, API calls, downloads "
        "(each MP3 tagged as it streams in, hashed as downloaded and as stored), an fsync of "
        "every file, manifests, the state"
    )
    return table
