"""index.html in a real browser: Debian's chromium, headless, driven by Selenium through the
chromedriver installed beside it (nothing is downloaded at test time). Skipped, with the
reason, where either is missing; .ci/run installs both where it can.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from backfills import Site, audio_id
from manifestdocs import music, track

from archiver.browse.indexer import Indexer
from archiver.browse.store import ViewStore
from archiver.browse.view import view_row
from archiver.sandbox import fake_hex_id
from archiver.sandbox.cdn import FileFaults
from archiver.state.store import StateStore
from archiver.storage.local import LocalStorage

HOSTILE = "<script>alert(1)</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "no chromium and chromedriver here (Debian: apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not go looking online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options
    )
    try:
        yield driver
    finally:
        driver.quit()


def items(browser: Any, selector: str = "li.item") -> list[Any]:
    return browser.find_elements("css selector", selector)


def type_into_search(browser: Any, text: str) -> None:
    """Replace the search box's text as a person does (select all, delete, type: each an input
    event; Selenium's clear() sends none), and wait until the page has shown the outcome."""
    box = browser.find_element("css selector", "#q")
    assert box.get_attribute("value") != text  # else no input event, nothing to wait for
    unsettle(browser)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE, text)
    settled(browser)


def click(browser: Any, selector: str) -> None:
    """Click a control that makes the page show something else, and wait until it has."""
    unsettle(browser)
    browser.find_element("css selector", selector).click()
    settled(browser)


def unsettle(browser: Any) -> None:
    """Mark the list as not settled, before an action: the page handles the action's events
    (input, hashchange) after the command that caused them returned, so without the mark a
    wait could end at once on the list from before the action."""
    browser.execute_script(
        "const list = document.getElementById('list');"
        "if (list) list.setAttribute('aria-busy', 'unsettled');"
    )


def settled(browser: Any) -> None:
    """Wait until the page has shown what it was asked for (a search: every shard searched):
    the page sets aria-busy="false" at the end of each show that is still the latest. The
    generous timeout is for a loaded machine; a page that never settles still fails."""
    WebDriverWait(browser, 60).until(
        lambda b: b.find_element("css selector", "#list").get_attribute("aria-busy") == "false"
    )


def open_page(browser: Any, page: Path, hash: str = "") -> None:
    """Go to the page: a new document, or (the same page, another #q=) a hashchange."""
    unsettle(browser)
    browser.get(page.as_uri() + hash)
    settled(browser)


async def test_the_page_lists_plays_searches_and_shows_hostile_titles_as_text(
    site: Site, browser: Any, tmp_path: Path
) -> None:
    neon, hostile, partial, failed, cover, wav = (fake_hex_id(f"page:{n}") for n in range(6))
    site.sb.add_music(neon, title="Neon Highway", tags="synthwave")
    site.sb.add_music(hostile, title=HOSTILE, tags="punk")
    site.sb.add_music(partial, title="Half There")
    site.sb.cdn.set_faults(f"{partial}-2.mp3", FileFaults(status=404))
    site.sb.add_music(failed, fail_status="SENSITIVE_WORD_ERROR", error_message="Not allowed")
    site.sb.add_cover(cover, parent_task_id=neon)
    site.sb.add_output("wav", wav)  # made from a track this archive does not hold: on its own
    await site.backfill(neon, hostile, partial, failed, cover, f"wav:{wav}")

    browser.set_window_size(1000, 900)
    open_page(browser, site.archive / "index.html")

    tracks = items(browser, 'li.item[data-kind="track"]')
    assert len(tracks) == 6  # three music tasks of two tracks (one MP3 missing)
    assert len(items(browser, "li.item > .cover + .body > audio")) == 5
    assert len(items(browser)) == 8  # the failed and WAV tasks; the cover sits beside its music
    wav_item = browser.find_element("css selector", f'li[data-task="{wav}"]')
    assert wav_item.get_attribute("data-kind") == "wav"
    assert "wav:" in wav_item.text and len(wav_item.find_elements("css selector", "audio")) == 1
    for url in [a.get_attribute("src") for a in items(browser, "audio, img")]:
        assert Path(unquote(urlsplit(url).path)).is_file(), url
    assert len(items(browser, f'li[data-task="{neon}"] .extras img')) == 2 * 2  # both tracks

    titles = [t.text for t in items(browser, "h2.title")]
    assert HOSTILE in titles  # shown as text, never run
    assert browser.execute_script("return document.scripts.length") == 1  # the page's own
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018 - reading it is the check
    partial_item = browser.find_element("css selector", f'li.partial[data-task="{partial}"]')
    assert "404" in partial_item.text
    failed_item = browser.find_element("css selector", f'li.failed[data-task="{failed}"]')
    assert "Not allowed" in failed_item.text

    lyrics = tracks[0].find_element("css selector", ".links button")
    lyrics.click()
    assert "Sandbox lyrics" in tracks[0].find_element("css selector", "pre.lyrics").text

    browser.save_screenshot(str(tmp_path / "index.png"))
    assert (tmp_path / "index.png").read_bytes().startswith(b"\x89PNG")

    type_into_search(browser, "neon")
    assert len(items(browser)) == 2
    type_into_search(browser, audio_id(hostile, 2))
    assert [i.get_attribute("data-task") for i in items(browser)] == [hostile]
    type_into_search(browser, "no such song")
    assert items(browser) == [] and "Nothing matches" in browser.page_source

    browser.set_window_size(390, 844)  # a phone: nothing wider than the screen
    type_into_search(browser, "")
    overflow = "return document.documentElement.scrollWidth - window.innerWidth"
    assert browser.execute_script(overflow) <= 0


