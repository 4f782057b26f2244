"""The Ray Data indexing runner: the local runner's pipeline spread over a Ray cluster.

Stages (``regionsearch index PATH... --runner ray [--ray-address auto]``)::

    list files (driver) -> read + sha256 (CPU tasks) -> lookup in the data dir (driver: skip
    done/moved files, take finished work from shards of an interrupted run)
      -> read + decode (CPU tasks) -> SAM 2.1 actor pool (``sam_gpus`` per actor, fractional
      allowed, 0 on CPU) -> CLIP actor pool (``clip_gpus``) -> rows streamed to the driver
      -> one Parquet shard per ``shard_images`` images in ``<data dir>/shards/`` (atomic)
      -> merge: ``DataDir.commit`` in batches (SQL, float16 embeddings, vectors) -> shard deleted

Bad inputs are handled exactly as by :mod:`indexer.local` (the same :mod:`regionsearch.imageio`
calls, the same reasons, recorded through ``DataDir.commit(..., failures)``), and the regions are
the same: each actor runs the same :class:`~regionsearch.pipeline.Pipeline` pieces.

Resumable by shard: a shard is written only when all its images went through the models, and
merged right after; a shard left by a killed run is reused by the next run (no model work for its
images), and files already indexed are skipped by :meth:`DataDir.lookup`.

Ray is imported only here (``pip install 'regionsearch[ray]'``). With no ``address`` a local Ray
instance is started (``num_cpus`` of :class:`RayOptions`) and shut down at the end; ``"auto"`` or
``ray://...`` joins a running cluster (whose workers must see the image paths, e.g. a shared
file system, and have regionsearch installed).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from regionsearch.config import Config
from regionsearch.errors import InvalidImageError, MissingDependencyError
from regionsearch.imageio import decode_image, discover, path_from_db, path_to_db, read_file_bytes, sha256_bytes
from regionsearch.pipeline import StageTimes

from .local import IndexReport
from .shards import (batches, image_row, load_pending, regions_from_json, regions_to_json, row_to_result,
                     shard_dir, write_shard)
from .videos import is_video

log = logging.getLogger(__name__)


@dataclass
class RayOptions:
    """Resources and sizes of the Ray job.

    ``sam_gpus``/``clip_gpus``: GPUs per actor (fractions share a GPU; ``None``: 1 when the cluster
    has GPUs and the config's device is not ``cpu``, else 0). ``*_cpus``: CPUs reserved per task or
    actor. ``shard_images``: images per Parquet shard. ``merge=False`` only writes shards (a later
    run merges them without model work).
    """

    num_cpus: int | None = None           # for a local Ray instance started here
    sam_actors: int = 1
    clip_actors: int = 1
    sam_gpus: float | None = None
    clip_gpus: float | None = None
    sam_cpus: float = 1.0
    clip_cpus: float = 0.5
    io_cpus: float = 0.25
    batch_images: int = 4
    shard_images: int = 32
    merge: bool = True


@dataclass
class RayIndexReport(IndexReport):
    """:class:`IndexReport` plus the shard bookkeeping of the Ray runner."""

    shards_written: int = 0
    reused_from_shards: int = 0

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | {"runner": "ray", "shards_written": self.shards_written,
                                    "reused_from_shards": self.reused_from_shards}


# ---------------------------------------------------------------------- stage functions (workers)
def _hash_batch(batch: dict[str, np.ndarray], max_bytes: int) -> dict[str, np.ndarray]:
    """read + sha256 (no decode): errors are the local runner's read errors (sha256 unknown)."""
    shas, errors, secs = [], [], []
    for p in batch["path"]:
        t0 = time.perf_counter()
        try:
            shas.append(sha256_bytes(read_file_bytes(path_from_db(str(p)), max_bytes)))
            errors.append("")
        except InvalidImageError as exc:
            shas.append("")
            errors.append(str(exc))
        secs.append(time.perf_counter() - t0)
    return {"path": batch["path"], "sha256": np.array(shas, dtype=object), "error": np.array(errors, dtype=object),
            "t_read": np.array(secs, np.float64)}


def _decode_batch(batch: dict[str, np.ndarray], max_bytes: int, max_pixels: int) -> dict[str, np.ndarray]:
    """read + decode to HWC uint8 RGB bytes (``h``, ``w``); a decode error keeps the sha256."""
    n = len(batch["path"])
    images, hs, ws, shas, errors, secs = [], np.zeros(n, np.int64), np.zeros(n, np.int64), [], [], []
    for i, p in enumerate(batch["path"]):
        t0 = time.perf_counter()
        sha = str(batch["sha256"][i])
        try:
            data = read_file_bytes(path_from_db(str(p)), max_bytes)
            sha = sha256_bytes(data)
            arr = decode_image(data, max_pixels)
            hs[i], ws[i] = arr.shape[:2]
            images.append(np.ascontiguousarray(arr).tobytes())
            errors.append("")
        except InvalidImageError as exc:
            images.append(b"")
            errors.append(str(exc))
        shas.append(sha)
        secs.append(time.perf_counter() - t0)
    return {"path": batch["path"], "shard": batch["shard"], "sha256": np.array(shas, dtype=object),
            "image": np.array(images, dtype=object), "h": hs, "w": ws, "error": np.array(errors, dtype=object),
            "t_decode": np.array(secs, np.float64)}


def _image(batch: dict[str, np.ndarray], i: int) -> np.ndarray:
    return np.frombuffer(batch["image"][i], np.uint8).reshape(int(batch["h"][i]), int(batch["w"][i]), 3).copy()


def _model_failure(path: str, exc: BaseException) -> str:
    logging.getLogger("indexer.local").error("model failure on %s: %s", path, exc)
    return f"processing failed: {exc.__class__.__name__}: {exc}"


def _actor_config(config: Config, gpus: float) -> Config:
    # an actor with no GPU share must not pick a GPU it did not reserve; the device is not part of
    # the pipeline key, so the regions are the same
    return dataclasses.replace(config, device="cuda" if gpus > 0 else "cpu")


class SamStage:
    """Ray actor: SAM 2.1 automatic mask generation, regions out as JSON (see :mod:`.shards`)."""

    def __init__(self, config: Config, gpus: float):
        from regionsearch.models.device import configure_allocator
        from regionsearch.pipeline import Pipeline

        configure_allocator()  # this worker process decodes masks for the whole job
        self.pipeline = Pipeline(_actor_config(config, gpus))
        self.pipeline.segmenter  # load once, before the first batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["path"])
        regions, errors, secs = [], list(batch["error"]), np.zeros(n, np.float64)
        for i in range(n):
            if errors[i]:
                regions.append("")
                continue
            t0 = time.perf_counter()
            try:
                regions.append(regions_to_json(self.pipeline.segment(_image(batch, i))))
            except (RuntimeError, ValueError, MemoryError) as exc:
                regions.append("")
                errors[i] = _model_failure(str(batch["path"][i]), exc)
            secs[i] = time.perf_counter() - t0
        return dict(batch) | {"regions": np.array(regions, dtype=object), "error": np.array(errors, dtype=object),
                              "t_segment": secs}


class ClipStage:
    """Ray actor: region crops + batched CLIP image encoding; the decoded image is dropped here."""

    def __init__(self, config: Config, gpus: float):
        from regionsearch.pipeline import Pipeline

        self.pipeline = Pipeline(_actor_config(config, gpus))
        self.pipeline.embedder

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["path"])
        vecs, errors, secs = [], list(batch["error"]), np.zeros(n, np.float64)
        for i in range(n):
            if errors[i]:
                vecs.append(b"")
                continue
            t0 = time.perf_counter()
            try:
                image = _image(batch, i)
                regs = regions_from_json(str(batch["regions"][i]))
                v = self.pipeline.embedder.embed_images(self.pipeline.crops(image, regs))
                vecs.append(np.ascontiguousarray(v, np.float32).tobytes())
            except (RuntimeError, ValueError, MemoryError) as exc:
                vecs.append(b"")
                errors[i] = _model_failure(str(batch["path"][i]), exc)
            secs[i] = time.perf_counter() - t0
        out = {k: v for k, v in batch.items() if k != "image"}
        return out | {"embeddings": np.array(vecs, dtype=object), "error": np.array(errors, dtype=object),
                      "t_embed": secs}


