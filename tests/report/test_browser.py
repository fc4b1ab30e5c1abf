"""The HTML report in a real headless Chromium: it renders, shows its sections, and logs no console error.

Marked ``browser``; skipped where no Chromium is installed (CI installs Debian's ``chromium``
when apt can, see .ci/run). With ``--enable-logging=stderr`` Chromium writes every message of
the page's console to stderr as a line holding ``INFO:CONSOLE`` (an uncaught exception, a
``console.error`` and a blocked fetch alike: all at INFO, so the level cannot tell them apart).
The report runs no script, so any such line is a problem; deliberately broken pages check that
they are caught.
"""

import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

from xssr.report.html import SECTIONS

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "chrome")
                 if shutil.which(name)), None)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (apt-get install chromium)")]


def chromium(url: str, *args: str, tmp_path) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``url`` with a throwaway profile; stdout and stderr as text."""
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", "--disable-background-networking", "--enable-logging=stderr", "--v=0",
               f"--user-data-dir={tmp_path / 'profile'}", *args, url]
    env = {**os.environ, "HOME": str(tmp_path)}  # Chromium writes caches under HOME
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def console_messages(stderr: str) -> list[str]:
    """Every message of the page's console: uncaught exceptions, logged errors, refused fetches."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_report_renders_its_sections_without_console_errors(tiny_run, tmp_path):
    done = chromium((tiny_run / "report.html").as_uri(), "--dump-dom", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not console_messages(done.stderr), console_messages(done.stderr)
    dom = done.stdout
    for key, heading in SECTIONS:
        assert re.search(rf'<section id="{key}"><h2>{re.escape(heading)}</h2>', dom), key
    assert dom.count("<svg") == 5 and dom.count('class="card shot"') == 24
    assert "<script" not in dom  # the pool's file and site names stayed text in the browser too


def test_a_console_error_is_caught(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><h1>x</h1><script>throw new Error('deliberate');</script>"
                    "</body></html>")
    done = chromium(page.as_uri(), "--dump-dom", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = console_messages(done.stderr)
    assert len(messages) == 1 and "Uncaught Error: deliberate" in messages[0], done.stderr[-2000:]


def test_a_blocked_fetch_is_caught(tmp_path):
    """The report's policy refuses anything not embedded; a page that tries shows up as a problem."""
    page = tmp_path / "fetching.html"
    page.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" "
                    "content=\"default-src 'none'\"></head><body><img src=\"elsewhere.png\"></body></html>")
    done = chromium(page.as_uri(), "--dump-dom", tmp_path=tmp_path)
    messages = console_messages(done.stderr)
    assert len(messages) == 1 and "Content Security Policy" in messages[0], done.stderr[-2000:]


def test_screenshot_of_the_report(tiny_run, tmp_path):
    shot = tmp_path / "report.png"
    done = chromium((tiny_run / "report.html").as_uri(), f"--screenshot={shot}", "--window-size=1280,2400",
                    "--hide-scrollbars", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(shot) as picture:
        assert picture.size == (1280, 2400)
        # not a blank page: the thumbnails and overlays are dark, the page is white
        assert picture.convert("L").getextrema()[0] < 50
