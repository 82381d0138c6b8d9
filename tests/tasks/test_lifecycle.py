"""lifecycle: what a parsed record means (wait, archive which files, give up) and when to poll."""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any

import pytest

from archiver.kinds.media import JPEG, MP3, PNG
from archiver.kinds.records import Track, parse_cover, parse_music
from archiver.tasks import lifecycle
from archiver.tasks.lifecycle import (
    ArchiveNow,
    FileSpec,
    GiveUp,
    PollAgain,
    decide,
    files_to_fetch,
    is_fetchable,
    poll_delay,
    track_name,
    track_names,
    unknown_delay,
)

TASK = "5c79a1b2c3d4be8e"
DAY = 86400.0


def track_json(audio_id: str = "aud-1", **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": audio_id,
        "audioUrl": f"https://cdn.example/{audio_id}.mp3",
        "streamAudioUrl": f"https://cdn.example/stream/{audio_id}",
        "sourceStreamAudioUrl": f"https://upstream.example/stream/{audio_id}",
        "imageUrl": f"https://cdn.example/{audio_id}.jpeg",
        "title": "Song",
        "duration": 120.5,
        "createTime": 1735689600000,
    }
    item.update(overrides)
    return item


def music(status: str, *tracks: dict[str, Any], **extra: Any):
    return parse_music(
        {"taskId": TASK, "status": status, "response": {"sunoData": list(tracks)}, **extra}, TASK
    )


def cover(flag: object, images: list[str] | None = None):
    return parse_cover(
        {"taskId": TASK, "successFlag": flag, "response": {"images": images}, "errorCode": 200},
        TASK,
    )


def run(record, age_s: float = 100.0, give_up_after_s: float = DAY, last: str | None = None):
    return decide(record, age_s=age_s, give_up_after_s=give_up_after_s, last_status=last)


def stems(files: tuple[FileSpec, ...]) -> list[tuple[str, str]]:
    return [(f.role, f.key_stem) for f in files]


# --- decide: music ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["SUCCESS", "CALLBACK_EXCEPTION", " success "])
def test_finished_music_with_every_audio_url_is_archived(status: str) -> None:
    decision = run(music(status, track_json("a"), track_json("b")))
    assert isinstance(decision, ArchiveNow) and not decision.task_failed
    assert stems(decision.files) == [
        ("audio", f"{TASK}/a"),
        ("image", f"{TASK}/a"),
        ("audio", f"{TASK}/b"),
        ("image", f"{TASK}/b"),
    ]


@pytest.mark.parametrize("status", ["SUCCESS", "CALLBACK_EXCEPTION"])
def test_finished_status_with_a_missing_audio_url_keeps_polling(status: str) -> None:
    decision = run(music(status, track_json("a"), track_json("b", audioUrl="")))
    assert isinstance(decision, PollAgain)
    assert "1 of 2" in decision.reason


def test_success_with_no_tracks_keeps_polling() -> None:
    assert isinstance(run(music("SUCCESS")), PollAgain)


@pytest.mark.parametrize("status", ["SUCCESS", "CALLBACK_EXCEPTION"])
def test_finished_task_still_lacking_an_audio_url_at_ten_minutes_archives_the_rest(
    status: str,
) -> None:
    record = music(status, track_json("a"), track_json("b", audioUrl=""))
    before = run(record, age_s=lifecycle.INCOMPLETE_AFTER_S - 1)
    assert isinstance(before, PollAgain)
    decision = run(record, age_s=lifecycle.INCOMPLETE_AFTER_S)
    assert decision == ArchiveNow(files_to_fetch(record), task_failed=False)
    assert stems(decision.files) == [("audio", f"{TASK}/a"), ("image", f"{TASK}/a")]


def test_unfinished_task_is_still_polled_at_ten_minutes() -> None:
    record = music("FIRST_SUCCESS", track_json("a"), track_json("b", audioUrl=""))
    assert isinstance(run(record, age_s=lifecycle.INCOMPLETE_AFTER_S + 1), PollAgain)