# ---------------------------------------------------------------------- driver
def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("ray[data]", "the Ray indexing runner (--runner ray)", "ray") from exc
    return ray


def _init_ray(address: str | None, opts: RayOptions) -> bool:
    """Connect to / start Ray unless this process already did; True when started here."""
    ray = _ray()
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    if address:
        kw["address"] = address
    else:
        if opts.num_cpus is not None:
            kw["num_cpus"] = opts.num_cpus
        # a busy machine can take longer than Ray's default 30 s to start the local GCS
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
    ray.init(**kw)
    return True


def _gpus(value: float | None, config: Config) -> float:
    if value is not None:
        if value < 0:
            raise ValueError(f"GPUs per actor must be >= 0, got {value}")
        return float(value)
    ray = _ray()
    return 1.0 if config.device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0 else 0.0


class _Merger:
    """Commits shard rows and failures to the data dir in batches (the merge step)."""

    def __init__(self, datadir: Any, batch_images: int, report: IndexReport,
                 on_batch: Callable[[IndexReport], None] | None):
        self.datadir = datadir
        self.n = max(1, batch_images)
        self.report = report
        self.on_batch = on_batch
        self.dim = int(datadir.manifest.dim)

    def commit_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        for part in batches(rows, self.n):
            results, failures = [], []
            for r in part:
                if r["status"] == "failed":
                    failures.append((r["path"], r["sha256"] or None, r["error"]))
                    self.report.failed += 1
                    self.report.failures.append((path_from_db(r["path"]), r["error"]))
                    log.warning("skipped %s: %s", r["path"], r["error"])
                else:
                    res = row_to_result(r, self.dim)
                    results.append(res)
                    self.report.indexed += 1
                    self.report.regions += len(res.regions)
            t0 = time.perf_counter()
            self.datadir.commit(results, failures)
            self.report.times.write += time.perf_counter() - t0
            if self.on_batch is not None:
                self.on_batch(self.report)


