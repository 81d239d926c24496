"""report.html in a real browser (headless Chromium): it renders, every section and image is there, and the console stays quiet."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_data import read_page, write_evaluation

from detkit.commands.report import main

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")
# --no-sandbox: the sandbox refuses to run as root (CI containers); the pages are our own local files.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files"]


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=120)


def console_messages(html: Path) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and every console message (errors, uncaught exceptions, failed loads)."""
    done = chromium("--enable-logging=stderr", "--v=0", "--dump-dom", html.resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_the_console_check_catches_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<html><body><img src="missing.png"><script>notDefined();</script></body></html>')
    _, messages = console_messages(page)
    assert any("Uncaught ReferenceError" in m for m in messages), messages


@pytest.mark.parametrize("num_classes", [1, 80])
def test_report_renders_with_every_section_and_no_console_message(tmp_path, num_classes):
    folder = write_evaluation(tmp_path / "eval", num_classes=num_classes, num_images={1: 8, 80: 60}[num_classes])
    assert main([str(folder), "--images", str(folder / "images")]) == 0
    html = folder / "report" / "report.html"
    page = read_page(html)  # every section id, every image file
    dom, messages = console_messages(html)
    assert not messages, messages
    assert dom.count('class="sortable"') > 1, "the sorting script ran (it marks each header sortable)"
    shot = tmp_path / f"report_{num_classes}.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1400,4000", html.resolve().as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (4000, 1400) and pixels.std() > 20, "the screenshot shows a page, not a blank"
    assert len(page.images) > 5