def test_finished_but_incomplete_is_given_up_at_a_deadline_shorter_than_ten_minutes() -> None:
    record = music("SUCCESS", track_json("a"), track_json("b", audioUrl=""))
    decision = run(record, age_s=120.0, give_up_after_s=120.0)
    assert decision == GiveUp(files_to_fetch(record))


@pytest.mark.parametrize(
    "status",
    [
        "CREATE_TASK_FAILED",
        "GENERATE_AUDIO_FAILED",
        "SENSITIVE_WORD_ERROR",
        "UPLOAD_AUDIO_FAILED",
        "SOME_NEW_ERROR",
    ],
)
def test_failed_music_is_archived_as_failed_with_its_complete_tracks(status: str) -> None:
    record = music(status, track_json("done"), track_json("half", audioUrl=""), errorCode=501)
    decision = run(record)
    assert isinstance(decision, ArchiveNow) and decision.task_failed
    assert stems(decision.files) == [("audio", f"{TASK}/done"), ("image", f"{TASK}/done")]


def test_failed_music_without_tracks_is_archived_as_failed_with_no_files() -> None:
    assert run(music("SENSITIVE_WORD_ERROR")) == ArchiveNow((), task_failed=True)


@pytest.mark.parametrize(
    "status", ["PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS", "WHATEVER", "", "ERROR_SOON"]
)
def test_unfinished_or_unknown_status_polls_again(status: str) -> None:
    decision = run(music(status, track_json("a", audioUrl="")), age_s=100)
    assert isinstance(decision, PollAgain) and decision.delay_s >= lifecycle.MIN_DELAY_S


def test_at_the_deadline_complete_tracks_are_given_up_with_their_files() -> None:
    record = music("FIRST_SUCCESS", track_json("a"), track_json("b", audioUrl=""))
    decision = run(record, age_s=DAY, give_up_after_s=DAY)
    assert isinstance(decision, GiveUp)
    assert stems(decision.files) == [("audio", f"{TASK}/a"), ("image", f"{TASK}/a")]


def test_at_the_deadline_with_nothing_complete_times_out() -> None:
    assert run(music("PENDING"), age_s=DAY + 1, give_up_after_s=DAY) == GiveUp(())


def test_finished_task_is_archived_even_past_the_deadline() -> None:
    decision = run(music("SUCCESS", track_json("a")), age_s=2 * DAY, give_up_after_s=DAY)
    assert isinstance(decision, ArchiveNow)


def test_poll_is_never_scheduled_past_the_deadline() -> None:
    decision = run(music("PENDING"), age_s=DAY - 10, give_up_after_s=DAY)
    assert decision == PollAgain(10.0, "status PENDING")


@pytest.mark.parametrize("age", [float("nan"), -5.0, float("inf")])
def test_odd_ages_never_raise(age: float) -> None:
    decision = run(music("PENDING"), age_s=age)
    assert isinstance(decision, PollAgain | GiveUp)


# --- decide: cover ----------------------------------------------------------------------------


def test_cover_success_with_images_is_archived_as_numbered_covers() -> None:
    images = ["https://t.example/1.png", "https://t.example/2.png"]
    decision = run(cover(1, images))
    assert isinstance(decision, ArchiveNow) and not decision.task_failed
    assert decision.files == (
        FileSpec(f"{TASK}/cover-1", (images[0],), frozenset({JPEG, PNG}), "cover", None),
        FileSpec(f"{TASK}/cover-2", (images[1],), frozenset({JPEG, PNG}), "cover", None),
    )


def test_cover_failed_is_archived_as_failed_with_no_files() -> None:
    assert run(cover(3, ["https://t.example/1.png"])) == ArchiveNow((), task_failed=True)


