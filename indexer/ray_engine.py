"""`pixfind index --engine ray`: the driver of a Ray Data run into the same LanceDB table.

The driver opens the store (model check as today), scans, plans with an Arrow join, hands the
TODO rows to an actor pool (ray_worker.EmbedActor: decode + embed + rows, new rows written as
uncommitted Lance fragments) and commits what comes back every ``commit_every`` rows: new
rows appended, rows of changed files through merge_insert by id, undecodable ones deleted.
Then the same finishing as a local run (deletes, compaction, keyword and vector indexes).

A driver killed at any moment loses at most its uncommitted window: committed rows are
unchanged files to the next run's plan, and fragments no version references are deleted
at the start and end of every run (a retried Ray task can leave one, too)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from pixfind.search import keywords
from pixfind.search.errors import MissingExtra, backend_errors
from pixfind.search.store import Store
from pixfind.search.types import EncoderSpec

from .arrow_plan import ArrowPlan, indexed_states, key_path, plan_tables, states_table
from .decode import Skipped
from .pipeline import (
    ClusterOptions,
    IndexOptions,
    Progress,
    finish,
    indexing,
    real_roots,
    scan_roots,
)
from .ray_worker import EmbedActor, WorkerJob, blocks, ipc_table, lance_uri
from .report import IndexReport
from .write import Writer, WriteResult

INSTALL = "the Ray engine needs the ray extra: pip install 'pixfind[ray]'"
BATCH = 64  # files per actor call on CPU (a model batch); 256 on GPU


def require_ray() -> None:
    """Raise MissingExtra, in one line, unless Ray Data and pylance can be imported."""
    try:
        import lance  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(f"{INSTALL} ({exc.name} is not installed)") from None


def run_ray_index(
    home: Path,
    options: IndexOptions,
    cluster: ClusterOptions,
    spec: EncoderSpec | None = None,
    device: str = "auto",
    on_plan: Callable[[ArrowPlan], None] | None = None,
    on_progress: Progress | None = None,
) -> IndexReport:
    require_ray()
    # the driver's model is only for the model check and the vector index's text recipe
    with indexing(home, options, spec, "cpu") as (store, encoder, report):
        remove_uncommitted(store)  # left by a driver killed mid-window
        stages = report.stages
        roots, given = real_roots(options.roots, report)
        found, unseen = scan_roots(roots, options, report)
        planning = time.perf_counter()
        found_table = states_table(found)
        plan = plan_tables(
            found_table, indexed_states(store), roots + given, unseen, options.prune_missing
        )
        stages.scan = found.seconds
        stages.plan = time.perf_counter() - planning - found.seconds
        report.unchanged, report.kept = plan.unchanged, len(plan.kept)
        keywords.add_column(store, roots)
        if on_plan:
            on_plan(plan)
        todo = plan.todo
        if len(todo):
            job = WorkerJob(
                home=str(home),
                spec=encoder.spec,
                device=_worker_device(device, cluster),
                read_version=store.version,
                roots=tuple(roots),
                removed=tuple(plan.removed),
                captions=options.captions,
                max_megapixels=options.max_megapixels,
            )
            with _ray_session(cluster.address):
                _run_pool(store, todo, job, options, cluster, report, on_progress)
        if not report.interrupted:
            finish(store, Writer(store), plan.removed, report, encoder)
            remove_uncommitted(store)  # fragments of retried tasks, never committed
        report.total = store.count()
        return report


def _worker_device(device: str, cluster: ClusterOptions) -> str:
    if device != "auto":
        return device
    return "cuda" if cluster.gpus_per_actor > 0 else "cpu"


@contextlib.contextmanager
def _ray_session(address: str | None) -> Iterator[None]:
    """Connected to the cluster at ``address``, or to a Ray started here for this run."""
    import ray

    # workers import pixfind as the driver does (a checkout on PYTHONPATH, or installed)
    env = {k: os.environ[k] for k in ("PYTHONPATH", "HF_HOME", "HF_HUB_OFFLINE") if k in os.environ}
    with warnings.catch_warnings():
        # a local Ray's own processes are started by fork+exec: LanceDB's state is not used there
        warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="lance is not fork-safe", category=UserWarning)
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            runtime_env={"env_vars": env} if env else None,
        )
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # per-run notes, not errors
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        yield
    finally:
        ray.shutdown()


def _run_pool(
    store: Store,
    todo: pa.Table,
    job: WorkerJob,
    options: IndexOptions,
    cluster: ClusterOptions,
    report: IndexReport,
    on_progress: Progress | None,
) -> None:
    """Stream the TODO blocks through the actor pool, committing every ``commit_every`` rows."""
    import ray.data
    from ray.data import ActorPoolStrategy

    batch = options.batch_size or (256 if job.device.startswith("cuda") else BATCH)
    low, high = cluster.actors
    sizes = {"size": low} if low == high else {"min_size": low, "max_size": high}
    pool = ActorPoolStrategy(**sizes)
    results = ray.data.from_arrow(list(blocks(todo, batch))).map_batches(
        EmbedActor,
        fn_constructor_kwargs={"job": job},
        batch_size=None,  # one block = one call
        batch_format="pyarrow",
        compute=pool,
        num_cpus=1,
        num_gpus=cluster.gpus_per_actor or None,
    )
    window = _Window(store, report)
    done = 0
    try:
        for out in results.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in out.to_pylist():
                window.add(row)
                done += row["files"]
            if window.rows >= cluster.commit_every:
                window.commit()
            if on_progress:
                on_progress(done, len(todo))
        window.commit()
    except KeyboardInterrupt:
        report.interrupted = True  # committed windows are safe; the next run resumes


class _Window:
    """Results not committed yet: what a killed driver loses, and all it loses."""

    def __init__(self, store: Store, report: IndexReport):
        self.store, self.report = store, report
        self._empty()

    def _empty(self) -> None:
        self.fragments: list[str] = []
        self.updates: list[pa.Table] = []
        self.stale: list[str] = []
        self.results: list[WriteResult] = []
        self.rows = 0

    def add(self, row: dict) -> None:
        stages = self.report.stages
        stages.decode += row["decode_s"]
        stages.embed += row["embed_s"]
        stages.write += row["write_s"]
        self.fragments += row["fragments"]
        updates = ipc_table(row["updates"]) if row["updates"] else None
        if updates is not None:
            self.updates.append(updates)
        self.stale += [key_path(k) for k in row["stale"]]
        skipped = tuple(
            Skipped(key_path(k), r) for k, r in zip(row["skipped"], row["reasons"], strict=True)
        )
        self.results.append(
            WriteResult(
                added=row["added"],
                updated=row["updated"],
                removed=len(row["stale"]),
                moved=row["moved"],
                reused=row["reused"],
                captioned=row["captioned"],
                skipped=skipped,
            )
        )
        self.rows += row["appended"] + (len(updates) if updates is not None else 0)

    def commit(self) -> None:
        """Append the new rows' fragments, then updates and deletes: each one commit."""
        import lance
        from lance.fragment import FragmentMetadata

        started = time.perf_counter()
        home = self.store.home
        with backend_errors(home, "committing new rows"):
            if self.fragments:
                fragments = [FragmentMetadata.from_json(f) for f in self.fragments]
                lance.LanceDataset.commit(
                    lance_uri(home), lance.LanceOperation.Append(fragments),
                    read_version=_latest_version(home),
                )  # fmt: skip
                self.store.table.checkout_latest()
            if self.updates:
                self.store.upsert_rows(pa.concat_tables(self.updates))
        if self.stale:
            self.store.delete_paths(self.stale)
        for result in self.results:  # counted once committed, like a local run's batches
            self.report.add(result)
        self.report.stages.write += time.perf_counter() - started
        self._empty()


def _latest_version(home: Path) -> int:
    import lance

    return lance.dataset(lance_uri(home)).version


def remove_uncommitted(store: Store) -> int:
    """Delete data files no table version references (fragments written, never committed).
    Safe under the index lock: this run is the only writer. Returns the bytes removed."""
    import lance

    with backend_errors(store.home, "removing uncommitted files"):
        dataset = lance.dataset(lance_uri(store.home))
        # keep an hour of old versions, as compaction does: a running `serve` may read one
        stats = dataset.cleanup_old_versions(timedelta(hours=1), delete_unverified=True)
    return int(stats.bytes_removed)
