"""``pixfind search "words"`` answered before the command-line app is built.

Building the Typer app imports Typer, rich, Pydantic (the server's models) and every
command's module: about a third of a cold query on a laptop. cli.py hands a plain search to
``answer`` first: a text query with, at most, the global ``--index DIR`` before the command
and ``-k/--top-k N``, ``--json``, ``--mode MODE`` after it. It prints what the Typer command
prints (the same functions print both; tests/e2e/test_cold_hybrid.py compares the bytes).
Anything else, or anything that goes wrong before the first byte is printed, leaves the
command to Typer (which words the errors). ``PIXFIND_FAST_PATH=0`` turns it off.
"""

from __future__ import annotations

import json
import os
import sys

_OPTIONS = {"-k": "k", "--top-k": "k", "--mode": "mode"}  # options with a value


def parse(args: list[str]) -> tuple[str | None, str, int, str | None, bool] | None:
    """(index, text, k, mode, json) of a plain search command line, else None."""
    index, i = None, 0
    while i < len(args) and args[i] != "search":
        if args[i] == "--index" and i + 1 < len(args):
            index, i = args[i + 1], i + 2
        elif args[i].startswith("--index="):
            index, i = args[i].partition("=")[2], i + 1
        else:
            return None
    text, k, mode, as_json = None, 10, None, False
    rest = args[i + 1 :]
    j = 0
    while j < len(rest):
        arg = rest[j]
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if arg == "--json":
            as_json = True
        elif name in _OPTIONS:
            if not eq:
                if j + 1 == len(rest):
                    return None
                j, value = j + 1, rest[j + 1]
            if _OPTIONS[name] == "mode":
                mode = value
            elif value.strip().isdigit():
                k = int(value)
            else:
                return None
        elif arg.startswith("-") or text is not None:
            return None
        else:
            text = arg
        j += 1
    return None if text is None or i == len(args) else (index, text, k, mode, as_json)


def answer(args: list[str]) -> bool:
    """Run a plain search command line and print its results; False: not done, hand it to
    the Typer app."""
    parsed = parse(args)
    if parsed is None:
        return False
    from .settings import get_settings, quiet_libraries, resolve_home

    if not get_settings().fast_path:
        return False
    index, text, k, mode, as_json = parsed
    # before numpy loads OpenBLAS: a query's matrix products are a few rows each, and idle
    # BLAS threads spinning on a busy machine cost it 2-3x its CPU time (measured 0.55 s
    # of CPU with one thread against 0.8-1.8 s with two, 2 cores at a load of 8)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    quiet_libraries()
    try:
        from .engine import Searcher
        from .query import Query, make_terms
        from .raw import raw_siblings

        terms = make_terms(text)
        query = Query(terms=tuple(terms), k=k, mode=mode)
        hits = Searcher(resolve_home(index or get_settings().index)).run(query).hits
        raws = raw_siblings([h.path for h in hits])
    except Exception:  # noqa: BLE001 - the Typer command runs it again and words the error
        return False
    if as_json:
        results = [h.to_dict() | ({"raw": raws[h.path]} if h.path in raws else {}) for h in hits]
        write_json({"query": text, "results": results})
    elif not hits:
        sys.stdout.write("no matches\n")
    else:
        print_table(hits, raws)
    return True


def write_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def raw_note(path: str, raws: dict[str, str]) -> str:
    from .types import printable_path

    return f"  (+ RAW {printable_path(os.path.basename(raws[path]))})" if path in raws else ""


def print_table(hits, raws: dict[str, str]) -> None:
    """Plain columns rather than a rich table: long paths must never be cut or folded."""
    from .types import printable_path

    sys.stdout.write(f"{'rank':>4}  {'score':>6}  path\n")
    for h in hits:
        note = raw_note(h.path, raws)
        sys.stdout.write(f"{h.rank:>4}  {h.score:>6.3f}  {printable_path(h.path)}{note}\n")