@pytest.mark.parametrize(("flag", "images"), [(0, None), (2, None), (1, None), (1, []), (9, None)])
def test_cover_pending_generating_or_success_without_images_polls(flag: int, images) -> None:
    assert isinstance(run(cover(flag, images)), PollAgain)


def test_cover_images_are_deduplicated_and_non_http_kept_to_be_reported() -> None:
    images = ["ftp://t.example/0.png", "https://t.example/1.png", "https://t.example/1.png"]
    specs = files_to_fetch(cover(1, images))
    assert [(s.key_stem, s.urls) for s in specs] == [
        (f"{TASK}/cover-1", ("ftp://t.example/0.png",)),
        (f"{TASK}/cover-2", ("https://t.example/1.png",)),
    ]


# --- files_to_fetch ---------------------------------------------------------------------------


def test_audio_urls_are_audio_then_source_audio_and_never_stream() -> None:
    item = track_json("a", sourceAudioUrl="https://upstream.example/a.mp3")
    audio, image = files_to_fetch(music("SUCCESS", item))
    assert audio == FileSpec(
        f"{TASK}/a",
        ("https://cdn.example/a.mp3", "https://upstream.example/a.mp3"),
        frozenset({MP3}),
        "audio",
        0,
    )
    assert not any("/stream/" in url for url in audio.urls)
    assert image.urls == ("https://cdn.example/a.jpeg",)
    assert (image.role, image.accept, image.track) == ("image", frozenset({JPEG, PNG}), 0)


def test_image_urls_are_image_then_source_image() -> None:
    item = track_json("a", sourceImageUrl="https://upstream.example/a.jpeg")
    _, image = files_to_fetch(music("SUCCESS", item))
    assert image.urls == ("https://cdn.example/a.jpeg", "https://upstream.example/a.jpeg")


@pytest.mark.parametrize(
    ("audio_url", "source", "expected"),
    [
        ("ftp://cdn.example/a.mp3", "https://up.example/a.mp3", ("https://up.example/a.mp3",)),
        ("javascript:alert(1)", "http://up.example/a.mp3", ("http://up.example/a.mp3",)),
        ("https://cdn.example/a.mp3", "https://cdn.example/a.mp3", ("https://cdn.example/a.mp3",)),
        # nothing fetchable: kept, for the fetcher to refuse and the manifest to report
        ("file:///etc/passwd", "", ("file:///etc/passwd",)),
        ("https://", "data:x", ("https://", "data:x")),
        ("https://cdn.example/a b.mp3", "", ("https://cdn.example/a b.mp3",)),
    ],
)
def test_unfetchable_urls_give_way_to_fetchable_ones_and_duplicates_are_removed(
    audio_url: str, source: str, expected: tuple[str, ...]
) -> None:
    record = music("SUCCESS", track_json("a", audioUrl=audio_url, sourceAudioUrl=source))
    audio = [f for f in files_to_fetch(record) if f.role == "audio"]
    assert [f.urls for f in audio] == [expected]


@pytest.mark.parametrize(
    ("url", "fetchable"),
    [
        ("https://cdn.example/a.mp3", True),
        ("HTTP://cdn.example/a.mp3", True),
        ("ftp://cdn.example/a.mp3", False),
        ("https://", False),
        ("https://cdn.example/a b.mp3", False),
        ("https://[::1/a.mp3", False),
    ],
)
def test_only_http_urls_with_a_host_are_fetchable(url: str, fetchable: bool) -> None:
    assert is_fetchable(url) is fetchable


def test_track_without_audio_url_gets_no_files_not_even_its_image() -> None:
    record = music("FIRST_SUCCESS", track_json("a", audioUrl=""), track_json("b"))
    assert stems(files_to_fetch(record)) == [("audio", f"{TASK}/b"), ("image", f"{TASK}/b")]
    assert [f.track for f in files_to_fetch(record)] == [1, 1]


def test_track_without_image_url_gets_only_audio() -> None:
    record = music("SUCCESS", track_json("a", imageUrl=None))
    assert stems(files_to_fetch(record)) == [("audio", f"{TASK}/a")]


