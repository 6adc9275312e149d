"""CLIP's byte-pair tokenizer without torch: open_clip's ``SimpleTokenizer``, ported to numpy.

open_clip's tokenizer module imports torch (its result is a torch tensor) and builds a
tokenizer at import; a cold text query on the ONNX runtime (search/onnxrt.py) needs neither.
This is the same algorithm on the same vocabulary file, read from open_clip's package data
without importing open_clip: text cleaned by ftfy, HTML-unescaped, whitespace collapsed and
lower-cased ("lower", open_clip's default), split by the same regular expression, merged by
BPE rank, wrapped in start/end-of-text tokens, truncated to the context length with the last
token replaced by end-of-text. tests/unit/test_tokenizer.py checks the ids equal open_clip's
on real captions and on edge cases.
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
SPECIALS = ("<start_of_text>", "<end_of_text>")
TABLES_FORMAT = 1


def vocab_path() -> Path:
    """open_clip's BPE vocabulary file, located without importing open_clip."""
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "open_clip is not installed (its BPE vocabulary file is needed): use a model "
            "folder written by `pixfind models export`, which carries its own copy"
        )
    return Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE


@functools.cache
def _bytes_to_unicode() -> dict[int, str]:
    """Every byte to a printable character: BPE runs on strings without control characters."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    bs += range(ord("®"), ord("ÿ") + 1)
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return set(zip(word, word[1:], strict=False))


def _clean(text: str) -> str:
    if not (text.isascii() and text.isprintable() and "&" not in text):
        import ftfy  # 40-80 ms to import: printable ASCII without entities is left as it is

        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.strip().split()).strip().lower()


def _build_tables(path: Path) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """(token -> id, merge pair -> rank) from the vocabulary file."""
    with gzip.open(path) as fh:
        merges = fh.read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in merges[1 : 49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += SPECIALS
    return {token: i for i, token in enumerate(vocab)}, {m: i for i, m in enumerate(merges)}


def _tables(path: Path):
    """``_build_tables``, kept in pixfind's model cache (marshal: plain dicts of str, tuple and
    int) keyed by the vocabulary file's stat: building them is most of a cold query's
    tokenizer time (0.1-0.25 s), loading them a few ms."""
    import hashlib
    import marshal
    import os

    from .settings import model_cache_dir

    st = path.stat()
    key = hashlib.blake2b(
        f"{TABLES_FORMAT} {path} {st.st_size} {st.st_mtime_ns}".encode(), digest_size=8
    )
    cached = model_cache_dir() / "tokenizer" / f"bpe-{key.hexdigest()}.marshal"
    try:
        tables = marshal.loads(cached.read_bytes())
        if isinstance(tables, tuple) and len(tables) == 2 and len(tables[0]) > len(tables[1]):
            return tables
    except (OSError, EOFError, ValueError, TypeError):
        pass
    tables = _build_tables(path)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(marshal.dumps(tables))
        os.replace(tmp, cached)
    except OSError:  # a read-only cache only costs the build
        pass
    return tables


class ClipTokenizer:
    """``tokenizer(texts) -> int64 array (len(texts), context_length)``, open_clip's ids."""

    def __init__(self, context_length: int = 77, path: Path | None = None):
        self.encoder, self.ranks = _tables(path or vocab_path())
        self.cache: dict[str, str] = {t: t for t in SPECIALS}
        # letters and digits are [a-z] and [0-9] in ASCII text (cleaned: no whitespace but
        # single spaces), which ``re`` does without importing ``regex`` (20-40 ms)
        self.ascii_pat = re.compile(
            "|".join(SPECIALS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+""",
            re.IGNORECASE,
        )
        self.sot, self.eot = (self.encoder[t] for t in SPECIALS)
        self.context_length = context_length

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = (*token[:-1], token[-1] + "</w>")
        pairs = _pairs(word)
        while pairs:
            first, second = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if (first, second) not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    break
                merged.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
            pairs = _pairs(word) if len(word) > 1 else set()
        out = " ".join(word)
        self.cache[token] = out
        return out

    @functools.cached_property
    def pat(self):
        import regex

        return regex.compile(
            "|".join(SPECIALS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    def encode(self, text: str) -> list[int]:
        table = _bytes_to_unicode()
        ids: list[int] = []
        text = _clean(text)
        for token in (self.ascii_pat if text.isascii() else self.pat).findall(text):
            token = "".join(table[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else list(texts)
        length = context_length or self.context_length
        out = np.zeros((len(texts), length), np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > length:
                ids = ids[:length]
                ids[-1] = self.eot
            out[row, : len(ids)] = ids
        return out


@functools.cache
def clip_tokenizer(context_length: int = 77, path: Path | None = None) -> ClipTokenizer:
    """The tokenizer over ``path`` (None: open_clip's vocabulary file), once per process."""
    return ClipTokenizer(context_length, path)
