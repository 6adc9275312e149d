"""`pixfind index --engine ray` on a local 2-node Ray cluster (127.0.0.2 + 127.0.0.3, one CPU
each) gives the table a single-process run gives: on 200 real photos whose first driver is
SIGKILLed past its first commit and whose re-run loses a worker node (no duplicate ids, no
orphan files), then after an incremental change (5 changed, 5 deleted, 10 added, a corrupt
and a truncated file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import TINY, shared_photos

pytest.importorskip("ray.data", reason="ray is not installed: pip install 'pixfind[ray]'")
pytest.importorskip("lance", reason="pylance is not installed: pip install 'pixfind[ray]'")

from pixfind.indexer.report import StageTimes  # noqa: E402

from ..motos3 import MotoS3, moto_s3  # noqa: E402, F401 - the fixture ``s3``
from ..raycluster import LocalCluster  # noqa: E402

N_PHOTOS = 200
QUERIES = ["a dog running on grass", "children playing", "a man on a bike"]


def _small_copies(sources: list[Path], folder: Path, flip: bool = False) -> list[Path]:
    """Real photos at thumbnail size: the comparison is of plumbing, so decoding stays cheap."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sources:
        with Image.open(src) as img:
            img.thumbnail((160, 160))
            if flip:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            img.save(folder / src.name, quality=90)
        out.append(folder / src.name)
    return out


@pytest.fixture(scope="module")
def cluster():
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    with LocalCluster(nodes=2, cpus=1, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def originals() -> list[Path]:
    photos = shared_photos(N_PHOTOS + 10)
    if len(photos) < N_PHOTOS + 10:
        pytest.skip(f"../shared/photos has fewer than {N_PHOTOS + 10} flickr8k photos")
    return photos


def _ray_index(cluster, home: Path, root: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pixfind.cli", "--index", str(home), "index", str(root)]
    cmd += ["--model", TINY[0], "--pretrained", TINY[1], "--engine", "ray", "--json"]
    cmd += ["--ray-address", cluster.address, "--actors", "2", "--batch-size", "32", *extra]
    env = {**os.environ, **cluster.driver_env, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(proc: subprocess.Popen) -> dict:
    import json

    out, errors = proc.communicate(timeout=300)
    assert proc.returncode == 0, errors[-3000:]
    return json.loads(out[out.index("{") :])


def _local_index(home: Path, root: Path):
    from pixfind.indexer import IndexOptions, run_index
    from pixfind.search.types import EncoderSpec

    return run_index(home, IndexOptions(roots=[str(root)], workers=0), EncoderSpec(*TINY), "cpu")


def _table(home: Path):
    from pixfind.search.store import Store

    return Store.open(home).table.to_arrow().sort_by("id")


def assert_same_index(ray_home: Path, local_home: Path) -> None:
    """Same ids, rows (but timestamps), schema metadata and search hits; vectors within 1e-5."""
    from pixfind.search.engine import Searcher
    from pixfind.search.query import Query

    ray, local = _table(ray_home), _table(local_home)
    assert ray.schema.metadata == local.schema.metadata
    assert ray.column_names == local.column_names
    ids = ray["id"].to_pylist()
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert ids == local["id"].to_pylist()
    for name in ray.column_names:
        if name in ("indexed_at", "vector", "caption_vectors"):
            continue
        assert ray[name].to_pylist() == local[name].to_pylist(), name
    for name in ("vector", "caption_vectors"):
        got, want = ray[name].to_pylist(), local[name].to_pylist()
        assert [len(v) for v in got] == [len(v) for v in want], name
        np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), atol=1e-5)
    for text in QUERIES:
        hits = [
            Searcher(h, cold=False).run(Query.text(text, k=10)).hits for h in (ray_home, local_home)
        ]
        assert [h.path for h in hits[0]] == [h.path for h in hits[1]], text


def assert_no_orphans(home: Path) -> None:
    """Every data file on disk belongs to a table version that is still there."""
    import lance

    uri = home / "db" / "images.lance"
    dataset = lance.dataset(str(uri))
    referenced = set()
    for version in dataset.versions():
        for fragment in lance.dataset(str(uri), version=version["version"]).get_fragments():
            referenced |= {f.path for f in fragment.data_files()}
    on_disk = {p.name for p in (uri / "data").iterdir()}
    assert on_disk <= {Path(p).name for p in referenced}, on_disk - referenced


def _skips(report) -> set[tuple[str, str]]:
    return {(s["path"], s["reason"]) for s in report["skipped"]}


def _wait_for_commit(driver: subprocess.Popen, uri: str, above: int = 0) -> int:
    """Rows in the table once it holds more than ``above`` (0 when the driver ended first)."""
    import lance

    deadline = time.monotonic() + 240
    while driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if os.path.isdir(uri) and (rows := lance.dataset(uri).count_rows()) > above:
            return rows
    return 0


@pytest.fixture(scope="module")
def killed_then_rerun(cluster, originals, tmp_path_factory):
    """A Ray index whose driver was SIGKILLed after its first commit, then run again, losing
    its second node (127.0.0.3, SIGKILL) after that run's first commit; and a local index of
    the same folder: (folder, ray index, local index, what happened)."""
    base = tmp_path_factory.mktemp("ray-engine")
    root, home = base / "photos", base / "ray"
    _small_copies(originals[:N_PHOTOS], root)
    uri = str(home / "db" / "images.lance")
    small = ("--commit-every", "32", "--batch-size", "16")
    driver = _ray_index(cluster, home, root, *small)
    committed = _wait_for_commit(driver, uri)
    driver_running = driver.poll() is None
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=60)
    # min 1 actor: the pool goes on with the head node's actor when the other node is gone
    rerun_driver = _ray_index(cluster, home, root, *small, "--actors", "1:2")
    recommitted = _wait_for_commit(rerun_driver, uri, above=committed)
    node_lost_mid_run = rerun_driver.poll() is None and recommitted < N_PHOTOS
    cluster.kill_node(1)
    local = _local_index(base / "local", root)  # meanwhile: the driver mostly waits
    assert local.total == N_PHOTOS
    rerun = _finished(rerun_driver)
    facts = {
        "driver_running": driver_running,
        "committed": committed,
        "node_lost_mid_run": node_lost_mid_run,
        "rerun": rerun,
    }
    return root, home, base / "local", facts