def run_ray(paths: Sequence[str], config: Config, datadir: Any, pipeline: Any = None, progress: bool = True,
            on_batch: Callable[[IndexReport], None] | None = None, *, address: str | None = None,
            options: RayOptions | None = None) -> RayIndexReport:
    """Index ``paths`` (files and folders) into ``datadir`` on Ray; see the module doc. ``pipeline``
    is accepted for symmetry with :func:`indexer.local.run_local` (actors build their own)."""
    opts = options or RayOptions()
    key = config.pipeline_key()
    report = RayIndexReport()
    start = time.perf_counter()
    found = list(dict.fromkeys(discover(paths, tuple(config.ingest.extensions) + tuple(config.video.extensions))))
    videos = [p for p in found if is_video(p, config)]
    files = [path_to_db(p) for p in found if p not in set(videos)]
    if videos:
        _index_videos(videos, config, datadir, pipeline, progress, report)
    merger = _Merger(datadir, config.ingest.batch_images, report, on_batch)
    started = _init_ray(address, opts) if files else False
    ray = _ray()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = bool(progress)
        hashed = _hash_all(files, config, opts)
        pending, stale = load_pending(datadir.path, key, int(datadir.manifest.dim))
        todo: list[dict[str, Any]] = []
        ready: list[dict[str, Any]] = []
        for db in files:
            report.files += 1
            sha, error, t_read = hashed[db]
            report.times.decode += t_read
            if error:
                ready.append(image_row(db, None, key, error=error))
                continue
            state = datadir.lookup(db, sha, key)
            if state == "done":
                report.unchanged += 1
            elif state == "moved":
                report.moved += 1
            elif (db, sha) in pending:
                ready.append(pending[(db, sha)])
                report.reused_from_shards += 1
            else:
                todo.append({"path": db, "sha256": sha})
        merger.commit_rows(ready)
        for p in stale:
            p.unlink(missing_ok=True)
        if todo:
            _run_models(todo, config, datadir, opts, report, merger, key)
        datadir.save()
    finally:
        report.seconds = time.perf_counter() - start
        if started:
            ray.shutdown()
    return report


