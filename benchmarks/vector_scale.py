"""Vector search at scale: N clustered synthetic 512-d region vectors, per backend and index type.

    python benchmarks/vector_scale.py --n 100000
    python benchmarks/vector_scale.py --n 1000000 --threads 16
    python benchmarks/vector_scale.py --n 10000000 --threads 16      # the product's IVF-PQ+SQ8 (+ unrefined)

Data: a Gaussian mixture around ``--centres`` (default 4096) random unit centres, each point
``centre + spread * N(0, I/d)``, L2-normalised (CLIP region embeddings are clustered, not
uniform). Vectors are generated in chunks of ``--chunk`` from a seed (chunk ``i`` from
``default_rng([seed, i])``), so no full float32 copy is ever held unless the index itself stores
one (Flat, HNSW), and every process regenerates exactly the same data.

Ground truth: exact inner-product top 10 of ``--queries`` (200) queries by brute force, chunk by
chunk. Each configuration then runs in its own subprocess (so its peak memory is its own; a
sampler adds the resident memory of child processes, e.g. the Milvus Lite server) and reports:
build time (train + add), peak RSS, index size on disk, recall@10, p50/p99 latency of single
queries and of batches of 100 queries.

Configurations (``--configs``, comma-separated):

* ``faiss:Flat`` exact; ``faiss:HNSW32`` (efConstruction/efSearch as the product:
  80/128); ``faiss:IVF-PQ``: ``IVF{nlist},PQ{d/8}`` (nlist = power of two <= 4 sqrt(n), nprobe as
  the product: max(16, nlist/32)), trained on a sample and filled chunk by chunk;
  ``faiss:IVF-PQ+SQ8``: the product's ``auto`` choice above 5M, the same with an 8-bit
  scalar-quantised refinement of the top ``k * --refine`` candidates (1 byte per dimension);
* ``milvus:FLAT`` / ``milvus:HNSW`` / ``milvus:IVF_PQ``: the project's :class:`MilvusIndex` on Milvus
  Lite (skipped above ``--milvus-max-n``, default 1M: Lite is meant for local use).

Configurations whose estimated memory exceeds ``--mem-gib`` (default 24) are skipped with the
reason. Figures print as a table and, with ``--out``, as JSON. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc import rss_tree  # noqa: E402
from _results import save_results  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from regionsearch.vectors.faiss_index import default_nprobe, ivf_factory, ivf_shape  # noqa: E402

DIM = 512
K = 10
ALL_CONFIGS = ("faiss:Flat", "faiss:HNSW32", "faiss:IVF-PQ", "faiss:IVF-PQ+SQ8", "milvus:FLAT", "milvus:HNSW")


# ---------------------------------------------------------------------- data
def centres(args: argparse.Namespace) -> np.ndarray:
    rng = np.random.default_rng([args.seed, 999_999_999])
    c = rng.standard_normal((args.centres, args.dim), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _points(args: argparse.Namespace, cent: np.ndarray, stream: list[int], size: int) -> np.ndarray:
    rng = np.random.default_rng([args.seed, *stream])
    x = cent[rng.integers(0, len(cent), size)]
    x += rng.standard_normal((size, args.dim), dtype=np.float32) * np.float32(args.spread / math.sqrt(args.dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def chunks(args: argparse.Namespace, cent: np.ndarray, start: int = 0, stop: int | None = None):
    """Yield ``(first id, float32 (m, d))`` chunks of the corpus, ids ``start..stop``."""
    stop = args.n if stop is None else stop
    for i in range(start // args.chunk, math.ceil(stop / args.chunk)):
        lo, hi = i * args.chunk, min(args.n, (i + 1) * args.chunk)
        x = _points(args, cent, [i], hi - lo)
        a, b = max(lo, start), min(hi, stop)
        yield a, x[a - lo:b - lo]


def queries(args: argparse.Namespace, cent: np.ndarray, n: int, stream: int) -> np.ndarray:
    return _points(args, cent, [10**9 + stream], n)


def ground_truth(args: argparse.Namespace, cent: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact top-K ids per query (inner product), by brute force over the chunks."""
    best_s = np.full((len(q), K), -np.inf, np.float32)
    best_i = np.full((len(q), K), -1, np.int64)
    for first, x in chunks(args, cent):
        s = q @ x.T
        kk = min(K, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cs = np.concatenate([best_s, np.take_along_axis(s, part, 1)], 1)
        ci = np.concatenate([best_i, part + first], 1)
        order = np.argsort(-cs, axis=1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(cs, order, 1), np.take_along_axis(ci, order, 1)
    return best_i


# ---------------------------------------------------------------------- memory
class PeakMemory:
    """Samples the resident memory of this process tree every ``interval`` s; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.2):
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._t.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_tree(os.getpid()))
            self._stop.wait(interval)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_tree(os.getpid()))
        return self.peak


def estimate_gib(config: str, n: int, d: int) -> float:
    """Rough peak memory of a configuration (index + a data chunk + training sample)."""
    nlist, m = ivf_shape(n, d)
    base = 1.0 * 2**30  # interpreter, faiss, a chunk of data, queries
    per = {"faiss:Flat": 4 * d, "faiss:HNSW32": 4 * d + 32 * 2 * 4 * 1.1, "faiss:IVF-PQ": m + 8,
           "faiss:IVF-PQ+SQ8": m + 8 + d, "milvus:FLAT": 8 * d, "milvus:HNSW": 8 * d + 32 * 2 * 4 * 1.1,
           "milvus:IVF_PQ": 4 * d + m + 8}[config]
    train = 4 * d * min(n, max(64 * nlist, 100_000)) if "IVF" in config else 0
    return (base + per * n + train) / 2**30


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


# ---------------------------------------------------------------------- one configuration (child)
def run_config(args: argparse.Namespace, config: str, work: Path) -> dict:
    mem = PeakMemory()
    cent = centres(args)
    q = np.load(work / "queries.npy")
    gt = np.load(work / "gt.npy")
    qb = np.load(work / "batch_queries.npy")
    t0 = time.perf_counter()
    backend, kind = config.split(":", 1)
    if backend == "faiss":
        search, path = _build_faiss(args, kind, cent, work)
    else:
        search, path = _build_milvus(args, kind, cent, work)
    build_s = time.perf_counter() - t0
    size = disk_bytes(path)
    search(q[:5], K)  # warm up
    single = []
    found = np.zeros((len(q), K), np.int64)
    for i in range(len(q)):
        t = time.perf_counter()
        _, ids = search(q[i:i + 1], K)
        single.append(time.perf_counter() - t)
        found[i] = ids[0]
    batch = []
    for i in range(0, len(qb), 100):
        t = time.perf_counter()
        search(qb[i:i + 100], K)
        batch.append(time.perf_counter() - t)
    recall = float(np.mean([len(set(found[i]) & set(gt[i])) / K for i in range(len(q))]))
    extra = {}
    if config == "faiss:IVF-PQ+SQ8":
        # the same build with other refinement factors (k_factor 1: the PQ codes alone decide),
        # so the gain of the 8-bit copies is measured on identical lists and codes
        extra["refine_sweep"] = {}
        for kf in args.refine_sweep:
            plain = _refined(args, search.index, kf)
            single1, found1 = [], np.zeros((len(q), K), np.int64)
            for i in range(len(q)):
                t = time.perf_counter()
                found1[i] = plain(q[i:i + 1], K)[1][0]
                single1.append(time.perf_counter() - t)
            extra["refine_sweep"][kf] = {
                "recall@10": round(float(np.mean([len(set(found1[i]) & set(gt[i])) / K for i in range(len(q))])), 4),
                "single_p50_ms": round(1e3 * float(np.percentile(single1, 50)), 3),
                "single_p99_ms": round(1e3 * float(np.percentile(single1, 99)), 3)}
    peak = mem.stop()
    return {"config": config, "n": args.n, "build_s": round(build_s, 2), "peak_rss_gib": round(peak / 2**30, 3),
            "disk_mib": round(size / 2**20, 1), "recall@10": round(recall, 4),
            "single_p50_ms": round(1e3 * float(np.percentile(single, 50)), 3),
            "single_p99_ms": round(1e3 * float(np.percentile(single, 99)), 3),
            "batch100_p50_ms": round(1e3 * float(np.percentile(batch, 50)), 2),
            "batch100_p99_ms": round(1e3 * float(np.percentile(batch, 99)), 2), **extra}


def _refined(args: argparse.Namespace, index, k_factor: int):
    import faiss

    nprobe = args.nprobe or default_nprobe(ivf_shape(args.n, args.dim)[0])
    params = faiss.IndexRefineSearchParameters(k_factor=float(k_factor),
                                               base_index_params=faiss.SearchParametersIVF(nprobe=nprobe))
    return lambda x, k: index.search(x, k, params=params)


def _build_faiss(args: argparse.Namespace, kind: str, cent: np.ndarray, work: Path):
    import faiss

    from regionsearch.vectors.faiss_index import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH

    faiss.omp_set_num_threads(args.threads)
    faiss.cvar.distance_compute_blas_threshold = 4
    d = args.dim
    nlist, m = ivf_shape(args.n, d)
    factory = {"Flat": "Flat", "HNSW32": "HNSW32,Flat", "IVF-PQ": f"IVF{nlist},PQ{m}",
               "IVF-PQ+SQ8": ivf_factory(args.n, d)}[kind]  # the product's choice above 5M, at any n
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if kind == "HNSW32":
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if "IVF" in kind:
        # polysemous training (on by default for the factory's PQ) only serves polysemous search,
        # which is not used, and takes minutes even on small samples
        ivf_ = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf_.do_polysemous_training = False
        if args.kmeans_iters:
            ivf_.cp.niter = args.kmeans_iters
    if not index.is_trained:
        n_train = min(args.n, max(64 * nlist, 100_000), args.max_train)
        sample = np.concatenate([x for _, x in chunks(args, cent, 0, n_train)])
        index.train(sample)
        del sample
    for _, x in chunks(args, cent):
        index.add(x)
    params = None
    if kind == "HNSW32":
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind.startswith("IVF"):
        nprobe = args.nprobe or default_nprobe(nlist)
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = nprobe
        if kind == "IVF-PQ+SQ8":
            params = faiss.IndexRefineSearchParameters(k_factor=float(args.refine),
                                                       base_index_params=faiss.SearchParametersIVF(nprobe=nprobe))
    path = work / f"{kind}.faiss"
    faiss.write_index(index, str(path))

    def search(q: np.ndarray, k: int):
        return index.search(q, k, params=params) if params is not None else index.search(q, k)

    search.index = index  # type: ignore[attr-defined]
    return search, path


def _build_milvus(args: argparse.Namespace, kind: str, cent: np.ndarray, work: Path):
    from regionsearch.vectors.milvus_index import MilvusIndex

    path = work / f"milvus_{kind.lower()}" / "vectors.db"
    index = MilvusIndex.open(f"milvus://{path}?index={kind}", args.dim)
    if kind.startswith("IVF"):
        index.nprobe = args.nprobe or 32
    for first, x in chunks(args, cent):
        index.add(np.arange(first, first + len(x), dtype=np.int64), x)
    index.save(force=True)
    return index.search, path.parent


# ---------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of vectors (100k, 1M, 10M...)")
    ap.add_argument("--dim", type=int, default=DIM)
    ap.add_argument("--centres", type=int, default=4096, help="Gaussian mixture components")
    ap.add_argument("--spread", type=float, default=0.8, help="noise norm relative to the unit centres")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batches", type=int, default=10, help="batches of 100 queries for the batch latency")
    ap.add_argument("--chunk", type=int, default=100_000)
    ap.add_argument("--configs", default=None,
                    help="comma-separated; default: all up to 2M vectors, the IVF-PQ pair above (an HNSW or a "
                         "Flat index of 10M x 512 alone is ~20 GiB and HNSW takes hours to build)")
    ap.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 2))
    ap.add_argument("--mem-gib", type=float, default=24.0, help="skip configurations estimated above this")
    ap.add_argument("--milvus-max-n", type=int, default=1_000_000)
    ap.add_argument("--nprobe", type=int, default=0, help="IVF nprobe (0: the product's rule)")
    ap.add_argument("--refine", type=int, default=None,
                    help="refinement k factor of IVF-PQ+SQ8 (default: the product's REFINE_K_FACTOR)")
    ap.add_argument("--refine-sweep", default="1,4,16,64",
                    help="also measure the IVF-PQ+SQ8 build with these k factors (1 = no refinement)")
    ap.add_argument("--max-train", type=int, default=500_000)
    ap.add_argument("--kmeans-iters", type=int, default=0,
                    help="k-means iterations of the IVF centroids (0: faiss' default, 25)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per configuration")
    ap.add_argument("--out", type=Path, help="write the figures as JSON")
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.refine is None:
        from regionsearch.vectors.faiss_index import REFINE_K_FACTOR

        args.refine = REFINE_K_FACTOR
    args.refine_sweep = [int(x) for x in str(args.refine_sweep).split(",") if x.strip()]

    if args.child:
        print("RESULT " + json.dumps(run_config(args, args.child, args.workdir)), flush=True)
        return

    if args.configs is None:
        # above 2M: the product's choice only (its row also reports the same build without refinement)
        args.configs = ",".join(ALL_CONFIGS if args.n <= 2_000_000 else ("faiss:IVF-PQ+SQ8",))
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in ALL_CONFIGS + ("milvus:IVF_PQ",)]
    if unknown:
        ap.error(f"unknown configuration(s) {unknown}; valid: {', '.join(ALL_CONFIGS + ('milvus:IVF_PQ',))}")
    with tempfile.TemporaryDirectory(prefix="vector_scale_") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cent = centres(args)
        q = queries(args, cent, args.queries, 0)
        t = time.perf_counter()
        gt = ground_truth(args, cent, q)
        gt_s = time.perf_counter() - t
        np.save(work / "queries.npy", q)
        np.save(work / "gt.npy", gt)
        np.save(work / "batch_queries.npy", queries(args, cent, 100 * args.batches, 1))
        print(f"n={args.n} dim={args.dim} centres={args.centres} spread={args.spread} threads={args.threads}; "
              f"exact top-{K} of {args.queries} queries by brute force in {gt_s:.1f} s", flush=True)
        results = []
        for config in configs:
            est = estimate_gib(config, args.n, args.dim)
            if est > args.mem_gib:
                results.append({"config": config, "n": args.n, "skipped": f"needs ~{est:.1f} GiB > {args.mem_gib} GiB"})
            elif config.startswith("milvus") and args.n > args.milvus_max_n:
                results.append({"config": config, "n": args.n, "skipped": f"n > --milvus-max-n {args.milvus_max_n}"})
            else:
                cmd = [sys.executable, os.path.abspath(__file__), *(argv if argv is not None else sys.argv[1:]),
                       "--configs", args.configs, "--child", config, "--workdir", str(work)]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                    results.append(json.loads(line[-1][7:]) if line else
                                   {"config": config, "n": args.n,
                                    "failed": (proc.stderr.strip().splitlines() or ["no output"])[-1]})
                except subprocess.TimeoutExpired:
                    results.append({"config": config, "n": args.n, "failed": f"timeout after {args.timeout:.0f} s"})
            _print_row(results[-1])
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                       indent=2))
    print(f"results: {save_results(f'vector_scale-{args.n}', {'results': results}, argv=[sys.argv[0], *(argv if argv is not None else sys.argv[1:])])}")


def _print_row(r: dict) -> None:
    if "skipped" in r or "failed" in r:
        print(f"{r['config']:<18} {r.get('skipped') or 'FAILED: ' + r['failed']}", flush=True)
        return
    print(f"{r['config']:<18} build {r['build_s']:>8.1f} s  peak {r['peak_rss_gib']:>6.2f} GiB  disk "
          f"{r['disk_mib']:>8.1f} MiB  recall@10 {r['recall@10']:.3f}  single p50/p99 {r['single_p50_ms']:.2f}/"
          f"{r['single_p99_ms']:.2f} ms  batch100 p50/p99 {r['batch100_p50_ms']:.1f}/{r['batch100_p99_ms']:.1f} ms",
          flush=True)
    for kf, w in r.get("refine_sweep", {}).items():
        name = "  same, no refine" if int(kf) == 1 else f"  same, refine x{kf}"
        print(f"{name:<18} recall@10 {w['recall@10']:.3f}  single p50/p99 {w['single_p50_ms']:.2f}/"
              f"{w['single_p99_ms']:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