def test_every_file_spec_has_at_least_one_url() -> None:
    record = music("SUCCESS", track_json("a", audioUrl="ftp://x/a", imageUrl="data:x"))
    assert all(spec.urls for spec in files_to_fetch(record))


# --- names ------------------------------------------------------------------------------------


def make_track(audio_id: str, title: str = "t") -> Track:
    return Track(audio_id, title, "", None, "", "", None, "https://x.example/a.mp3", "", "", "")


def test_safe_audio_id_is_the_track_name() -> None:
    assert track_name(make_track("e231a5b0-1c2d_4e5f"), 0) == "e231a5b0-1c2d_4e5f"


@pytest.mark.parametrize(
    "audio_id", ["../../x", "a/b", "a\\b", "", ".", "..", "x" * 129, "naïve", "a b", "a.mp3"]
)
def test_unsafe_audio_id_becomes_a_hashed_name_never_a_path(audio_id: str) -> None:
    name = track_name(make_track(audio_id, title="../../title"), 1)
    assert name.startswith("track-2-")
    assert len(name) == len("track-2-") + 12
    assert all(c.isalnum() or c in "-_" for c in name)
    assert name == track_name(make_track(audio_id, title="other"), 1)  # from the ID, not title


def test_names_never_come_from_titles() -> None:
    assert track_name(make_track("abc", title="../../evil"), 0) == "abc"


def test_same_audio_id_twice_does_not_collide() -> None:
    record = music("SUCCESS", track_json("dup"), track_json("dup"))
    assert track_names(record) == ("dup", "dup-2")
    audio = [f.key_stem for f in files_to_fetch(record) if f.role == "audio"]
    assert audio == [f"{TASK}/dup", f"{TASK}/dup-2"]


def test_names_differing_only_in_case_do_not_collide() -> None:
    record = music("SUCCESS", track_json("ABC"), track_json("abc"), track_json("abc-2"))
    names = track_names(record)
    assert len({n.casefold() for n in names}) == 3


def test_names_are_stable_while_earlier_tracks_are_incomplete() -> None:
    early = music("FIRST_SUCCESS", track_json("dup", audioUrl=""), track_json("dup"))
    late = music("SUCCESS", track_json("dup"), track_json("dup"))
    early_stems = {f.key_stem for f in files_to_fetch(early)}
    assert early_stems == {f"{TASK}/dup-2"}
    assert early_stems <= {f.key_stem for f in files_to_fetch(late)}


# --- poll_delay -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "age", "last", "expected"),
    [
        ("PENDING", 0, None, 60.0),  # nothing can be ready before ~60 s
        ("PENDING", 59.5, "PENDING", 2.0),  # never below the minimum
        ("TEXT_SUCCESS", 0, None, 30.0),  # first seen already under way
        ("TEXT_SUCCESS", 100, "TEXT_SUCCESS", 20.0),  # the 60-240 s window
        ("GENERATING", 100, "PENDING", 20.0),  # covers follow the same window
        ("FIRST_SUCCESS", 100, "FIRST_SUCCESS", 8.0),  # SUCCESS is close
        ("FIRST_SUCCESS", 100, "TEXT_SUCCESS", 10.0),  # just appeared: 20-40 s to go
        ("FIRST_SUCCESS", 60, "PENDING", 8.0),  # after the long early wait: may be old
        ("SUCCESS", 100, "SUCCESS", 8.0),  # SUCCESS but an audioUrl still missing
        ("PENDING", 360, "PENDING", 60.0),  # slow task
        ("PENDING", 900, "PENDING", 150.0),
        ("PENDING", 10 * 3600, "PENDING", 300.0),  # cap
        ("FIRST_SUCCESS", 10 * 3600, "FIRST_SUCCESS", 150.0),  # eager but bounded
    ],
)
def test_poll_delay_schedule(status: str, age: float, last: str | None, expected: float) -> None:
    assert poll_delay(status, age, last_status=last) == pytest.approx(expected)


