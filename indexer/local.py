"""The local indexing runner: reader -> segment -> embed -> writer, one process.

Per file: read bytes + sha256 -> already indexed with this pipeline? skip (a moved file only
gets its path updated) -> decode -> SAM 2.1 -> crops -> CLIP -> batched transaction.
Every bad file is recorded with its reason and never stops the job.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from regionsearch.config import Config
from regionsearch.errors import InvalidImageError
from regionsearch.imageio import decode_image, discover, path_to_db, read_file_bytes, sha256_bytes
from regionsearch.pipeline import Pipeline, StageTimes

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
    seconds: float = 0.0
    times: StageTimes = field(default_factory=StageTimes)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "indexed": self.indexed, "unchanged": self.unchanged,
            "moved": self.moved, "failed": self.failed, "regions": self.regions,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.indexed / self.seconds, 3) if self.seconds else 0.0,
            "regions_per_s": round(self.regions / self.seconds, 3) if self.seconds else 0.0,
            "stage_seconds": {k: round(v, 3) for k, v in self.times.as_dict().items()},
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
        }


def _progress(total: int | None, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                desc="indexing")


def run_local(paths: Sequence[str], config: Config, datadir: Any, pipeline: Pipeline | None = None,
              progress: bool = True, on_batch: Callable[[IndexReport], None] | None = None) -> IndexReport:
    """Index ``paths`` (files and folders) into ``datadir`` with ``config``'s pipeline."""
    pipeline = pipeline or Pipeline(config)
    key = config.pipeline_key()
    report = IndexReport()
    start = time.perf_counter()
    files = list(discover(paths, config.ingest.extensions))
    batch: list[Any] = []
    failures: list[tuple[str, str | None, str]] = []
    bar = _progress(len(files), progress)

    def flush() -> None:
        if not batch and not failures:
            return
        t0 = time.perf_counter()
        datadir.commit(list(batch), list(failures))
        report.times.write += time.perf_counter() - t0
        batch.clear()
        failures.clear()
        if on_batch is not None:
            on_batch(report)

    try:
        for path in files:
            report.files += 1
            status, item = _process_file(path, config, key, datadir, pipeline, report.times)
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
            if len(batch) + len(failures) >= config.ingest.batch_images:
                flush()
            bar.update(1)
            elapsed = time.perf_counter() - start
            bar.set_postfix(regions=report.regions, regions_s=f"{report.regions / max(elapsed, 1e-9):.1f}",
                            failed=report.failed, refresh=False)
        flush()
        datadir.save()
    finally:
        bar.close()
        report.seconds = time.perf_counter() - start
    return report


def _process_file(path: str, config: Config, key: str, datadir: Any, pipeline: Pipeline,
                  times: StageTimes) -> tuple[str, Any]:
    from regionsearch.datadir import ImageResult

    t0 = time.perf_counter()
    sha: str | None = None
    try:
        data = read_file_bytes(path, config.ingest.max_bytes)
        sha = sha256_bytes(data)
        state = datadir.lookup(path_to_db(path), sha, key)
        if state in ("done", "moved"):
            times.decode += time.perf_counter() - t0
            return state, None
        image = decode_image(data, config.ingest.max_pixels)
    except InvalidImageError as exc:
        times.decode += time.perf_counter() - t0
        return "failed", (sha, str(exc))
    times.decode += time.perf_counter() - t0
    try:
        regions, vectors = pipeline.process(image, times)
    except (RuntimeError, ValueError, MemoryError) as exc:
        log.exception("model failure on %s", path)
        return "failed", (sha, f"processing failed: {exc.__class__.__name__}: {exc}")
    h, w = image.shape[:2]
    return "new", ImageResult(path=path_to_db(path), sha256=sha, width=w, height=h, pipeline_key=key,
                              regions=regions, embeddings=vectors)

