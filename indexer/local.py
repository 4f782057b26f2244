"""The local indexing runner: reader -> segment -> embed -> writer, one process.

Per file: read bytes + sha256 -> already indexed with this pipeline? skip (a moved file only
gets its path updated) -> decode -> SAM 2.1 -> crops -> CLIP -> batched transaction.
Every bad file is recorded with its reason and never stops the job.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from regionsearch.config import Config
from regionsearch.errors import InvalidImageError
from regionsearch.imageio import decode_image, discover, path_to_db, read_file_bytes, sha256_bytes
from regionsearch.pipeline import Pipeline, StageTimes
from regionsearch.types import ImageResult, VideoResult

from .videos import is_video, process_video, read_video, record_video_pipeline

log = logging.getLogger(__name__)


@dataclass
class IndexReport:
    """What one indexing run did. ``times`` are seconds per stage."""

    files: int = 0
    indexed: int = 0
    unchanged: int = 0
    moved: int = 0
    failed: int = 0
    regions: int = 0
    #: videos indexed in this run and their tracks (``indexed`` and ``regions`` include them)
    videos: int = 0
    tracks: int = 0
    seconds: float = 0.0
    times: StageTimes = field(default_factory=StageTimes)
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: the run was stopped (Ctrl-C) after committing and saving what it had done
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "indexed": self.indexed, "unchanged": self.unchanged,
            "moved": self.moved, "failed": self.failed, "regions": self.regions,
            "videos": self.videos, "tracks": self.tracks,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.indexed / self.seconds, 3) if self.seconds else 0.0,
            "regions_per_s": round(self.regions / self.seconds, 3) if self.seconds else 0.0,
            "stage_seconds": {k: round(v, 3) for k, v in self.times.as_dict().items()},
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
        }


def _progress(total: int | None, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                desc="indexing")


def run_local(paths: Sequence[str], config: Config, datadir: Any, pipeline: Pipeline | None = None,
              progress: bool = True, on_batch: Callable[[IndexReport], None] | None = None,
              workers: int | None = None) -> IndexReport:
    """Index ``paths`` (files and folders) into ``datadir`` with ``config``'s pipeline.

    ``workers`` reader threads (default ``config.ingest.workers``) read, hash, look up and decode
    the next files while the models work on the current one (a bounded prefetch, so memory does
    not grow with the corpus); ``0`` does everything inline.
    """
    from regionsearch.models.device import configure_allocator

    configure_allocator()  # long job: reuse freed decoder buffers instead of page-faulting them in again
    pipeline = pipeline or Pipeline(config)
    key = config.pipeline_key()
    report = IndexReport()
    start = time.perf_counter()
    files = list(dict.fromkeys(discover(paths, tuple(config.ingest.extensions) + tuple(config.video.extensions))))  # overlapping arguments count once
    batch: list[Any] = []
    failures: list[tuple[str, str | None, str]] = []
    bar = _progress(len(files), progress)
    n_workers = config.ingest.workers if workers is None else max(0, int(workers))
    lookup_lock = threading.Lock()

    def flush() -> None:
        if not batch and not failures:
            return
        t0 = time.perf_counter()
        with lookup_lock:
            datadir.commit(list(batch), list(failures))
        report.times.write += time.perf_counter() - t0
        batch.clear()
        failures.clear()
        if on_batch is not None:
            on_batch(report)

    def read(path: str) -> tuple[str, str, Any, float]:
        t0 = time.perf_counter()
        status, item = _read_stage(path, config, key, datadir, lookup_lock)
        return path, status, item, time.perf_counter() - t0

    try:
        for path, status, item, read_s in _prefetch(read, files, n_workers):
            report.files += 1
            report.times.decode += read_s
            if status == "decoded":
                status, item = _model_stage(path, item, key, pipeline, report.times)
            elif status == "video":
                if not report.videos:
                    record_video_pipeline(datadir, config, pipeline.settings())
                status, item = process_video(path, item, pipeline, report.times)
            if status == "failed":
                reason = item[1]
                failures.append((path_to_db(path), item[0], reason))
                report.failed += 1
                report.failures.append((path, reason))
                log.warning("skipped %s: %s", path, reason)
            elif status == "done":
                report.unchanged += 1
            elif status == "moved":
                report.moved += 1
            else:
                batch.append(item)
                report.indexed += 1
                report.regions += len(item.regions)
                if isinstance(item, VideoResult):
                    report.videos += 1
                    report.tracks += len(item.regions)
            if len(batch) + len(failures) >= config.ingest.batch_images or isinstance(item, VideoResult):
                flush()
            bar.update(1)
            elapsed = time.perf_counter() - start
            bar.set_postfix(regions=report.regions, regions_s=f"{report.regions / max(elapsed, 1e-9):.1f}",
                            videos=report.videos, failed=report.failed, refresh=False)
        flush()
        datadir.save()
    except KeyboardInterrupt as exc:
        # what was read so far is committed and saved, so the same command resumes from here
        flush()
        datadir.save()
        report.interrupted = True
        exc.report = report  # type: ignore[attr-defined]
        raise
    finally:
        bar.close()
        report.seconds = time.perf_counter() - start
    return report


def _prefetch(fn: Callable[[str], Any], items: Sequence[str], workers: int) -> Iterator[Any]:
    """``map(fn, items)`` in order, running up to ``2 * workers`` calls ahead on threads."""
    if workers <= 0:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rs-read") as pool:
        pending: deque[Any] = deque()
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                break
        while pending:
            fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))
            yield fut.result()


def _read_stage(path: str, config: Config, key: str, datadir: Any, lock: threading.Lock) -> tuple[str, Any]:
    """Read + hash + look up + decode one file: ``("decoded", (sha, image, bytes, mtime))``, ``("done"|"moved",
    None)`` or ``("failed", (sha or None, reason))``."""
    if is_video(path, config):
        return read_video(path, config, datadir, lock)
    sha: str | None = None
    try:
        data = read_file_bytes(path, config.ingest.max_bytes)
        sha = sha256_bytes(data)
        with lock:
            state = datadir.lookup(path_to_db(path), sha, key)
        if state in ("done", "moved"):
            return state, None
        try:
            mtime: float | None = os.stat(path).st_mtime
        except OSError:
            mtime = None
        return "decoded", (sha, decode_image(data, config.ingest.max_pixels), len(data), mtime)
    except InvalidImageError as exc:
        return "failed", (sha, str(exc))


def _model_stage(path: str, item: tuple[Any, ...], key: str, pipeline: Pipeline,
                 times: StageTimes) -> tuple[str, Any]:
    """Segment and embed one decoded image: ``("new", ImageResult)`` or ``("failed", ...)``."""
    sha, image, size, mtime = item
    try:
        regions, vectors = pipeline.process(image, times)
    except (RuntimeError, ValueError, MemoryError) as exc:
        log.exception("model failure on %s", path)
        return "failed", (sha, f"processing failed: {exc.__class__.__name__}: {exc}")
    h, w = image.shape[:2]
    return "new", ImageResult(path=path_to_db(path), sha256=sha, width=w, height=h, pipeline_key=key,
                              regions=regions, embeddings=vectors, file_size=size, file_mtime=mtime)
