"""The torch-free tokenizer (search/tokenizer.py) gives open_clip's token ids exactly: on real
captions (../shared/photos) and on text that exercises cleaning, unicode and truncation."""

from __future__ import annotations

import json
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

    texts = EDGE + _captions(1500)
    ours = ClipTokenizer(context_length)(texts)
    theirs = SimpleTokenizer(context_length=context_length)(texts).numpy()
    assert ours.dtype == np.int64 and ours.shape == (len(texts), context_length)
    np.testing.assert_array_equal(ours, theirs)


def test_cached_and_single_text():
    tok = clip_tokenizer(77)
    assert clip_tokenizer(77) is tok
    one = tok("a dog")
    assert one.shape == (1, 77) and one[0, 0] == tok.sot and one[0, 3] == tok.eot


def test_imports_neither_torch_nor_open_clip():
    code = (
        "import sys; from pixfind.search.tokenizer import clip_tokenizer;"
        "clip_tokenizer(77)(['a dog on a beach']);"
        "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
