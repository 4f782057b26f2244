"""Peak memory of an indexing job does not grow with the corpus: 100 vs 1,000 images.

Writes ``--images`` seeded shapes-world scenes (256 px PNG) to a folder, then runs the product's
own command, ``regionsearch --config tiny index``, in a subprocess on the first 100 and on all of
them (fresh data directories), sampling the resident memory of the job (and its children) every
0.2 s. Prints images/s and peak RSS of each run and their ratio; ``--json`` writes the figures.

    python benchmarks/index_memory.py                 # 100 vs 1000 images
    python benchmarks/index_memory.py --images 300    # a quicker check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import rss_tree  # noqa: E402
from _results import save_results  # noqa: E402


def write_scenes(folder: Path, n: int, seed: int) -> list[Path]:
    from PIL import Image

    from regionsearch.testing.shapes import make_scene, scene_seed

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{i // 100:03d}" / f"scene_{i:05d}.png"
        if not p.exists():
            p.parent.mkdir(exist_ok=True)
            Image.fromarray(make_scene(scene_seed(seed, i)).image).save(p)
        paths.append(p)
    return paths


def run_index(paths: list[Path], data_dir: Path, threads: int) -> dict:
    """``regionsearch --config tiny index`` on ``paths`` (given as a folder of symlinks)."""
    src = data_dir.parent / (data_dir.name + "-input")
    src.mkdir(parents=True, exist_ok=True)
    for p in paths:
        link = src / p.name
        if not link.exists():
            link.symlink_to(p)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "regionsearch.cli", "--config", "tiny", "--data-dir", str(data_dir),
           "index", str(src)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    samples = []
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            r = rss_tree(proc.pid)
            peak = max(peak, r)
            samples.append((round(time.perf_counter() - t0, 1), r))
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    stop.set()
    th.join()
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"index failed ({proc.returncode}): {err[-2000:]}")
    # RSS at the quarter points of the run: flat if nothing accumulates per image
    quarters = [max((r for t, r in samples if t <= seconds * q), default=0) / 2**20 for q in (0.25, 0.5, 0.75, 1.0)]
    return {"images": len(paths), "seconds": round(seconds, 1), "images_per_s": round(len(paths) / seconds, 3),
            "peak_rss_mib": round(peak / 2**20, 1), "peak_rss_mib_by_quarter": [round(q, 1) for q in quarters],
            "exit_code": proc.returncode}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000, help="the large run (the small one is 100)")
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the indexing job")
    ap.add_argument("--seed", type=int, default=2468)
    ap.add_argument("--workdir", type=Path, help="keep the scenes and data dirs here")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rs-index-memory-"))
    paths = write_scenes(work / "scenes", args.images, args.seed)
    res = {}
    for n in (args.small, args.images):
        res[str(n)] = r = run_index(paths[:n], work / f"data-{n}", args.threads)
        print(f"{n:>6} images: {r['images_per_s']:.2f} images/s, peak RSS {r['peak_rss_mib']:.0f} MiB "
              f"(by quarter of the run: {r['peak_rss_mib_by_quarter']})", flush=True)
    a, b = res[str(args.small)], res[str(args.images)]
    res["peak_ratio_large_over_small"] = round(b["peak_rss_mib"] / a["peak_rss_mib"], 3)
    print(f"peak RSS {args.images} / {args.small} images: {res['peak_ratio_large_over_small']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    print(f"results: {save_results(f'index_memory-{args.small}-{args.images}', res)}")


if __name__ == "__main__":
    main()