def test_poll_delay_grows_without_jumps_after_the_window() -> None:
    ages = [240 + i for i in range(0, 3600)]
    delays = [poll_delay("PENDING", age, last_status="PENDING") for age in ages]
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert max(b - a for a, b in itertools.pairwise(delays)) < 1.0


@pytest.mark.parametrize("status", ["", "???", "SUCCESS", "FAILED", "x" * 1000])
@pytest.mark.parametrize("age", [0.0, 1e9, float("nan"), float("inf"), -1.0])
def test_poll_delay_never_raises_and_stays_within_bounds(status: str, age: float) -> None:
    delay = poll_delay(status, age, last_status=None)
    assert lifecycle.MIN_DELAY_S <= delay <= lifecycle.LATE_CAP_S


def test_stuck_task_costs_a_few_hundred_calls_a_day() -> None:
    for status, budget in (("PENDING", 400), ("FIRST_SUCCESS", 800)):
        age, calls = 0.0, 0
        while age < DAY:
            calls += 1
            age += poll_delay(status, age, last_status=status)
        assert calls <= budget, status


# --- simulation of the schedule against fixed 5 s polling -------------------------------------


def status_at(t: float, finish: float, text_at: float, first_before: float) -> str:
    if t >= finish:
        return "SUCCESS"
    if t >= finish - first_before:
        return "FIRST_SUCCESS"
    if t >= text_at:
        return "TEXT_SUCCESS"
    return "PENDING"


def simulate(finish: float, text_at: float, first_before: float, *, show_first: bool = True):
    """Polls (the first at age 0, as the engine does) until one sees SUCCESS.

    Returns (API calls, seconds from finishing to that poll).
    """
    t, last, calls = 0.0, None, 0
    while True:
        calls += 1
        status = status_at(t, finish, text_at, first_before)
        if status == "FIRST_SUCCESS" and not show_first:
            status = "TEXT_SUCCESS"
        if status == "SUCCESS":
            return calls, t - finish
        t, last = t + poll_delay(status, t, last_status=last), status


def fixed_polling(finish: float, every: float = 5.0) -> tuple[int, float]:
    polls = math.ceil(finish / every)
    return polls + 1, polls * every - finish


CASES = [
    (finish, text_at, first_before)
    for finish in range(60, 241)  # uniform finish times, 1 s apart
    for text_at in (10, 20, 30)
    for first_before in (20, 30, 40)
]


def schedule_figures(*, show_first: bool = True) -> tuple[float, float, float]:
    ours = [simulate(*case, show_first=show_first) for case in CASES]
    fixed = [fixed_polling(case[0]) for case in CASES]
    ratio = sum(c for c, _ in ours) / sum(c for c, _ in fixed)
    delays = [d for _, d in ours]
    return ratio, statistics.median(delays), max(delays)


def test_schedule_makes_a_third_of_the_calls_of_5s_polling_with_median_delay_under_15s() -> None:
    ratio, median_delay, worst_delay = schedule_figures()
    assert ratio <= 1 / 3
    assert median_delay <= 15
    assert worst_delay <= 10  # FIRST_SUCCESS is always caught before SUCCESS


def test_schedule_meets_the_delay_target_even_if_first_success_is_never_seen() -> None:
    ratio, median_delay, worst_delay = schedule_figures(show_first=False)
    assert ratio <= 1 / 3
    assert median_delay <= 15
    assert worst_delay <= lifecycle.WINDOW_S


# --- unknown tasks ---------------------------------------------------------------------------


def test_an_unknown_task_is_asked_again_on_a_doubling_backoff_up_to_five_minutes() -> None:
    delays = [unknown_delay(n) for n in range(1, 9)]
    assert delays == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    assert unknown_delay(10_000) == 300.0
