"""The Ray engine's planner (an Arrow join) decides what the local planner (dicts) decides,
on any mix of new, changed, unchanged, gone, unseen and undecodable-byte paths; and the
`--engine ray` options say what is wrong in one line."""

from __future__ import annotations

import builtins
import random

import pytest
from pixfind.indexer.arrow_plan import (
    TODO,
    key_path,
    plan_tables,
    states_table,
)
from pixfind.indexer.plan import make_plan
from pixfind.search.types import FileStat

NAMES = ["a.jpg", "b.jpg", "sub/c.jpg", "sub/d.png", "caf\udce9.jpg", "e f.jpg", "locked/g.jpg"]
ROOTS = ["/p/one", "/p/two"]


def _random_case(rng: random.Random):
    paths = [f"{root}/{name}" for root in [*ROOTS, "/q"] for name in NAMES]
    known = {p: (float(rng.randrange(3)), rng.randrange(3)) for p in paths if rng.random() < 0.6}
    found = [
        FileStat(p, float(rng.randrange(3)), rng.randrange(3))
        for p in paths
        if p.startswith("/p") and rng.random() < 0.7
    ]
    unseen = ["/p/one/locked"] if rng.random() < 0.5 else []
    return found, known, unseen, rng.random() < 0.3


def _known_table(known):
    return states_table(FileStat(p, m, s) for p, (m, s) in known.items())


@pytest.mark.parametrize("seed", range(40))
def test_arrow_plan_matches_the_dict_plan(seed):
    found, known, unseen, prune = _random_case(random.Random(seed))
    want = make_plan(found, known, ROOTS, unseen, prune)
    got = plan_tables(states_table(found), _known_table(known), ROOTS, unseen, prune)

    def paths(table):
        return sorted(key_path(k) for k in table["key"].to_pylist())

    assert paths(got.new) == sorted(s.path for s in want.new)
    assert paths(got.changed) == sorted(s.path for s in want.changed)
    assert got.unchanged == want.unchanged
    assert (got.removed, got.kept) == (want.removed, want.kept)
    todo = got.todo
    assert todo.schema == TODO and len(todo) == len(want.todo)
    rows = todo.to_pylist()
    changed = {key_path(row["key"]) for row in rows if row["changed"]}
    assert changed == {s.path for s in want.changed}


def test_states_table_keeps_undecodable_bytes_exactly_across_chunks():
    stats = [FileStat(f"/p/caf\udce9{i}.jpg", 1.5, i) for i in range(5)]
    table = states_table(stats, chunk=2)
    assert [key_path(k) for k in table["key"].to_pylist()] == [s.path for s in stats]
    assert table["size"].to_pylist() == list(range(5))


def test_actors_option_takes_n_or_min_max():
    import typer
    from pixfind.indexer.commands import parse_actors

    assert parse_actors("3") == (3, 3) and parse_actors("1:4") == (1, 4)
    for bad in ("0", "4:2", "x", "2:"):
        with pytest.raises(typer.BadParameter):
            parse_actors(bad)


def test_engine_ray_without_the_extra_says_how_to_install_in_one_line(cli, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'", name="ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    result = cli("index", str(tmp_path), "--engine", "ray", ok=False)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'pixfind[ray]'" in lines[0], result.output
