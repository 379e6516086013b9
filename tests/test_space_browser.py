"""End to end in Debian's headless Chromium: upload a real clip, classify it, see the genre appear.

Set MUSICCLIP_SCREENSHOT=docs/space.png to also keep the screenshot for the README.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from test_space import immich_tracks, running_space

CHROMIUM = "/usr/bin/chromium"
MOODS = {"calm", "energetic", "happy", "nostalgic", "tender"}


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is installed by scripts/setup.sh")
def test_upload_classify_and_see_the_genre(tmp_path):
    url = running_space()["url"]
    clip = immich_tracks()[-1]  # tender_electronic_s411: not in the test library
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # Chromium's own background lookups go nowhere; loopback still resolves.
            args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(url)
            page.locator("#genre-audio input[type=file]").set_input_files(str(clip))
            expect(page.locator("#genre-audio [data-testid='waveform-controls']")).to_be_visible(
                timeout=30_000
            )
            page.locator("#genre-button").click()
            answer = page.locator("#genre-label [data-testid='label-output-value']")
            expect(answer).to_be_visible(timeout=60_000)
            expect(page.locator("#genre-mel img")).to_be_visible(timeout=30_000)
            assert answer.inner_text().strip().splitlines()[0] in MOODS
            shot = tmp_path / "space.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    if os.environ.get("MUSICCLIP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["MUSICCLIP_SCREENSHOT"])
