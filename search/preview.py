"""``pixfind search --preview``: the results as small pictures in the terminal.

Which protocol: forced by ``--preview=kitty|iterm|sixel``, else guessed from the environment
(kitty: ``KITTY_WINDOW_ID``, ``TERM=xterm-kitty``, ghostty; iTerm2: ``TERM_PROGRAM``/
``LC_TERMINAL``, WezTerm; sixel: mlterm, foot, contour, yaft), and failing that from the
terminal's own answer to a DA1 query (attribute 4 = sixel), asked only when stdout is a
terminal, on ``/dev/tty``, with a time limit and the terminal's settings restored after.
Inside tmux or screen the outer terminal's variables are not trusted (kitty and iTerm2
images do not pass through them); their own DA1 answer is.
"""

from __future__ import annotations

import os
import re
import select
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from PIL import Image

from . import termimage
from .images import DecodeError, decode_file
from .types import printable_path

PROTOCOLS = ("kitty", "iterm", "sixel")
CHOICES = ("auto", *PROTOCOLS, "none")
PREVIEW_PX = 192  # long side of each picture, in pixels
DA1_TIMEOUT = 0.5  # seconds to wait for the terminal's answer
SIXEL_TERMS = ("mlterm", "foot", "contour", "yaft")
_DA1_REPLY = re.compile(rb"\x1b\[\?([0-9;]*)c")


@dataclass(frozen=True)
class Shown:
    """One result as the preview shows it."""

    rank: int
    score: float
    path: str
    note: str = ""  # e.g. the RAW sibling, shown after the path


def from_environment(env: Mapping[str, str]) -> str | None:
    """The protocol the environment names, or None when it doesn't say."""
    term = env.get("TERM", "")
    program = env.get("TERM_PROGRAM", "")
    multiplexed = bool(env.get("TMUX")) or term.startswith(("screen", "tmux"))
    if not multiplexed:
        if env.get("KITTY_WINDOW_ID") or term in ("xterm-kitty", "xterm-ghostty"):
            return "kitty"
        if program == "ghostty":
            return "kitty"
        if program in ("iTerm.app", "WezTerm") or env.get("LC_TERMINAL") == "iTerm2":
            return "iterm"
    if term.startswith(SIXEL_TERMS):
        return "sixel"
    return None


def parse_da1(reply: bytes) -> set[int] | None:
    """Attributes of a DA1 answer (``ESC [ ? 62 ; 4 ; 22 c``), or None if there is none."""
    found = _DA1_REPLY.search(reply)
    if not found:
        return None
    return {int(a) for a in found.group(1).split(b";") if a}


def query_da1(fd: int, timeout: float = DA1_TIMEOUT) -> set[int] | None:
    """Ask the terminal on ``fd`` (read-write) for its device attributes: echo and line
    buffering off while waiting, at most ``timeout`` seconds and 256 bytes, settings restored."""
    import termios

    saved = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~(termios.ICANON | termios.ECHO)
    quiet[6][termios.VMIN], quiet[6][termios.VTIME] = 0, 0
    reply = b""
    try:
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        os.write(fd, b"\x1b[c")
        deadline = time.monotonic() + timeout
        while len(reply) < 256 and not _DA1_REPLY.search(reply):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 64)
            if not chunk:
                break
            reply += chunk
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
    return parse_da1(reply)


def from_terminal() -> str | None:
    """sixel when the controlling terminal's DA1 answer lists it, else None."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    try:
        attributes = query_da1(fd)
    except Exception:  # no termios (Windows), not a terminal after all: no images
        return None
    finally:
        os.close(fd)
    return "sixel" if attributes and 4 in attributes else None


def choose(
    wanted: str, env: Mapping[str, str], is_tty: bool, ask_terminal=from_terminal
) -> tuple[str | None, str]:
    """(protocol or None, why): ``wanted`` is one of CHOICES; a forced protocol is used even
    when stdout is not a terminal (so it can be written to a file)."""
    if wanted not in CHOICES:
        from .errors import BadQuery

        raise BadQuery(f"--preview must be one of {', '.join(CHOICES)}, not {wanted!r}")
    if wanted == "none":
        return None, ""
    if wanted != "auto":
        return wanted, ""
    if not is_tty:
        return None, "standard output is not a terminal"
    if env.get("TERM", "") in ("", "dumb"):
        return None, f"TERM={env.get('TERM', '')!r} can't show images"
    found = from_environment(env) or ask_terminal()
    if found:
        return found, ""
    return None, (
        f"this terminal (TERM={env.get('TERM', '')}) shows no kitty, iTerm2 or sixel images"
    )


def thumbnail(path: str, size: int = PREVIEW_PX) -> Image.Image:
    img = decode_file(path, draft_size=size).image
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img


def picture(img: Image.Image, protocol: str, name: str = "") -> bytes:
    if protocol == "kitty":
        return termimage.kitty(img)
    if protocol == "iterm":
        return termimage.iterm(img, name)
    return termimage.sixel(img)


def render(shown: Sequence[Shown], protocol: str, size: int = PREVIEW_PX) -> Iterator[bytes]:
    """Each result's picture, then a line under it: rank, score, path."""
    for item in shown:
        line = f"{item.rank:>4}  {item.score:>6.3f}  {printable_path(item.path)}"
        try:
            yield picture(thumbnail(item.path, size), protocol, os.path.basename(item.path))
            yield b"\r\n"
        except DecodeError as exc:
            line += f"  (no picture: {exc})"
        if item.note:
            line += f"  {item.note}"
        yield (line + "\n").encode("utf-8", "surrogateescape")
