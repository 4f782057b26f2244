"""Exports stream: resident memory while exporting 1M synthetic regions vs 100k of them.

Builds a synthetic store once (``--regions`` regions, ``--per-image`` per image, random unit
float32 embeddings of ``--dim``, random box masks as COCO RLE) directly through the store API
(``MetadataStore.write_batch``, no models, no images), in ``--work`` (reused by later runs when it
already holds that many regions). Then, for each format, exports first the baseline (images under
the ``/syn/a/`` prefix: 10% of the regions) and then everything, each in a fresh subprocess whose
resident memory is sampled every 0.1 s. Prints peak RSS, regions/s and the ratio of the two peaks
(constant memory: ~1.0, against the 10x larger export) and saves the figures with
``_results.save_results`` as ``benchmarks/results/export_memory.json``.

    python benchmarks/export_memory.py                          # 1M regions, dim 512, all formats
    python benchmarks/export_memory.py --regions 100000 --formats coco   # a quicker check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import rss_tree  # noqa: E402
from _results import save_results  # noqa: E402


def build(db: Path, n_regions: int, per_image: int, dim: int, seed: int = 0) -> None:
    """The synthetic store: images ``/syn/{a|b..j}/img_N.png`` (256x256), ``per_image`` regions each."""
    import numpy as np

    from regionsearch.masks import encode_rle, mask_to_bbox
    from regionsearch.store.metadata import MetadataStore
    from regionsearch.types import ImageResult, Region

    store = MetadataStore(f"sqlite:///{db}")
    have = store.counts()["regions"]
    if have == n_regions:
        store.close()
        return
    if have:
        raise SystemExit(f"{db} holds {have} regions, not {n_regions}: delete it or pass another --work")
    rng = np.random.default_rng(seed)
    n_images = n_regions // per_image
    masks = []
    for _ in range(64):  # a pool of masks, reused (RLE encoding is not what is measured)
        m = np.zeros((256, 256), bool)
        x, y = rng.integers(0, 200, 2)
        m[y:y + rng.integers(8, 56), x:x + rng.integers(8, 56)] = True
        masks.append(Region(bbox=mask_to_bbox(m), area=int(m.sum()), rle=encode_rle(m), predicted_iou=0.9,
                            stability_score=0.95))
    batch = []
    for i in range(n_images):
        part = "a" if i < n_images // 10 else "bcdefghij"[i % 9]
        vec = rng.standard_normal((per_image, dim)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        regions = [masks[(i + j) % len(masks)] for j in range(per_image)]
        batch.append(ImageResult(f"/syn/{part}/img_{i:07d}.png", f"{i:064x}", 256, 256, "synthetic", regions, vec))
        if len(batch) == 500 or i == n_images - 1:
            store.write_batch(batch, dim=dim)
            batch = []
    store.close()


def export_child(db: Path, out: Path, fmt: str, prefix: str | None, dim: int) -> None:
    """Runs in the measured subprocess: one export through :func:`regionsearch.export.export_regions`."""
    from types import SimpleNamespace

    from regionsearch.export import export_regions
    from regionsearch.store.metadata import MetadataStore

    store = MetadataStore(f"sqlite:///{db}", readonly=True)
    source = SimpleNamespace(store=store, manifest=SimpleNamespace(dim=dim), iter_images=store.iter_images)
    t = time.perf_counter()
    report = export_regions(source, out, fmt, path_prefix=prefix)
    print(json.dumps({"regions": report.regions, "seconds": time.perf_counter() - t}))


def measure(db: Path, out: Path, fmt: str, prefix: str | None, dim: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(db), str(out), fmt, prefix or "", str(dim)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_tree(proc.pid))
            time.sleep(0.1)

    th = threading.Thread(target=sample)
    th.start()
    stdout, _ = proc.communicate()
    done.set()
    th.join()
    if proc.returncode:
        raise SystemExit(f"export {fmt} failed (exit {proc.returncode})")
    data = json.loads(stdout.strip().splitlines()[-1])
    size = out.stat().st_size
    out.unlink()
    return {"regions": data["regions"], "seconds": round(data["seconds"], 1),
            "regions_per_s": round(data["regions"] / data["seconds"]), "peak_rss_mib": round(peak / 2**20, 1),
            "file_mib": round(size / 2**20, 1)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        db, out, fmt, prefix, dim = sys.argv[2:7]
        export_child(Path(db), Path(out), fmt, prefix or None, int(dim))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regions", type=int, default=1_000_000)
    ap.add_argument("--per-image", type=int, default=20)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--formats", default="coco,parquet,csv")
    ap.add_argument("--work", type=Path, default=Path("/tmp/regionsearch-export-bench"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    db = args.work / f"store-{args.regions}-{args.dim}.db"
    t = time.perf_counter()
    build(db, args.regions, args.per_image, args.dim)
    print(f"store: {args.regions} regions, dim {args.dim}, ready in {time.perf_counter() - t:.0f} s")
    figures: dict = {"regions": args.regions, "dim": args.dim}
    for fmt in args.formats.split(","):
        base = measure(db, args.work / f"out.{fmt}", fmt, "/syn/a/", args.dim)
        full = measure(db, args.work / f"out.{fmt}", fmt, None, args.dim)
        ratio = full["peak_rss_mib"] / base["peak_rss_mib"]
        figures[fmt] = {"baseline_10pct": base, "full": full, "peak_rss_ratio_full_vs_baseline": round(ratio, 2)}
        print(f"{fmt}: {base['regions']} regions peak RSS {base['peak_rss_mib']} MiB ({base['regions_per_s']}/s); "
              f"{full['regions']} regions peak RSS {full['peak_rss_mib']} MiB ({full['regions_per_s']}/s); "
              f"ratio {ratio:.2f}x for {full['regions'] / max(1, base['regions']):.0f}x the regions")
    print("saved", save_results("export_memory", figures))


if __name__ == "__main__":
    main()
