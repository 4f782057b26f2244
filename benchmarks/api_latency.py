"""HTTP latency of the regionsearch API: search p50/p99 and QPS with 1, 8 and 32 concurrent
clients against N regions, and prompted segmentation latency (first prompt vs cached prompt).

Setup (figures are about time, not quality):

* N regions: clustered synthetic 512-d vectors + real SQL rows (images, regions with RLE masks,
  float16 embeddings) committed through ``DataDir.commit``; the FAISS index type is what ``auto``
  picks for N (``choose_factory``: Flat for small N, HNSW32 at 1M), trained up front if it needs it;
* text tower: the ViT-B-32 architecture with random weights (``pretrained: null``), encoded the
  way the embedder does it (truncated at the end-of-text token; ``--full-text`` for the baseline);
* SAM: the hiera-tiny architecture (sam2's ``configs/sam2.1/sam2.1_hiera_t.yaml``, 1024 px) with
  random weights, put into the model registry of the server process;
* the server runs in a subprocess (uvicorn, one worker); clients are httpx in this process;
  every search uses a distinct query text, so the text-embedding cache never answers.

Run::

    python benchmarks/api_latency.py                      # quick: 20k regions
    python benchmarks/api_latency.py --regions 1000000    # the full-size figure (minutes to build)
    python benchmarks/api_latency.py --full-text          # baseline: text tower over all 77 tokens, float32
    python benchmarks/api_latency.py --segment-decoder sam2   # baseline: sam2's decoder for prompts

Figures go to ``benchmarks/results/api_latency-<N>[-full_text].json``; the script exits 1 when any
search request failed.

The data dir is kept (``--data-dir``, default ``/tmp/regionsearch-bench-<N>``) and reused when
it already holds N regions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import save_results  # noqa: E402

DIM = 512
REGIONS_PER_IMAGE = 50
WORDS = ("red green blue yellow orange purple small large round square striped shiny old new "
         "car dog cat tree house person bicycle boat chair table cup bird flower sign lamp door").split()


def bench_config_yaml(factory: str) -> str:
    return f"""# regionsearch benchmark config (random weights; timing only)
name: bench
device: cpu
models:
  sam:
    model: null
    checkpoint: null
    config: configs/sam2.1/sam2.1_hiera_t.yaml
  clip:
    model: ViT-B-32
    pretrained: null
index:
  factory: "{factory}"
"""


def prime_sam(config) -> None:
    """Put a random-weight hiera-tiny SAM 2.1 into the registry under the config's key."""
    from regionsearch.models import registry
    from regionsearch.models.sam import _resolve_config, build_sam2_model

    path = _resolve_config(config.models.sam.config)
    registry.cached(("sam2", config.models.sam, "cpu"), lambda: build_sam2_model(path, None, "cpu"))


