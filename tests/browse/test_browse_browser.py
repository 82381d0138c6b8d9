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

from archiver.sandbox import fake_hex_id
from archiver.sandbox.cdn import FileFaults

HOSTILE = "<script>alert(1)</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402

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
    box = browser.find_element("css selector", "#q")
    box.clear()
    box.send_keys(text)


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
    browser.get((site.archive / "index.html").as_uri())

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
    assert browser.execute_script("return document.scripts.length") == 3  # the page's own
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