def test_driver_then_a_node_killed_mid_run_still_give_the_local_table(killed_then_rerun):
    _, home, local, facts = killed_then_rerun
    assert facts["driver_running"], "the driver finished before its first commit was seen"
    assert facts["node_lost_mid_run"], "the rerun finished before its first commit was seen"
    assert 0 < facts["committed"] < N_PHOTOS
    rerun = facts["rerun"]
    assert rerun["unchanged"] >= facts["committed"]  # committed rows were not embedded again
    assert rerun["added"] == N_PHOTOS - rerun["unchanged"] and rerun["total"] == N_PHOTOS
    assert set(rerun["stages"]) == set(StageTimes().to_dict())  # a local report's stages
    assert rerun["stages"]["embed"] > 0 and rerun["stages"]["decode"] > 0
    assert_same_index(home, local)
    assert_no_orphans(home)


def test_incremental_rerun_gives_the_local_table(killed_then_rerun, cluster, originals):
    root, home, local_home, _ = killed_then_rerun
    photos = sorted(root.glob("*.jpg"))
    _small_copies(originals[:5], root, flip=True)  # 5 changed
    for path in photos[5:10]:  # 5 deleted
        path.unlink()
    _small_copies(originals[N_PHOTOS : N_PHOTOS + 10], root)  # 10 added
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    whole = photos[20].read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 3])

    ray_run = _ray_index(cluster, home, root, "--actors", "1:2")  # one node is left
    local = _local_index(local_home, root)
    again = _finished(ray_run)
    counts = ("added", "updated", "removed", "unchanged")
    assert [again[k] for k in counts] == [
        local.added,
        local.updated,
        local.removed,
        local.unchanged,
    ]
    assert (again["added"], again["updated"], again["removed"]) == (10, 5, 5)
    assert _skips(again) == {(p, r) for p, r in local.skipped}
    assert {Path(p).name for p, _ in _skips(again)} == {"corrupt.jpg", "truncated.jpg"}
    assert_same_index(home, local_home)
    assert_no_orphans(home)


