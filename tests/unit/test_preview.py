"""Terminal previews: the escape sequences decode back to the picture, the terminal is guessed
from what it says about itself, and a terminal that can't show images gets the plain list."""

from __future__ import annotations

import base64
import io
import os
import re
import threading
import time

import numpy as np
import pytest
from PIL import Image, ImageFilter
from pixfind.search import termimage
from pixfind.search.preview import (
    CHOICES,
    Shown,
    choose,
    from_environment,
    parse_da1,
    query_da1,
    render,
)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def blocks(width: int, height: int) -> Image.Image:
    """Eight flat colours in vertical stripes, plus a one-pixel dot: an exact palette image."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0)]
    colours += [(255, 255, 255), (128, 64, 200), (10, 200, 180)]
    arr = np.zeros((height, width, 3), np.uint8)
    for i, c in enumerate(colours):
        arr[:, i * width // 8 : (i + 1) * width // 8] = c
    arr[height // 2, width // 3] = (250, 120, 0)
    return Image.fromarray(arr, "RGB")


# -- kitty ----------------------------------------------------------------------------------------
def test_kitty_chunks_decode_back_to_the_picture():
    img = noise(64, 48)
    data = termimage.kitty(img)
    chunks = re.findall(rb"\x1b_G([^;]*);([^\x1b]*)\x1b\\", data)
    assert b"".join(re.findall(rb"\x1b_G[^\x1b]*\x1b\\", data)) == data  # nothing else in it
    assert len(chunks) > 1  # 64x48 of noise is over 4096 base64 bytes: sent in pieces
    keys = [dict(kv.split(b"=") for kv in k.split(b",")) for k, _ in chunks]
    assert keys[0][b"a"] == b"T" and keys[0][b"f"] == b"100" and keys[0][b"q"] == b"2"
    assert [k[b"m"] for k in keys] == [b"1"] * (len(chunks) - 1) + [b"0"]
    assert all(len(payload) <= termimage.KITTY_CHUNK for _, payload in chunks)
    png = base64.standard_b64decode(b"".join(payload for _, payload in chunks))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), np.asarray(img))


# -- iTerm2 ---------------------------------------------------------------------------------------
def test_iterm_inline_image_decodes_back_with_its_name_and_size():
    img = noise(30, 20, seed=1)
    data = termimage.iterm(img, "plage été.jpg")
    found = re.fullmatch(rb"\x1b\]1337;File=([^:]*):([A-Za-z0-9+/=]*)\x07", data)
    assert found
    args = dict(a.split(b"=", 1) for a in found.group(1).split(b";"))
    png = base64.standard_b64decode(found.group(2))
    assert args[b"inline"] == b"1" and int(args[b"size"]) == len(png)
    assert base64.standard_b64decode(args[b"name"]).decode() == "plage été.jpg"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), np.asarray(img))


# -- sixel ----------------------------------------------------------------------------------------
def decode_sixel(data: bytes) -> np.ndarray:
    """A small sixel reader (the parts termimage.sixel writes): -> (H, W, 3) uint8."""
    body = re.fullmatch(rb"\x1bP0;1;0q\"1;1;(\d+);(\d+)(.*)\x1b\\", data, re.S)
    assert body, data[:40]
    width, height = int(body.group(1)), int(body.group(2))
    out = np.zeros((height, width, 3), np.uint8)
    palette: dict[int, tuple[int, ...]] = {}
    colour, x, top = 0, 0, 0
    tokens = re.findall(rb"#(\d+);2;(\d+);(\d+);(\d+)|#(\d+)|!(\d+)(.)|([?-~])|(\$)|(-)", body[3])
    for define, r, g, b, pick, count, rep, char, cr, nl in tokens:
        if define:
            palette[int(define)] = tuple(round(int(v) * 255 / 100) for v in (r, g, b))
        elif pick:
            colour = int(pick)
        elif cr:
            x = 0
        elif nl:
            x, top = 0, top + 6
        else:
            n, ch = (int(count), rep) if count else (1, char)
            bits = ch[0] - 63
            for row in range(6):
                if bits >> row & 1:
                    assert top + row < height and x + n <= width
                    out[top + row, x : x + n] = palette[colour]
            x += n
    return out


def test_sixel_decodes_back_to_the_picture():
    img = blocks(80, 23)  # 23 rows: the last band is partial
    data = termimage.sixel(img)
    back = decode_sixel(data)
    assert back.shape == (23, 80, 3)
    # sixel colours are whole percentages: within 1.3 levels of 255
    assert np.abs(back.astype(int) - np.asarray(img, dtype=int)).max() <= 2
    assert b"!" in data  # flat stripes are run-length coded
    assert len(data) < 80 * 23  # ... so much smaller than a byte per pixel


def test_sixel_of_a_photo_keeps_its_colours_within_the_palette_error():
    img = noise(40, 30, seed=2).filter(ImageFilter.GaussianBlur(3))
    back = decode_sixel(termimage.sixel(img))
    error = np.abs(back.astype(int) - np.asarray(img, dtype=int)).mean()
    assert error < 6, error


def test_sixel_uses_registers_from_zero_so_a_16_colour_terminal_can_show_few_colours():
    img = blocks(32, 12)
    data = termimage.sixel(img, colours=16)
    registers = {int(n) for n in re.findall(rb"#(\d+);2;", data)}
    assert registers == set(range(len(registers))) and len(registers) <= 16


# -- which terminal -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "env, expected",
    [
        ({"TERM": "xterm-kitty"}, "kitty"),
        ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}, "kitty"),
        ({"TERM": "xterm-ghostty"}, "kitty"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"}, "iterm"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, "iterm"),
        ({"TERM": "xterm-256color", "LC_TERMINAL": "iTerm2"}, "iterm"),  # iTerm2 over ssh
        ({"TERM": "mlterm"}, "sixel"),
        ({"TERM": "foot-extra"}, "sixel"),
        ({"TERM": "xterm-256color"}, None),
        # tmux: kitty/iTerm2 images don't pass through, whatever the outer terminal is
        ({"TERM": "tmux-256color", "TMUX": "/tmp/x,1,0", "KITTY_WINDOW_ID": "1"}, None),
        ({"TERM": "screen", "LC_TERMINAL": "iTerm2"}, None),
    ],
)
def test_protocol_from_the_environment(env, expected):
    assert from_environment(env) == expected


def test_choose_forced_auto_and_none():
    never = lambda: pytest.fail("asked the terminal")  # noqa: E731
    assert choose("sixel", {}, is_tty=False, ask_terminal=never) == ("sixel", "")
    assert choose("none", {"TERM": "xterm-kitty"}, is_tty=True, ask_terminal=never) == (None, "")
    assert choose("auto", {"TERM": "xterm-kitty"}, True, never) == ("kitty", "")
    protocol, why = choose("auto", {"TERM": "xterm-kitty"}, False, never)
    assert protocol is None and "not a terminal" in why
    protocol, why = choose("auto", {"TERM": "dumb"}, True, never)
    assert protocol is None and "dumb" in why
    # nothing in the environment: the terminal's DA1 answer decides
    assert choose("auto", {"TERM": "xterm"}, True, lambda: "sixel") == ("sixel", "")
    protocol, why = choose("auto", {"TERM": "xterm"}, True, lambda: None)
    assert protocol is None and "TERM=xterm" in why and "sixel" in why


def test_choose_refuses_an_unknown_protocol():
    from pixfind.search.errors import BadQuery

    with pytest.raises(BadQuery, match="kitty"):
        choose("ascii-art", {}, True)


def test_parse_da1():
    assert parse_da1(b"\x1b[?63;1;2;4;6;9;15;22c") == {63, 1, 2, 4, 6, 9, 15, 22}
    assert 4 not in parse_da1(b"junk\x1b[?62;22c")
    assert parse_da1(b"") is None and parse_da1(b"\x1b[?6") is None


def _terminal(answer: bytes | None):
    """A pseudo-terminal whose far end answers a DA1 query with ``answer`` (None: silence)."""
    import pty

    master, slave = pty.openpty()
    asked = []

    def far_end():
        data = os.read(master, 16)
        asked.append(data)
        if answer is not None:
            os.write(master, answer)

    thread = threading.Thread(target=far_end, daemon=True)
    thread.start()
    return master, slave, thread, asked


@pytest.mark.skipif(os.name != "posix", reason="pseudo-terminals are POSIX")
def test_da1_query_on_a_real_pseudo_terminal_restores_its_settings():
    import termios

    master, slave, thread, asked = _terminal(b"\x1b[?63;1;2;4;6;9;15;22c")
    try:
        before = termios.tcgetattr(slave)
        attributes = query_da1(slave, timeout=5)
        thread.join(5)
        assert asked == [b"\x1b[c"] and attributes and 4 in attributes
        assert termios.tcgetattr(slave) == before  # echo and line mode are back
    finally:
        os.close(master), os.close(slave)


@pytest.mark.skipif(os.name != "posix", reason="pseudo-terminals are POSIX")
def test_da1_query_gives_up_on_a_silent_terminal():
    master, slave, thread, _ = _terminal(None)
    try:
        started = time.monotonic()
        assert query_da1(slave, timeout=0.3) is None
        assert time.monotonic() - started < 2
    finally:
        os.close(master), os.close(slave)


# -- the command line's optional value, and the rendering ----------------------------------------
def test_bare_preview_means_auto():
    from pixfind.cli import PREVIEW_CHOICES, optional_value

    assert PREVIEW_CHOICES == CHOICES
    assert optional_value(["search", "x", "--preview"], "--preview", CHOICES, "auto") == [
        "search",
        "x",
        "--preview=auto",
    ]
    assert optional_value(["search", "--preview", "-k", "3", "x"], "--preview", CHOICES, "auto")[
        1
    ] == ("--preview=auto")
    kept = ["search", "--preview", "sixel", "x"]
    assert optional_value(kept, "--preview", CHOICES, "auto") == kept
    after = ["search", "--", "--preview"]
    assert optional_value(after, "--preview", CHOICES, "auto") == after


def test_render_draws_each_result_with_rank_score_and_path_under_it(tmp_path):
    good = tmp_path / "red.png"
    Image.new("RGB", (400, 300), (200, 10, 10)).save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    shown = [Shown(1, 0.5, str(good)), Shown(2, 0.25, str(bad), note="+ RAW broken.NEF")]
    out = b"".join(render(shown, "sixel", size=64))
    picture = re.search(rb"\x1bP.*?\x1b\\", out, re.S).group(0)
    assert decode_sixel(picture).shape == (48, 64, 3)  # 400x300 fitted into 64 px
    text = re.sub(rb"\x1bP.*?\x1b\\", b"", out, flags=re.S).decode()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].split() == ["1", "0.500", str(good)]
    assert lines[1].startswith(f"   2   0.250  {bad}  (no picture:")
    assert lines[1].endswith("+ RAW broken.NEF")
    assert out.index(picture) < out.index(b"0.500")  # the line is under its picture
