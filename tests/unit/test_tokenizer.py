"""The torch-free tokenizer (search/tokenizer.py) gives open_clip's token ids exactly: on real
captions (../shared/photos) and on text that exercises cleaning, unicode and truncation."""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys

import numpy as np
import pytest
from pixfind.search.tokenizer import ClipTokenizer, clip_tokenizer

from tests.conftest import SHARED_PHOTOS

EDGE = [
    "a dog",
    "",
    "   ",
    "x",
    "Two BLUE squares on a white background, seen from far above!",
    "caf\u00e9 &amp; cr\u00e8me br\u00fbl\u00e9e \U0001f600 &lt;b&gt;",
    "don't you'll we've I'm she'd they're it's",
    "1999 photos of 3 cats, 42% blurry; e-mail: a.b@c.de #tags",
    "日本語のテキスト русский العربية",
    "tabs\tand\nnewlines\r\n  and   spaces",
    "\u00c3\u00a9 mojibake fixed by ftfy",
    "<start_of_text> literal specials <end_of_text>",
    " ".join(["very long query"] * 40),  # longer than the context: truncated, ends in EOT
]


def _captions(n: int) -> list[str]:
    path = SHARED_PHOTOS / "captions.jsonl"
    if not path.is_file():
        pytest.skip(f"../shared/photos not present ({path}); real captions skipped")
    lines = path.read_text().splitlines()
    step = max(1, len(lines) // n)
    return [json.loads(line)["caption"] for line in lines[::step][:n]]


@pytest.mark.parametrize("context_length", [77, 32])
def test_ids_equal_open_clip(context_length):
    from open_clip.tokenizer import SimpleTokenizer

    texts = EDGE + _captions(1500) + _ascii(300)
    ours = ClipTokenizer(context_length)(texts)
    theirs = SimpleTokenizer(context_length=context_length)(texts).numpy()
    assert ours.dtype == np.int64 and ours.shape == (len(texts), context_length)
    np.testing.assert_array_equal(ours, theirs)


def test_cached_and_single_text():
    tok = clip_tokenizer(77)
    assert clip_tokenizer(77) is tok
    one = tok("a dog")
    assert one.shape == (1, 77) and one[0, 0] == tok.sot and one[0, 3] == tok.eot


def _ascii(n: int) -> list[str]:
    """Printable ASCII (the cleaning shortcut's domain) and a little beyond: control
    characters, entities, apostrophes, digits."""
    rng = random.Random(7)
    alphabet = string.printable + "''&;\x00\x1c\x7f" + "'s 're 'll "
    return ["".join(rng.choices(alphabet, k=rng.randint(1, 60))) for _ in range(n)]


def test_imports_neither_torch_nor_open_clip():
    # nor ftfy and regex for plain ASCII text (cleaning it is a no-op, re does the split)
    code = (
        "import sys; from pixfind.search.tokenizer import clip_tokenizer;"
        "clip_tokenizer(77)(['a dog on a beach, 2 cats!']);"
        "print(sorted(m for m in ('torch', 'open_clip', 'ftfy', 'regex') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tables_are_cached_and_a_bad_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    texts = EDGE[:6]
    built = ClipTokenizer(77)(texts)
    (cached,) = (tmp_path / "pixfind" / "tokenizer").glob("bpe-*.marshal")
    np.testing.assert_array_equal(ClipTokenizer(77)(texts), built)  # from the cache
    cached.write_bytes(b"not marshal data")
    np.testing.assert_array_equal(ClipTokenizer(77)(texts), built)
    assert cached.read_bytes() != b"not marshal data"