def test_nothing_changed_after_a_ray_run_stops_at_the_quick_look(killed_then_rerun, cluster):
    from pixfind.indexer import filestate

    root, home, _, _ = killed_then_rerun
    assert filestate.load_fresh(home) is not None  # the Ray run left the quick look's states
    again = _finished(_ray_index(cluster, home, root))
    assert (again["added"], again["updated"], again["removed"]) == (0, 0, 0)
    assert again["unchanged"] == again["total"] == len(_table(home))
    # the files that failed last time are not tried again while unchanged (as a local run)
    assert {Path(p).name for p, _ in _skips(again)} == {"corrupt.jpg", "truncated.jpg"}
    assert again["stages"]["decode"] == again["stages"]["embed"] == 0


def test_ray_into_an_index_on_s3(cluster, originals, s3: MotoS3, tmp_path):
    """The actors write fragments to s3:// (moto on loopback) with the driver's credentials,
    the driver commits them: the same ids and hits as a local run; the lease is released."""
    from pixfind.search.engine import Searcher
    from pixfind.search.query import Query

    root = tmp_path / "photos"
    _small_copies(originals[:24], root)
    uri = f"s3://{s3.bucket}/ray-idx"
    cmd = [sys.executable, "-m", "pixfind.cli", "--index", uri, "index", str(root)]
    cmd += ["--model", TINY[0], "--pretrained", TINY[1], "--engine", "ray", "--json"]
    cmd += ["--ray-address", cluster.address, "--actors", "1:2", "--batch-size", "8"]
    env = {**os.environ, **cluster.driver_env, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    report = _finished(driver)
    assert (report["index"], report["added"], report["total"]) == (uri, 24, 24)
    local = tmp_path / "local"
    _local_index(local, root)
    keys = s3.keys("ray-idx/")
    assert "ray-idx/derived/derived.json" in keys and "ray-idx/_pixfind.lease" not in keys
    ray_ids = sorted(Searcher(uri).store.table.to_arrow()["id"].to_pylist())
    assert ray_ids == sorted(_table(local)["id"].to_pylist())
    for text in QUERIES:
        hits = [Searcher(h, cold=False).run(Query.text(text, k=10)).hits for h in (uri, local)]
        assert [h.path for h in hits[0]] == [h.path for h in hits[1]], text


def test_ray_reads_photos_from_s3(cluster, originals, s3: MotoS3, tmp_path):
    """Photos under an s3:// prefix (moto): the actors fetch them with the driver's
    credentials and give the table a local run of the same prefix gives."""
    for path in _small_copies(originals[:16], tmp_path / "small"):
        s3.client().put_object(
            Bucket=s3.bucket, Key=f"ray-photos/{path.name}", Body=path.read_bytes()
        )
    s3.client().put_object(Bucket=s3.bucket, Key="ray-photos/corrupt.jpg", Body=b"\xff\xd8 no")
    prefix = f"s3://{s3.bucket}/ray-photos"
    report = _finished(_ray_index(cluster, tmp_path / "ray", prefix, "--actors", "1:2"))
    local = _local_index(tmp_path / "local", prefix)
    assert (report["added"], local.added) == (16, 16)
    assert _skips(report) == {(p, r) for p, r in local.skipped}
    assert {p for p, _ in _skips(report)} == {f"{prefix}/corrupt.jpg"}
    assert_same_index(tmp_path / "ray", tmp_path / "local")