def _index_videos(videos: list[str], config: Config, datadir: Any, pipeline: Any, progress: bool,
                  report: RayIndexReport) -> None:
    """Videos are indexed by the local runner in this (driver) process, before the images go to
    the actor pools: a video's tracks come from one sequential pass over its frames (each frame's
    masks seed the next), so it is one unit of work that Ray Data's per-row stages would not split;
    same transaction, idempotence and failure records as the local runner."""
    from .local import run_local

    local = run_local(videos, config, datadir, pipeline, progress=progress)
    for name in ("files", "indexed", "unchanged", "moved", "failed", "regions", "videos", "tracks"):
        setattr(report, name, getattr(report, name) + getattr(local, name))
    report.failures += local.failures
    report.times.add(local.times)


def _hash_all(files: list[str], config: Config, opts: RayOptions) -> dict[str, tuple[str, str, float]]:
    if not files:
        return {}
    ray = _ray()
    ds = ray.data.from_items([{"path": p} for p in files])
    ds = ds.map_batches(_hash_batch, fn_kwargs={"max_bytes": config.ingest.max_bytes}, batch_size=64,
                        num_cpus=opts.io_cpus, batch_format="numpy")
    out = {}
    for row in ds.iter_rows():
        out[str(row["path"])] = (str(row["sha256"]), str(row["error"]), float(row["t_read"]))
    return out


def _run_models(todo: list[dict[str, Any]], config: Config, datadir: Any, opts: RayOptions,
                report: RayIndexReport, merger: _Merger, key: str) -> None:
    ray = _ray()
    from ray.data import ActorPoolStrategy

    size = max(1, opts.shard_images)
    expected: dict[int, int] = {}
    for i, item in enumerate(todo):
        item["shard"] = i // size
        expected[i // size] = expected.get(i // size, 0) + 1
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    sam_gpus, clip_gpus = _gpus(opts.sam_gpus, config), _gpus(opts.clip_gpus, config)
    bs = max(1, opts.batch_images)
    ds = ray.data.from_items(todo)
    ds = ds.map_batches(_decode_batch, fn_kwargs={"max_bytes": config.ingest.max_bytes,
                                                  "max_pixels": config.ingest.max_pixels},
                        batch_size=bs, num_cpus=opts.io_cpus, batch_format="numpy")
    ds = ds.map_batches(SamStage, fn_constructor_kwargs={"config": config, "gpus": sam_gpus}, batch_size=bs,
                        compute=ActorPoolStrategy(size=max(1, opts.sam_actors)), num_cpus=opts.sam_cpus,
                        num_gpus=sam_gpus, batch_format="numpy")
    ds = ds.map_batches(ClipStage, fn_constructor_kwargs={"config": config, "gpus": clip_gpus}, batch_size=bs,
                        compute=ActorPoolStrategy(size=max(1, opts.clip_actors)), num_cpus=opts.clip_cpus,
                        num_gpus=clip_gpus, batch_format="numpy")
    dim = int(datadir.manifest.dim)
    acc: dict[int, list[dict[str, Any]]] = {}
    for row in ds.iter_rows():
        shard = int(row["shard"])
        path, sha, error = str(row["path"]), str(row["sha256"]) or None, str(row["error"])
        h, w = int(row["h"]), int(row["w"])
        report.times.decode += float(row["t_decode"])
        report.times.segment += float(row["t_segment"])
        report.times.embed += float(row["t_embed"])
        if error:
            item = image_row(path, sha, key, error=error)
        else:
            regs = regions_from_json(str(row["regions"]))
            emb = np.frombuffer(row["embeddings"], np.float32).reshape(len(regs), -1) if regs else \
                np.zeros((0, dim), np.float32)
            item = image_row(path, sha, key, width=w, height=h, regions=regs, embeddings=emb)
        acc.setdefault(shard, []).append(item)
        if len(acc[shard]) == expected[shard]:
            rows = acc.pop(shard)
            target = write_shard(shard_dir(datadir.path) / f"shard-{run_id}-{shard:05d}.parquet", rows, key, dim)
            report.shards_written += 1
            log.info("shard %s written (%d images)", target.name, len(rows))
            if opts.merge:
                merger.commit_rows(rows)
                target.unlink(missing_ok=True)