# ---------------------------------------------------------------------------------- build
def build(data_dir: Path, n_regions: int, seed: int = 0) -> dict:
    import numpy as np

    from regionsearch.config import load_config
    from regionsearch.datadir import DataDir
    from regionsearch.types import ImageResult
    from regionsearch.masks import encode_rle
    from regionsearch.pipeline import Pipeline
    from regionsearch.types import Region
    from regionsearch.vectors.faiss_index import choose_factory, train_min

    factory = choose_factory(n_regions, DIM)
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = data_dir / "bench.yaml"
    cfg_path.write_text(bench_config_yaml(factory))
    config = load_config(str(cfg_path))
    pipeline = Pipeline(config)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1024, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def vectors(n: int, r: np.random.Generator) -> np.ndarray:
        v = centres[r.integers(0, len(centres), n)] + r.standard_normal((n, DIM)).astype(np.float32) * (0.6 / DIM ** 0.5)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    # one real image file (the segmentation benchmark prompts on it)
    from PIL import Image

    from regionsearch.testing.shapes import make_scene

    scene = make_scene(1, size=256).image
    big = np.asarray(Image.fromarray(scene).resize((1024, 768), Image.BILINEAR))
    real = data_dir / "real.jpg"
    Image.fromarray(big).save(real, quality=92)

    masks = []
    for i in range(16):
        m = np.zeros((768, 1024), bool)
        x, y = 40 * i, 30 * i
        m[y:y + 120, x:x + 160] = True
        masks.append((encode_rle(m), (float(x), float(y), 160.0, 120.0), int(m.sum())))

    t0 = time.perf_counter()
    dd = DataDir.open(data_dir, manifest=pipeline.manifest(), index_factory=factory)
    try:
        if len(dd.index) >= n_regions:
            return {"factory": factory, "built": False, "seconds": 0.0}
        if train_min(factory) and len(dd.index) == 0:
            sample = vectors(max(train_min(factory), 50_000), np.random.default_rng(seed + 1))
            dd.index.train(sample)
        n_images = (n_regions + REGIONS_PER_IMAGE - 1) // REGIONS_PER_IMAGE
        batch: list = []
        done = 0
        for i in range(n_images):
            n = min(REGIONS_PER_IMAGE, n_regions - done)
            regions = []
            for j in range(n):
                rle, box, area = masks[(i + j) % len(masks)]
                regions.append(Region(bbox=box, area=area, rle=rle, predicted_iou=0.9, stability_score=0.95))
            path = str(real) if i == 0 else f"/bench/images/{i // 1000:04d}/img{i:07d}.jpg"
            batch.append(ImageResult(path=path, sha256=f"{i:064x}", width=1024, height=768,
                                     pipeline_key=config.pipeline_key(), regions=regions,
                                     embeddings=vectors(n, np.random.default_rng(seed + 10 + i))))
            done += n
            if len(batch) == 200 or i == n_images - 1:
                dd.commit(batch)
                batch = []
                print(f"\rbuilt {done}/{n_regions} regions ({time.perf_counter() - t0:.0f} s)", end="",
                      file=sys.stderr, flush=True)
        dd.save(force=True)
        print(file=sys.stderr)
    finally:
        dd.close()
    return {"factory": factory, "built": True, "seconds": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------------------------- serve
def use_segment_decoder(which: str) -> None:
    """Which mask decoder answers prompts in this process: ``default`` (the shared-work decoder,
    ``segment.dtype: auto``), ``float32`` (the shared-work decoder, exact path) or ``sam2``
    (baseline: sam2's ``SAM2ImagePredictor.predict`` on the cached features, what the service
    did before the shared-work decoder)."""
    from regionsearch.segment import prompt

    if which == "float32":
        init = prompt.PromptSegmenter.__init__

        def init_float32(self, *a, **kw):
            init(self, *a, **{**kw, "dtype": "float32"})

        prompt.PromptSegmenter.__init__ = init_float32
    elif which == "sam2":
        def sam2_predict(self, entry, coords, labels, box, mask, multimask):
            masks, scores, low = self.predictor.predict(point_coords=coords, point_labels=labels, box=box,
                                                        mask_input=mask, multimask_output=multimask)
            return (masks[None], scores[None], low[None]) if masks.ndim == 3 else (masks, scores, low)

        prompt.PromptSegmenter._predict = sam2_predict


def serve(data_dir: Path, port: int, full_text: bool, threads: int, segment_decoder: str = "default") -> None:
    import torch

    torch.set_num_threads(threads)
    from regionsearch.config import load_config

    cfg_path = data_dir / "bench.yaml"
    config = load_config(str(cfg_path))
    prime_sam(config)
    use_segment_decoder(segment_decoder)
    if full_text:
        # baseline: the text tower over its whole context in float32 (what open_clip's encode_text
        # does); ``transformer`` (the embedder's lower-precision copy) is ignored on purpose
        from regionsearch.embed import text_fast

        def full_context(model, tokens, normalize=False, transformer=None):
            return model.encode_text(tokens, normalize=normalize)

        text_fast.encode_text_truncated = full_context
    from api.app import run_server

    run_server(host="127.0.0.1", port=port, config=str(cfg_path), data_dir=str(data_dir), log_level="warning",
               segment_cache_size=4, max_k=100)


# ---------------------------------------------------------------------------------- clients
def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 900) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited during startup")
        try:
            r = httpx.get(url + "/readyz", timeout=5)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not become ready")


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    idx = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[idx]