async def sharded_archive(root: Path, tasks: int, shard_tasks: int) -> list[str]:
    """An archive of `tasks` music tasks (two tracks each, one a minute) written in shards of
    `shard_tasks`; the third task's first track has a hostile title. Returns the task IDs,
    oldest first."""
    ids = [f"{n:032x}" for n in range(tasks)]
    rows = []
    for n, task_id in enumerate(ids):
        when = f"2025-01-{1 + n // 1440:02d}T{n // 60 % 24:02d}:{n % 60:02d}:00Z"
        title = HOSTILE if n == 2 else f"Song {n} of {'rare' if n == 1 else 'common'} kind"
        rows.append(
            view_row(
                music(
                    task_id=task_id,
                    tracks=[track(1, title=title, created_at=when), track(2, created_at=when)],
                )
            )
        )
    storage = LocalStorage(root)
    try:
        with StateStore.open(root.parent / "state.sqlite3") as state:
            ViewStore(state).put(((r, 1.0) for r in rows), shard_tasks=shard_tasks)
            await Indexer(state, storage, shard_tasks=shard_tasks).write()
    finally:
        await storage.close()
    return ids


def shown_tasks(browser: Any) -> list[str]:
    return [i.get_attribute("data-task") for i in items(browser)]


async def test_the_page_pages_and_searches_across_shards_from_file_urls(
    browser: Any, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    ids = await sharded_archive(archive, 80, shard_tasks=7)  # 12 shards, the newest of 3
    newest_first = ids[::-1]
    page = archive / "index.html"
    assert len(page.read_bytes()) < 40_000  # the page holds no track

    open_page(browser, page)  # file://
    first = shown_tasks(browser)
    assert len(first) == 50 and first[::2] == newest_first[:25]  # two tracks a task
    assert "160 tracks in 80 tasks" in browser.find_element("css selector", "#summary").text
    click(browser, "#next")
    assert shown_tasks(browser)[::2] == newest_first[25:50]
    for _ in range(2):
        click(browser, "#next")
    last = shown_tasks(browser)
    assert last[::2] == newest_first[75:] and last[-1] == ids[0]  # the oldest shard
    assert browser.find_element("css selector", "#next").get_attribute("disabled") is not None
    assert items(browser, f'li[data-task="{ids[2]}"] h2.title')[0].text == HOSTILE
    browser.find_element("css selector", "#parts > summary").click()  # the shards' playlists
    # listed on the details' toggle event, which comes after the click returned
    WebDriverWait(browser, 60).until(lambda b: items(b, "#playlists a"))
    links = [a.get_attribute("href") for a in items(browser, "#playlists a")]
    assert len(links) == 12 and links[0].endswith("/archive/playlists/00011.m3u8")
    assert all(Path(unquote(urlsplit(url).path)).is_file() for url in links)

    words = archive / "browse" / "s" / "00003.js"
    words.rename(archive / "aside.js")  # a shard's words lost: said, not hidden
    type_into_search(browser, "common")
    assert len(shown_tasks(browser)) == 50  # what the newer shards hold
    status = browser.find_element("css selector", "#status").text
    assert status == "Search stopped: cannot load browse/s/00003.js."
    (archive / "aside.js").rename(words)

    type_into_search(browser, "RARE song")  # in the oldest shard but one, every word
    assert shown_tasks(browser) == [ids[1]]
    assert browser.current_url.endswith("#q=RARE%20song")
    type_into_search(browser, "script")
    assert shown_tasks(browser) == [ids[2]]
    type_into_search(browser, "common kind")
    assert len(shown_tasks(browser)) == 50  # found in every shard, first page of them
    type_into_search(browser, "common rare")  # each word in a shard, never in one track
    assert items(browser) == [] and "Nothing matches" in browser.page_source

    browser.get("about:blank")
    open_page(browser, page, f"#q=kind%20{ids[4]}")  # an address with a search runs it
    assert browser.find_element("css selector", "#q").get_attribute("value") == f"kind {ids[4]}"
    assert shown_tasks(browser) == [ids[4]]  # its first track: the second is not of a "kind"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018 - reading it is the check
    assert browser.execute_script("return document.scripts.length") == 1  # loaded ones removed
    open_page(browser, page, "#q=rare%")  # not a valid escape: searched as typed
    assert browser.find_element("css selector", "#q").get_attribute("value") == "rare%"
    assert items(browser) == [] and "Nothing matches" in browser.page_source
