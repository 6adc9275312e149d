"""`pixfind index --engine ray`: the driver of a Ray Data run into the same LanceDB table.

The driver (run.run_index's lock and quick look first, then pipeline.open_store: the model
check as a local run) scans, plans with an Arrow join, hands the
TODO rows to an actor pool (ray_worker.EmbedActor: decode + embed + rows, new rows written as
uncommitted Lance fragments) and commits what comes back every ``commit_every`` rows: new
rows appended, rows of changed files through merge_insert by id, undecodable ones deleted.
Then the same finishing as a local run (deletes, missing perceptual hashes, compaction,
keyword and vector indexes, the file states of the next run's quick look). The actors
decode with the local decode_batch (perceptual hashes included) and build rows with
write.rows_of, so the table is the one a local run writes. No --ocr here (a local run).

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
from pixfind.search import keywords, phash
from pixfind.search.encoder import Encoder, load_encoder
from pixfind.search.errors import MissingExtra, PixfindError, backend_errors
from pixfind.search.location import IndexLocation
from pixfind.search.photobucket import chosen_options
from pixfind.search.settings import get_settings
from pixfind.search.store import Store
from pixfind.search.types import EncoderSpec

from .arrow_plan import ArrowPlan, indexed_states, key_path, plan_tables, states_table
from .decode import Skipped
from .pipeline import fill_missing_hashes, finish, open_store
from .ray_worker import EmbedActor, WorkerJob, blocks, ipc_table, lance_options, lance_uri
from .report import IndexReport
from .run import ClusterOptions, IndexOptions, Progress, StopRequest, scan_and_plan
from .write import Writer, WriteResult

INSTALL = "the Ray engine needs the ray extra: pip install 'pixfind[ray]'"
BATCH = 64  # files per actor call on CPU (a model batch); 256 on GPU
PASSED_ON = (
    "PYTHONPATH", "HF_HOME", "HF_HUB_OFFLINE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP",
)  # fmt: skip


def require_ray() -> None:
    """Raise MissingExtra, in one line, unless Ray Data and pylance can be imported."""
    try:
        import lance  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(f"{INSTALL} ({exc.name} is not installed)") from None


def check_ray_options(options: IndexOptions, encoder: Encoder | None = None) -> None:
    """What the Ray engine does not do, in one line, before anything is loaded."""
    if options.ocr:
        raise PixfindError("--ocr runs with the local engine only: drop --engine ray")
    if encoder is not None:
        raise PixfindError("the Ray engine loads its models in its actors: pass no encoder")
    require_ray()


def run_ray_index(
    home: Path,
    options: IndexOptions,
    cluster: ClusterOptions,
    spec: EncoderSpec | None = None,
    device: str = "auto",
    on_plan: Callable[[ArrowPlan], None] | None = None,
    on_progress: Progress | None = None,
    stop: StopRequest | None = None,
    runtime: str | None = None,
) -> IndexReport:
    """run.run_index's work with ``engine="ray"``, under its index lock once its quick look
    found something to do: the pipeline's store opening, scan, finishing and file states,
    the plan as an Arrow join and the rows built by the actors."""
    # the driver's model (on the CPU) is only for a new table and the vector index's recipe
    store, encoder, spec, report = open_store(home, options, spec, "cpu", None, runtime)
    remove_uncommitted(store)  # left by a driver killed mid-window
    stages = report.stages
    planning = time.perf_counter()

    def plan_with(found, scope, unseen, prune) -> ArrowPlan:
        return plan_tables(states_table(found), indexed_states(store), scope, unseen, prune)

    scanned = scan_and_plan(options, {}, report, plan_with)
    plan, roots = scanned.plan, scanned.roots
    stages.plan = time.perf_counter() - planning - stages.scan  # with reading the table
    keywords.add_column(store, roots)  # as a local run: the actors' rows have every column
    phash.add_columns(store)
    if on_plan:
        on_plan(plan)
    todo = plan.todo
    if len(todo):
        runtime = runtime or get_settings().runtime  # the actors load what a local run would
        if encoder is None:
            encoder = load_encoder(spec, "cpu", runtime)
            store.check_model(encoder.info)
        job = WorkerJob(
            location=store.location,
            spec=encoder.spec,
            device=_worker_device(device, cluster),
            read_version=store.version,
            roots=tuple(roots),
            removed=tuple(plan.removed),
            captions=options.captions,
            max_megapixels=options.max_megapixels,
            runtime=runtime,
            photo_options=chosen_options(),
        )
        with _ray_session(cluster.address):
            _run_pool(store, todo, job, options, cluster, report, on_progress, stop)
    stop = stop or StopRequest()
    report.interrupted = report.interrupted or stop.requested
    if not report.interrupted:  # else committed windows are safe; the next run resumes
        report.add(Writer(store).delete(plan.removed))
        skip = {key_path(k) for k in todo["key"].to_pylist()} | set(plan.removed) | set(plan.kept)
        fill_missing_hashes(store, roots + scanned.given, skip, options, report, stop)
    if not report.interrupted:
        remove_uncommitted(store)  # fragments of retried tasks, never committed
        cols = todo.select(["key", "mtime", "size"]).to_pydict()
        states = {key_path(k): (m, n) for k, m, n in zip(*cols.values(), strict=True)}
        failed = {p: (*states[p], why) for p, why in report.skipped if p in states}
        finish(store, report, encoder, failed)
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

    # workers import pixfind as the driver does (a checkout on PYTHONPATH, or installed) and
    # reach an index on object storage with the driver's credentials from its environment
    env = {k: os.environ[k] for k in PASSED_ON if k in os.environ}
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
    stop: StopRequest | None = None,
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
            if stop and stop.requested:  # set by another thread: stop at this window's end
                break
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
        home, location = self.store.home, self.store.location
        with backend_errors(home, "committing new rows"):
            if self.fragments:
                fragments = [FragmentMetadata.from_json(f) for f in self.fragments]
                lance.LanceDataset.commit(
                    lance_uri(location), lance.LanceOperation.Append(fragments),
                    read_version=_latest_version(location),
                    storage_options=lance_options(location),
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


def _latest_version(location: IndexLocation) -> int:
    import lance

    return lance.dataset(lance_uri(location), storage_options=lance_options(location)).version


def remove_uncommitted(store: Store) -> int:
    """Delete data files no table version references (fragments written, never committed).
    Safe under the index lock: this run is the only writer. Returns the bytes removed."""
    import lance

    with backend_errors(store.home, "removing uncommitted files"):
        location = store.location
        dataset = lance.dataset(lance_uri(location), storage_options=lance_options(location))
        # keep an hour of old versions, as compaction does: a running `serve` may read one
        stats = dataset.cleanup_old_versions(timedelta(hours=1), delete_unverified=True)
    return int(stats.bytes_removed)