async def search_level(url: str, concurrency: int, n_requests: int, k: int, offset: int) -> dict:
    import httpx

    latencies: list[float] = []
    counter = iter(range(n_requests))
    errors = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            j = offset + i
            text = f"{WORDS[j % len(WORDS)]} {WORDS[(j // 7) % len(WORDS)]} {WORDS[(j // 49) % len(WORDS)]} number {j}"
            t0 = time.perf_counter()
            r = await client.post(url + "/v1/search", json={"text": text, "k": k})
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await client.post(url + "/v1/search", json={"text": "warm up", "k": k})
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ms = [v * 1000 for v in latencies]
    return {"concurrency": concurrency, "requests": len(ms), "errors": errors,
            "p50_ms": round(percentile(ms, 50), 1), "p99_ms": round(percentile(ms, 99), 1),
            "mean_ms": round(statistics.fmean(ms), 1), "qps": round(len(ms) / wall, 1)}


def segment_bench(url: str, image_id: int, prompts: int) -> dict:
    import httpx

    with httpx.Client(timeout=600) as c:
        first = []
        for trial in range(2):
            # evict: the server keeps 4 images; prompting 4 uploads pushes the real image out
            if trial:
                import io

                import numpy as np
                from PIL import Image

                for s in range(4):
                    buf = io.BytesIO()
                    Image.fromarray(np.full((64, 64, 3), 40 * s + trial, np.uint8)).save(buf, format="PNG")
                    c.post(url + "/v1/segment", files={"file": ("e.png", buf.getvalue(), "image/png")},
                           data={"prompt": json.dumps({"points": [[5, 5]], "labels": [1]})})
            t0 = time.perf_counter()
            r = c.post(url + "/v1/segment", json={"image_id": image_id, "points": [[500, 380]], "labels": [1]})
            first.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and r.json()["cached"] is False, r.text
        cached = []
        server = []
        for i in range(prompts):
            t0 = time.perf_counter()
            r = c.post(url + "/v1/segment", json={"image_id": image_id, "points": [[300 + 3 * i, 200 + 2 * i]],
                                                  "labels": [1], "multimask_output": True})
            cached.append((time.perf_counter() - t0) * 1000)
            body = r.json()
            assert body["cached"] is True
            server.append(body["timings"]["total_ms"])
    return {"image": "1024x768", "model": "sam2.1_hiera_t (random weights)",
            "first_prompt_ms": [round(v, 1) for v in first],
            "cached_prompt_p50_ms": round(percentile(cached, 50), 1),
            "cached_prompt_p99_ms": round(percentile(cached, 99), 1),
            "cached_prompt_server_p50_ms": round(percentile(server, 50), 1)}


