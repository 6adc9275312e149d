"""`pixfind search --preview` for real: in a VT340 xterm under Xvfb (Debian's packages), with a
screenshot in test-artifacts/ whose pixels must hold the results' colours, stacked, each at
its size; and the plain list with a clear line where stdout is not a terminal."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import ROOT, TINY

ARTIFACTS = ROOT / "test-artifacts"
COLOURS = {"red": (220, 20, 20), "blue": (20, 20, 220)}
SIZES = {"red": (150, 100), "blue": (100, 150)}  # under the preview size: shown 1:1


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("preview")
    photos = root / "photos"
    photos.mkdir()
    for name, colour in COLOURS.items():
        Image.new("RGB", SIZES[name], colour).save(photos / f"{name}.png")
    home = root / "index"
    model, pretrained = TINY
    done = subprocess.run(
        [sys.executable, "-m", "pixfind.cli", "--index", str(home), "index", str(photos)]
        + ["--model", model, "--pretrained", pretrained],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return home


def test_preview_where_stdout_is_not_a_terminal_prints_the_list_and_says_why(index, cli):
    result = cli("--index", index, "search", "red", "--preview", "-k", "2")
    assert "--preview: standard output is not a terminal" in result.stderr
    assert result.stdout.splitlines()[0].split() == ["rank", "score", "path"]
    assert "\x1b" not in result.stdout
    forced = cli("--index", index, "search", "red", "--preview=kitty", "-k", "2")
    assert forced.stdout.count("\x1b_Ga=T,f=100") == 2  # forced: drawn even into a pipe
    bad = cli("--index", index, "search", "red", "--preview=ascii", ok=False)
    assert bad.exit_code == 1 and "--preview must be one of" in bad.output


def _tools() -> None:
    missing = [t for t in ("Xvfb", "xterm", "import") if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} absent (apt-get install xvfb xterm imagemagick)")


def _start_xvfb(width: int, height: int) -> tuple[subprocess.Popen, str]:
    """Xvfb on a free display it picks itself (-displayfd), no TCP."""
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24"]
        + ["-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    assert number, "Xvfb did not start"
    return proc, f":{number}"


def _segments(shot: np.ndarray) -> list[tuple[str, int, int, int, int]]:
    """Pictures on the screen: (colour, top, bottom, left, right) of each block of rows where
    one of COLOURS covers at least 50 pixels, top to bottom."""
    found, current = [], None
    masks = {
        name: (np.abs(shot.astype(int) - colour).max(axis=2) <= 12)
        for name, colour in COLOURS.items()
    }
    for y in range(shot.shape[0]):
        name = next((n for n, m in masks.items() if m[y].sum() >= 50), None)
        if current and current[0] != name:
            found.append(current)
            current = None
        if name and not current:
            xs = np.flatnonzero(masks[name][y])
            current = [name, y, y, int(xs.min()), int(xs.max())]
        elif name:
            current[2] = y
    return [tuple(s) for s in found + ([current] if current else [])]


def test_sixel_preview_in_xterm_under_xvfb(index, tmp_path):
    """A forced --preview=sixel, then a plain --preview that must find sixel through xterm's
    own DA1 answer; the screenshot must hold red, blue, then the first again, each at its size
    (1:1: they are smaller than the preview), one above the next, with text between."""
    _tools()
    done, log = tmp_path / "done", tmp_path / "stderr.log"
    search = f"{shlex.quote(sys.executable)} -m pixfind.cli --index {shlex.quote(str(index))}"
    script = tmp_path / "run.sh"
    script.write_text(
        f"{search} search red --preview=sixel -k 2 2>>{log}\n"
        f"{search} search red --preview -k 1 2>>{log}\n"
        f"touch {done}\nsleep 60\n"
    )
    xvfb, display = _start_xvfb(800, 640)
    env = {**os.environ, "DISPLAY": display}
    xterm = subprocess.Popen(
        ["xterm", "-ti", "vt340", "-xrm", "XTerm*numColorRegisters: 256"]
        + ["-geometry", "100x45+0+0", "-e", "sh", str(script)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not done.exists() and time.monotonic() < deadline and xterm.poll() is None:
            time.sleep(0.25)
        assert done.exists(), f"the searches did not finish: {log.read_text()[-2000:]}"
        time.sleep(0.5)  # let xterm paint
        ARTIFACTS.mkdir(exist_ok=True)
        shot_path = ARTIFACTS / "preview-sixel-xterm.png"
        subprocess.run(
            ["import", "-display", display, "-window", "root", str(shot_path)],
            check=True,
            timeout=60,
        )
    finally:
        xterm.terminate()
        xvfb.terminate()
        xterm.wait(10), xvfb.wait(10)
    assert "--preview:" not in log.read_text(), log.read_text()  # auto found sixel
    shot = np.asarray(Image.open(shot_path).convert("RGB"))
    pictures = _segments(shot)
    assert [p[0] for p in pictures[:2]] in (["red", "blue"], ["blue", "red"]), pictures
    assert len(pictures) == 3 and pictures[2][0] == pictures[0][0], pictures
    for name, top, bottom, left, right in pictures:
        width, height = SIZES[name]
        assert (right - left + 1, bottom - top + 1) == (width, height), (name, pictures)
        assert left < 20  # at the left margin, where the preview starts
        block = shot[top : bottom + 1, left : right + 1].astype(int)
        assert (np.abs(block - COLOURS[name]).max(axis=2) <= 12).mean() > 0.99
    for (_, _, bottom, _, _), (_, top, _, _, _) in zip(pictures, pictures[1:], strict=False):
        between = shot[bottom + 1 : top, :400]
        assert top - bottom > 10 and (between.max(axis=2) < 100).any()  # a line of text
