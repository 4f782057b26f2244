"""Indexing throughput: the naive pipeline vs the project's, on the same images, in one run.

(a) naive: sam2's ``SAM2AutomaticMaskGenerator`` with its defaults (points_per_side=32,
    points_per_batch=64, ...) and one CLIP forward per region (open_clip's own preprocessing of
    a box crop, batch of 1);
(b) project, exact float32: the fast generator with the shared-work decoder in float32 (sam2's
    masks up to summation order), batched crops;
(c) project, default: the same with ``segment.dtype: auto`` (bfloat16 where the CPU multiplies it
    natively). Optional further variants with ``--steps`` (``torch.compile``, coarse-to-fine).

The naive pipeline runs in a worker process with glibc's default allocator (sam2 as a user runs
it); the project's variants run in the main process with the product's start-up allocator
settings (``configure_allocator``; ``--malloc default`` to measure without). Both build the same
random weights from one seed (checked). Torch threads: ``--threads`` (1: one core each).

Part 1, time (``--part speed``): the real architectures, SAM 2.1 hiera-tiny (1024 px) + CLIP
ViT-B-32 with random weights (nothing can be downloaded here). Random weights make the usual
thresholds meaningless, so the stability threshold is calibrated on the first image so that
50-100 masks survive, and the same thresholds are used by both pipelines.

Part 2, quality (``--part agreement``): the tiny trained models, held-out shapes scenes, equal
thresholds (configs/tiny.yaml): the fraction of the naive generator's masks matched by a project
mask at IoU >= 0.8, and the reverse.

Prints images/s end to end (wall and CPU time), the per-stage split, decoder ms per prompt, peak
RSS, the cost line ``time per image = fixed + prompts x per-prompt``, the ratio at 100/75/50/25%
of sam2's prompts, and last, exactly ``ratio exact/naive (images/s): X`` and
``ratio default/naive (images/s): Y``. Figures go to ``benchmarks/results/index_throughput-*.json``.

    python benchmarks/index_throughput.py [--part speed|agreement|both] [--images 3] [--size 512]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import save_results  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sample_images(n: int, size: int) -> list[np.ndarray]:
    """scikit-image's bundled photos, resized so the longer side is ``size``."""
    import cv2
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")[:n]:
        img = getattr(data, name)()
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, 2)
        h, w = img.shape[:2]
        s = size / max(h, w)
        out.append(cv2.resize(img[:, :, :3], (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
    return out


def naive_index(images, sam, clip, preprocess, params) -> dict:
    import torch
    from PIL import Image
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from regionsearch.models.sam import backbone_feature_sizes

    gen = SAM2AutomaticMaskGenerator(sam, output_mode="coco_rle", **params)
    gen.predictor._bb_feat_sizes = backbone_feature_sizes(sam)
    seg_s = emb_s = 0.0
    masks = 0
    records_all = []
    for img in images:
        t0 = time.perf_counter()
        with torch.inference_mode():
            records = gen.generate(img)
        t1 = time.perf_counter()
        for rec in records:
            x, y, w, h = (int(round(v)) for v in rec["bbox"])
            crop = Image.fromarray(img[y:y + max(h, 1), x:x + max(w, 1)])
            with torch.inference_mode():
                clip.encode_image(preprocess(crop)[None])
        t2 = time.perf_counter()
        seg_s += t1 - t0
        emb_s += t2 - t1
        masks += len(records)
        records_all.append(records)
    return {"segment_s": seg_s, "embed_s": emb_s, "masks": masks, "records": records_all}


def project_index(images, sam, bundle, cfg) -> dict:
    from regionsearch.embed.clip import ClipEmbedder
    from regionsearch.pipeline import Pipeline, StageTimes
    from regionsearch.segment.fast_amg import FastAutomaticSegmenter

    pipe = Pipeline(cfg)
    pipe._segmenter = FastAutomaticSegmenter(sam, cfg.segment, cfg.embed.min_region_area,
                                             coarse_to_fine=cfg.segment.coarse_to_fine,
                                             coarse_step=cfg.segment.coarse_step)
    pipe._embedder = ClipEmbedder(bundle, cfg.embed.batch_size)
    times = StageTimes()
    masks = 0
    stats = []
    records = []
    for img in images:
        regions, _ = pipe.process(img, times)
        masks += sum(r.kind == "mask" for r in regions)
        records.append([{"segmentation": r.rle} for r in regions if r.kind == "mask"])
        stats.append(dict(pipe._segmenter.stats.__dict__))
    return {"segment_s": times.segment, "embed_s": times.embed, "masks": masks, "stats": stats, "records": records}


def _agreement(base: list[list[dict]], ours: list[list[dict]], thr: float = 0.8) -> tuple[float | None, float | None]:
    """(fraction of the baseline masks matched by a project mask at IoU >= ``thr``, and the
    reverse: fraction of the project's masks matched by a baseline mask), from per-image lists of
    sam2-style records. Masks on an image where the other side found none count as unmatched,
    both ways."""
    from regionsearch.masks import rle_iou

    fwd: list[bool] = []
    rev: list[bool] = []
    for rb, rf in zip(base, ours):
        if rb and rf:
            iou = rle_iou([r["segmentation"] for r in rb], [r["segmentation"] for r in rf])
            fwd += list(iou.max(1) >= thr)
            rev += list(iou.max(0) >= thr)
        else:
            fwd += [False] * len(rb)
            rev += [False] * len(rf)
    return (float(np.mean(fwd)) if fwd else None, float(np.mean(rev)) if rev else None)


def calibrate(sam, image, base_params, target: int = 50) -> dict:
    """Pick the stability threshold (random weights) that leaves about ``target`` masks on ``image``.

    One generator run on a 16x16 grid with the threshold at 0 gives every surviving mask's
    stability score; the highest threshold of a fixed ladder that keeps ``target`` of them is
    taken (the 32x32 grid of the real runs finds at least as many). One run instead of one per
    threshold: with hiera-tiny on this CPU a 32x32 run costs minutes.
    """
    from regionsearch.config import load_config
    from regionsearch.segment.fast_amg import FastAutomaticSegmenter

    cfg = load_config("default", {"segment": {**base_params, "points_per_side": 16, "stability_score_thresh": 0.0,
                                              "max_regions": 100_000}})
    stab = np.array([r["stability_score"] for r in FastAutomaticSegmenter(sam, cfg.segment, coarse_to_fine=False)
                     .generate(image)])
    ladder = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
    thr = next((t for t in ladder if (stab >= t).sum() >= target), 0.0)
    return {"stability_score_thresh": thr, "masks_at_16x16": int((stab >= thr).sum()),
            "stability_quantiles": [round(float(q), 3) for q in np.quantile(stab, [0.1, 0.5, 0.9])] if stab.size else []}


def _speed_models(threads: int):
    """hiera-tiny + ViT-B-32 with random weights, built from seed 0 (identical in every process
    that calls this, so the naive worker and the main process run the same weights)."""
    import open_clip
    import sam2
    import torch

    from regionsearch.models.clip import ClipBundle
    from regionsearch.models.sam import build_sam2_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sam = build_sam2_model(Path(sam2.__file__).parent / "configs/sam2.1/sam2.1_hiera_t.yaml", None, "cpu")
    clip, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    clip.eval()
    bundle = ClipBundle(model=clip, tokenizer=open_clip.get_tokenizer("ViT-B-32"), preprocess=preprocess,
                        name="ViT-B-32", pretrained=None, dim=512, image_size=224,
                        mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD,
                        context_length=77, device="cpu")
    checksum = float(sum(float(p.double().sum()) for p in sam.parameters()))
    return sam, clip, preprocess, bundle, checksum


def _naive_worker(conn, threads: int, params: dict) -> None:
    """The naive pipeline in its own process: sam2 as a user runs it, with glibc's default
    allocator (the project's ``configure_allocator`` is applied only to the main process). Times
    sam2's mask decoder with forward hooks (seconds and prompts)."""
    sys.path.insert(0, str(REPO))
    sam, clip, preprocess, _, checksum = _speed_models(threads)
    dec = {"s": 0.0, "prompts": 0}

    def pre(_mod, _args, kwargs):
        dec["t0"] = time.perf_counter()
        dec["prompts"] += int(kwargs["sparse_prompt_embeddings"].shape[0])

    def post(_mod, _args, _kwargs, _out):
        dec["s"] += time.perf_counter() - dec["t0"]

    sam.sam_mask_decoder.register_forward_pre_hook(pre, with_kwargs=True)
    sam.sam_mask_decoder.register_forward_hook(post, with_kwargs=True)
    conn.send({"checksum": checksum})
    while (img := conn.recv()) is not None:
        dec.update(s=0.0, prompts=0)
        t0, c0 = time.perf_counter(), time.process_time()
        res = naive_index([img], sam, clip, preprocess, params)
        conn.send({**res, "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                   "decoder_s": dec["s"], "prompts": dec["prompts"], "peak_rss_mb": _rss_mb()})


TIMING_NOTE = ("images/s = 1 / CPU seconds per image (process time of each pipeline's process, one torch "
               "thread): the machine is shared with other jobs and loaded, so wall-clock figures (also given) "
               "are distorted; the ratios and the last two lines use CPU time")

#: the project's variants in the speed part: name -> segment config overrides
SPEED_VARIANTS = {"exact float32": {"dtype": "float32"}, "default": {},
                  "default + compile": {"compile": True},
                  "default + encoder auto": {"encoder_dtype": "auto"},
                  "coarse-to-fine x4": {"coarse_to_fine": True, "coarse_step": 4}}


def part_speed(args) -> dict:
    import inspect
    import multiprocessing as mp

    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from regionsearch.config import load_config
    from regionsearch.models.device import configure_allocator

    allocator = configure_allocator() if args.malloc == "project" else False
    images = sample_images(args.images, args.size)
    sam, clip, preprocess, bundle, checksum = _speed_models(args.threads)
    relaxed = {"pred_iou_thresh": 0.0, "stability_score_offset": 1.0, "box_nms_thresh": 0.7}
    calib = calibrate(sam, images[0], {"preset": "default", **relaxed})
    thresholds = {**relaxed, "stability_score_thresh": calib["stability_score_thresh"]}
    naive_params = {k: v.default for k, v in inspect.signature(SAM2AutomaticMaskGenerator.__init__).parameters.items()
                    if k in ("points_per_side", "points_per_batch", "crop_n_layers", "use_m2m", "multimask_output",
                             "min_mask_region_area", "crop_n_points_downscale_factor")}
    naive_params.update(thresholds)
    if args.points_per_side:  # smoke runs only: the figures use sam2's default (32) on both sides
        naive_params["points_per_side"] = thresholds["points_per_side"] = args.points_per_side
    wanted = ["exact float32", "default", *[v for v in args.steps if v in SPEED_VARIANTS and
                                            v not in ("exact float32", "default")]]
    cfgs = {v: load_config("default", {"device": "cpu", "segment": {**thresholds, "max_regions": 1000,
                                                                   **SPEED_VARIANTS[v]}}) for v in wanted}
    naive = not args.skip_naive
    if naive:
        ctx = mp.get_context("spawn")
        conn, child = ctx.Pipe()
        worker = ctx.Process(target=_naive_worker, args=(child, args.threads, naive_params), daemon=True)
        worker.start()
        if conn.recv()["checksum"] != checksum:
            raise SystemExit("the naive worker built different random weights; the comparison would be void")
    # images are interleaved (each image through every variant in turn) so that a change of
    # machine load during the run hits all variants alike
    runs: dict[str, list[dict]] = {v: [] for v in ["naive", *wanted][(0 if naive else 1):]}
    for i, img in enumerate(images):
        if naive:
            conn.send(img)
            runs["naive"].append(conn.recv())
        for v in wanted:
            t0, c0 = time.perf_counter(), time.process_time()
            r = project_index([img], sam, bundle, cfgs[v])
            runs[v].append({**r, "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0})
        print(f"image {i + 1}/{len(images)}: " + ", ".join(
            f"{k} {sum(x['seconds'] for x in rs):.1f} s" for k, rs in runs.items()), flush=True)
    if naive:
        conn.send(None)
        worker.join(timeout=60)
    n = len(images)

    def summary(v: str) -> dict:
        rs = runs[v]
        out = {k: sum(r[k] for r in rs) for k in ("seconds", "cpu_s", "segment_s", "embed_s", "masks")}
        if v == "naive":
            out["decoder_s"] = sum(r["decoder_s"] for r in rs)
            out["prompts"] = sum(r["prompts"] for r in rs)
            out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rs)
        else:
            st = [r["stats"][0] for r in rs]
            out["decoder_s"] = sum(x["seconds"].get("decoder", 0.0) for x in st)
            out["prompts"] = sum(x["prompts"] for x in st)
            out["per_prompt_s"] = sum(x["seconds"]["decode_and_filter"] for x in st) / max(1, out["prompts"])
            out["split_s"] = {k: sum(x["seconds"].get(k, 0.0) for x in st)
                              for k in ("embed_image", "decoder", "decode_and_filter", "finalise")}
            out["amg_stats"] = st
            # random weights: this only checks that the speed work keeps the same masks; the real
            # check is part 2 (--part agreement)
            out["agreement_with_naive"] = _agreement([r["records"][0] for r in runs["naive"]],
                                                     [r["records"][0] for r in rs])[0] if naive else None
        out["images_per_s"] = n / out["seconds"]
        out["images_per_cpu_s"] = n / out["cpu_s"]
        out["decoder_ms_per_prompt"] = 1000 * out["decoder_s"] / max(1, out["prompts"])
        out["masks_per_image"] = out["masks"] / n
        out["prompts_per_image"] = out["prompts"] / n
        return out

    res = {v: summary(v) for v in runs}
    if not naive:
        return {"variants": res, "images": n, "size": args.size, "torch_threads": args.threads, "calibration": calib,
                "peak_rss_mb": {"project process": _rss_mb()}, "allocator": "project (mallopt)" if allocator else
                "glibc default"}
    # CPU time throughout (the machine may be shared: wall time then measures the load)
    naive_per_image = res["naive"]["cpu_s"] / n
    for v in wanted:
        r = res[v]
        r["ratio_images_per_s"] = res["naive"]["seconds"] / r["seconds"]
        r["ratio_images_per_cpu_s"] = res["naive"]["cpu_s"] / r["cpu_s"]
        # cost line: CPU time per image = fixed + prompts x per-prompt, per-prompt = decoding and
        # filtering per prompt, fixed = the rest (image encoder, finalising, crops, CLIP). The stage
        # timers are wall clock: scaled by the process's CPU/wall ratio (one thread, so ~1 unless
        # the process was descheduled)
        per_prompt = r["per_prompt_s"] * min(1.0, r["cpu_s"] / r["seconds"])
        fixed = r["cpu_s"] / n - r["prompts_per_image"] * per_prompt
        r["cost_line"] = {"fixed_cpu_s": fixed, "prompts": r["prompts_per_image"], "per_prompt_cpu_ms": 1000 * per_prompt}
        # ratio to naive if only a fraction of sam2's prompts were decoded (coarse-to-fine
        # prompting with real weights); the naive side keeps all its prompts
        r["prompt_fraction_ratio"] = {f"{int(f * 100)}%": naive_per_image / (fixed + f * r["prompts_per_image"] *
                                                                          per_prompt)
                                      for f in (1.0, 0.75, 0.5, 0.25)}
    return {"variants": res, "images": n, "size": args.size, "torch_threads": args.threads, "timing": TIMING_NOTE,
            "allocator": "project (mallopt) in the main process, glibc default in the naive worker" if allocator
            else "glibc default in both processes", "calibration": calib, "naive_params": naive_params,
            "project_params": {v: dict(cfgs[v].segment.amg_params(), dtype=cfgs[v].segment.dtype,
                                       encoder_dtype=cfgs[v].segment.encoder_dtype,
                                       compile=cfgs[v].segment.compile) for v in wanted},
            "peak_rss_mb": {"naive worker": res["naive"]["peak_rss_mb"], "project process": _rss_mb()}}


def print_speed(s: dict) -> None:
    res = s["variants"]
    if "naive" not in res:  # --skip-naive: the project's variants only, no ratios
        for v, r in res.items():
            print(f"{v:<18}: {r['images_per_s']:.4f} images/s ({r['images_per_cpu_s']:.4f} per CPU s, {r['cpu_s']:.1f} CPU s)"
                  f"  decoder {r['decoder_ms_per_prompt']:.1f} ms/prompt  split {r['split_s']}  CLIP {r['embed_s']:.1f} s")
        return
    for v, r in res.items():
        print(f"{v:<18}: {r['images_per_s']:.4f} images/s ({r['images_per_cpu_s']:.4f} per CPU s)  "
              f"segment {r['segment_s']:.1f} s  embed {r['embed_s']:.1f} s  decoder {r['decoder_ms_per_prompt']:.1f} ms/prompt"
              f"  prompts/image {r['prompts_per_image']:.0f}  masks/image {r['masks_per_image']:.1f}"
              + ("" if v == "naive" else f"  ratio {r['ratio_images_per_s']:.2f} (CPU time {r['ratio_images_per_cpu_s']:.2f})"
                 f"  agreement with naive {r['agreement_with_naive']}"))
        if v != "naive":
            sp = r["split_s"]
            print(f"    split: image encoder {sp['embed_image']:.1f} s, decoder {sp['decoder']:.1f} s, "
                  f"decode+filter {sp['decode_and_filter']:.1f} s, finalise {sp['finalise']:.1f} s, CLIP {r['embed_s']:.1f} s")
    print(TIMING_NOTE)
    print(f"peak RSS: naive worker {s['peak_rss_mb']['naive worker']:.0f} MB, project process "
          f"{s['peak_rss_mb']['project process']:.0f} MB; allocator: {s['allocator']}")
    for v in ("exact float32", "default"):
        c = res[v]["cost_line"]
        print(f"cost line [{v}]: CPU time per image = fixed {c['fixed_cpu_s']:.1f} s + {c['prompts']:.0f} prompts x "
              f"{c['per_prompt_cpu_ms']:.1f} ms")
    print("ratio to naive (CPU time) at a fraction of sam2's prompts: | variant | 100% | 75% | 50% | 25% |")
    for v in ("exact float32", "default"):
        t = res[v]["prompt_fraction_ratio"]
        print(f"| {v} | " + " | ".join(f"{t[k]:.2f}" for k in ("100%", "75%", "50%", "25%")) + " |")


def _decoder_worker(conn, threads: int, batch: int, prompts: int, rounds: int) -> None:
    """sam2's ``MaskDecoder`` alone, as its generator calls it (``batch`` prompts per call,
    ``repeat_image``), in a process with glibc's default allocator; CPU ms per prompt per round."""
    sys.path.insert(0, str(REPO))
    import torch

    sam, *_ = _speed_models(threads)
    embed, high, sparse = _decoder_inputs(sam, prompts)
    pe = sam.sam_prompt_encoder
    out = []
    with torch.inference_mode():
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, *pe.image_embedding_size)
        for _ in range(rounds):
            c0 = time.process_time()
            for i in range(0, prompts, batch):
                sam.sam_mask_decoder(image_embeddings=embed, image_pe=pe.get_dense_pe(),
                                     sparse_prompt_embeddings=sparse[i:i + batch], dense_prompt_embeddings=dense,
                                     multimask_output=True, repeat_image=True, high_res_features=high)
            out.append(1000 * (time.process_time() - c0) / prompts)
    conn.send(out)


def _decoder_inputs(sam, prompts: int):
    """Seeded random image features of hiera-tiny's shapes and ``prompts`` single-point prompts."""
    import torch

    g = torch.Generator().manual_seed(12)
    c = sam.sam_mask_decoder.transformer_dim
    h, w = sam.sam_prompt_encoder.image_embedding_size
    embed = torch.randn(1, c, h, w, generator=g)
    high = [torch.randn(1, c // 8, 4 * h, 4 * w, generator=g), torch.randn(1, c // 4, 2 * h, 2 * w, generator=g)]
    pts = torch.rand(prompts, 1, 2, generator=g) * sam.image_size
    with torch.inference_mode():
        sparse, _ = sam.sam_prompt_encoder(points=(pts, torch.ones(prompts, 1, dtype=torch.int)), boxes=None, masks=None)
    return embed, high, sparse


def part_decoder(args) -> dict:
    """Decoder CPU ms per prompt (hiera-tiny, random weights, multimask): sam2's decoder at
    sam2's 64 prompts per call in a default-allocator worker, vs the shared-work decoder in
    float32 and in the default dtype at the fast generator's CPU batch, after the product's
    allocator settings; ``--rounds`` alternating rounds."""
    import multiprocessing as mp

    import torch

    from regionsearch.config import load_config
    from regionsearch.models.device import configure_allocator
    from regionsearch.segment.decoder import SharedWorkDecoder, resolve_dtype

    prompts, rounds = 64, args.rounds
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    worker = ctx.Process(target=_decoder_worker, args=(child, args.threads, 64, prompts, rounds), daemon=True)
    worker.start()
    sam2_ms = conn.recv()
    worker.join(timeout=60)
    configure_allocator()
    sam, *_ = _speed_models(args.threads)
    embed, high, sparse = _decoder_inputs(sam, prompts)
    batch = 4
    dtypes = {"exact float32": torch.float32, "default": resolve_dtype(load_config("default").segment.dtype, "cpu")}
    decs = {k: SharedWorkDecoder(sam, dt) for k, dt in dtypes.items()}
    compile_s = {}
    if "default + compile" in args.steps:
        # torch.compile at the fixed padded batch (the inductor cache lives in the user cache dir,
        # so a second process reuses the generated kernels: compile_s says which case this was)
        from regionsearch.segment.decoder import inductor_cache_dir

        cached = inductor_cache_dir().exists()
        dtypes["default + compile"] = dtypes["default"]
        decs["default + compile"] = SharedWorkDecoder(sam, dtypes["default"], compile_batch=batch)
    ours: dict[str, list[float]] = {k: [] for k in dtypes}
    with torch.inference_mode():
        ctxs = {k: d.prepare(embed, high) for k, d in decs.items()}
        for k, d in decs.items():  # warm-up (and compilation)
            t0, c0 = time.perf_counter(), time.process_time()
            d.decode(ctxs[k], sparse[:batch], None, True)
            if k == "default + compile":
                compile_s = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                             "inductor_cache_was_warm": cached, "batch": batch}
        for _ in range(rounds):
            for k, d in decs.items():
                c0 = time.process_time()
                for i in range(0, prompts, batch):
                    d.decode(ctxs[k], sparse[i:i + batch], None, True)
                ours[k].append(1000 * (time.process_time() - c0) / prompts)
    res = {"sam2 (64 per call, glibc default)": sam2_ms, **{f"{k} ({dtypes[k]}, {batch} per call)": v
                                                             for k, v in ours.items()}}
    best = {k: min(v) for k, v in res.items()}
    base = best["sam2 (64 per call, glibc default)"]
    return {"cpu_ms_per_prompt": res, "best_cpu_ms_per_prompt": best, "ratio_to_sam2": {k: base / v for k, v in best.items()},
            "prompts": prompts, "rounds": rounds, "threads": args.threads, "compile": compile_s}


def part_agreement(args) -> dict:
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from regionsearch.config import load_config
    from regionsearch.models.sam import backbone_feature_sizes, load_sam2
    from regionsearch.segment.fast_amg import FastAutomaticSegmenter
    from regionsearch.testing.shapes import make_scenes

    out = {}
    for preset in ("tiny-default", "tiny-preset"):
        over = {"segment": {"points_per_side": 32, "points_per_batch": 64}} if preset == "tiny-default" else {}
        cfg = load_config("tiny", over)
        sam = load_sam2(cfg.models.sam, "cpu")
        base = SAM2AutomaticMaskGenerator(sam, output_mode="coco_rle", **cfg.segment.amg_params())
        base.predictor._bb_feat_sizes = backbone_feature_sizes(sam)
        variants = {dt: {"dtype": dt} for dt in ("float32", cfg.segment.dtype, "bfloat16")}
        variants["bfloat16 + encoder bfloat16"] = {"dtype": "bfloat16", "encoder_dtype": "bfloat16"}
        ours = {dt: FastAutomaticSegmenter(sam, dataclasses.replace(cfg.segment, **over),
                                           coarse_to_fine=cfg.segment.coarse_to_fine, coarse_step=cfg.segment.coarse_step)
                for dt, over in variants.items()}
        rbs: list = []
        rfs: dict[str, list] = {dt: [] for dt in ours}
        tb, tf = 0.0, {dt: 0.0 for dt in ours}
        for scene in make_scenes(args.scenes, seed=5150):
            t = time.perf_counter(); rbs.append(base.generate(scene.image)); tb += time.perf_counter() - t
            for dt, seg in ours.items():
                t = time.perf_counter(); rfs[dt].append(seg.generate(scene.image)); tf[dt] += time.perf_counter() - t
        for dt in ours:
            fwd, rev = _agreement(rbs, rfs[dt])
            # "auto" is float32 on CPUs without native bfloat16: bfloat16 (the default on bf16 CPUs
            # and CUDA) is measured explicitly too, emulated there (same numbers, slower)
            name = "exact float32" if dt == "float32" else dt if dt.startswith("bfloat16") else f"default (dtype {dt})"
            out[f"{preset} {name}"] = {
                "points_per_side": cfg.segment.amg_params()["points_per_side"], "scenes": args.scenes,
                "baseline_masks": sum(map(len, rbs)), "project_masks": sum(map(len, rfs[dt])),
                "agreement": fwd, "reverse_agreement": rev, "segment_speedup": tb / tf[dt] if tf[dt] else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["speed", "agreement", "both", "decoder"], default="both",
                    help="decoder: the mask decoder alone (CPU ms per prompt), sam2's vs the shared-work decoder")
    ap.add_argument("--rounds", type=int, default=3, help="decoder part: alternating rounds")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--size", type=int, default=512, help="longer side of the benchmark photos")
    ap.add_argument("--scenes", type=int, default=12, help="held-out shapes scenes for the agreement part")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each pipeline (default 1: one core)")
    ap.add_argument("--malloc", choices=["project", "default"], default="project",
                    help="allocator of the project's process: the product's start-up settings (default) or glibc's")
    ap.add_argument("--skip-naive", action="store_true",
                    help="speed part: time the project's variants only (no ratios), e.g. next to a running full run")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--save", default="",
                    help="results name: figures go to benchmarks/results/NAME.json (default: index_throughput-PART)")
    ap.add_argument("--points-per-side", type=int, default=0,
                    help="smoke runs only: grid of both pipelines (default: sam2's default, 32)")
    ap.add_argument("--steps", default="",
                    help="extra project variants for the speed part, comma-separated, of: "
                         + ", ".join(v for v in SPEED_VARIANTS if v not in ("exact float32", "default")))
    args = ap.parse_args()
    args.steps = [x.strip() for x in args.steps.split(",") if x.strip()]
    unknown = [x for x in args.steps if x not in SPEED_VARIANTS]
    if unknown:
        ap.error(f"unknown --steps {', '.join(unknown)}; valid: {', '.join(SPEED_VARIANTS)}")
    res = {}
    if args.part in ("agreement", "both"):
        res["agreement"] = a = part_agreement(args)
        for k, v in a.items():
            print(f"agreement [{k}]: {v['agreement']:.3f} (reverse {v['reverse_agreement']:.3f}), "
                  f"{v['baseline_masks']} baseline masks, {v['scenes']} scenes, segment speedup {v['segment_speedup']:.2f}")
    if args.part == "decoder":
        res["decoder"] = d = part_decoder(args)
        for k, v in d["cpu_ms_per_prompt"].items():
            print(f"decoder {k}: CPU ms/prompt by round {[round(x, 1) for x in v]}, best {min(v):.1f}, "
                  f"ratio to sam2 {d['ratio_to_sam2'][k]:.2f}")
        if d["compile"]:
            c = d["compile"]
            print(f"torch.compile: first call {c['wall_s']:.1f} s wall, {c['cpu_s']:.1f} CPU s "
                  f"(inductor cache {'warm' if c['inductor_cache_was_warm'] else 'cold'}), batch {c['batch']}")
    if args.part in ("speed", "both"):
        res["speed"] = part_speed(args)
        print_speed(res["speed"])
    text = json.dumps(res, indent=2, default=float)
    if args.json:
        args.json.write_text(text)
    print(text)
    print(f"results: {save_results(args.save or f'index_throughput-{args.part}', json.loads(text))}")
    if "speed" in res and "naive" in res["speed"]["variants"]:  # scripts read these two lines: keep them last
        v = res["speed"]["variants"]
        # images/s by CPU time (process time, one torch thread): the machine is shared and loaded
        print(f"ratio exact/naive (images/s): {v['exact float32']['ratio_images_per_cpu_s']:.2f}")
        print(f"ratio default/naive (images/s): {v['default']['ratio_images_per_cpu_s']:.2f}")


if __name__ == "__main__":
    main()