def breakdown(data_dir: Path, threads: int, n: int = 60) -> dict:
    """Where a search's time goes, in-process on the same data dir: text tower (float32 and the
    configured ``search.text_dtype``), vector search, SQL fetch of the candidates (medians, ms)."""
    import numpy as np
    import torch

    from regionsearch.config import load_config
    from regionsearch.datadir import DataDir
    from regionsearch.embed.clip import ClipEmbedder
    from regionsearch.pipeline import Pipeline

    torch.set_num_threads(threads)
    config = load_config(str(data_dir / "bench.yaml"))
    pipeline = Pipeline(config)
    bundle = pipeline.embedder.bundle
    towers = {"float32": ClipEmbedder(bundle, text_dtype="float32"),
              config.search.text_dtype: pipeline.embedder}
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(WORDS, 3)) + f" {i}" for i in range(n)]
    out: dict = {}
    for name, emb in towers.items():
        times = []
        for t in texts:
            t0 = time.perf_counter()
            emb.embed_texts([f"{name} {t}"])
            times.append(time.perf_counter() - t0)
        out[f"text_{name}_ms"] = round(1e3 * float(np.median(times[5:])), 2)
    dd = DataDir.open(data_dir, readonly=True)
    try:
        vs, sql = [], []
        for t in texts:
            q = pipeline.embedder.embed_texts([t])
            t0 = time.perf_counter()
            _, ids = dd.search_vectors(q, 40)
            t1 = time.perf_counter()
            dd.fetch_regions([int(i) for i in ids[0] if i >= 0])
            sql.append(time.perf_counter() - t1)
            vs.append(t1 - t0)
        out["vector_search_ms"] = round(1e3 * float(np.median(vs[5:])), 2)
        out["sql_fetch_40_ms"] = round(1e3 * float(np.median(sql[5:])), 2)
    finally:
        dd.close()
    out["text_dtype_used"] = pipeline.embedder.text_dtype
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regions", type=int, default=20_000, help="indexed regions (default 20000; try 1000000)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=200, help="search requests per concurrency level")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=30, help="cached segmentation prompts")
    ap.add_argument("--full-text", action="store_true",
                    help="baseline: encode query texts over the full context (no end-of-text truncation)")
    ap.add_argument("--no-segment", action="store_true")
    ap.add_argument("--segment-decoder", choices=["default", "float32", "sam2"], default="default",
                    help="mask decoder for prompts: the shared-work decoder (default dtype or float32) or the "
                         "baseline, sam2's predictor on the cached features")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time text tower / vector search / SQL fetch in-process (after the HTTP runs)")
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="torch threads of the server")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    data_dir = args.data_dir or Path(f"/tmp/regionsearch-bench-{args.regions}")
    if args.serve:
        serve(data_dir, args.port, args.full_text, args.threads, args.segment_decoder)
        return

    built = build(data_dir, args.regions)
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", "--data-dir", str(data_dir), "--port", str(port),
           "--threads", str(args.threads), "--segment-decoder", args.segment_decoder] + (
               ["--full-text"] if args.full_text else [])
    proc = subprocess.Popen(cmd, cwd=str(ROOT))
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        ready = wait_ready(url, proc)
        startup = time.perf_counter() - t0
        results = {"regions": args.regions, "index": ready["index"], "build": built,
                   "server_startup_s": round(startup, 1), "text_encoding": "full context" if args.full_text else "truncated at end-of-text",
                   "cpu_count": os.cpu_count(), "search": []}
        for i, level in enumerate(int(c) for c in args.concurrency.split(",")):
            n = args.requests if level == 1 else max(args.requests, 4 * level)
            res = asyncio.run(search_level(url, level, n, args.k, offset=100_000 * (i + 1)))
            results["search"].append(res)
            print(f"search c={level:>2}: p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  {res['qps']} QPS "
                  f"({res['requests']} requests, {res['errors']} errors)", file=sys.stderr)
        if not args.no_segment:
            results["segment"] = {**segment_bench(url, 1, args.prompts), "decoder": args.segment_decoder}
            s = results["segment"]
            print(f"segment ({args.segment_decoder} decoder): first prompt {s['first_prompt_ms']} ms; cached p50 "
                  f"{s['cached_prompt_p50_ms']} ms p99 {s['cached_prompt_p99_ms']} ms", file=sys.stderr)
            from _results import save_results

            print(f"segment figures: {save_results(f'api_latency-segment-{args.segment_decoder}', s)}", file=sys.stderr)
        if args.breakdown:
            proc.terminate()  # the in-process timing runs alone
            proc.wait(timeout=30)
            results["breakdown"] = breakdown(data_dir, args.threads)
            print(f"breakdown: {results['breakdown']}", file=sys.stderr)
        print(json.dumps(results, indent=2))
        name = f"api_latency-{args.regions}" + ("-full_text" if args.full_text else "")
        print(f"results: {save_results(name, results)}", file=sys.stderr)
        errors = sum(level["errors"] for level in results["search"])
        if errors:
            # a baseline whose requests fail measures error pages, not searches
            sys.exit(f"error: {errors} search requests failed (see the server log above)")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
