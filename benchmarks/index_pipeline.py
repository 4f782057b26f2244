"""Index scikit-image's sample photos and print per-stage times and peak memory.

Two settings, each in its own subprocess (so peak RSS is per setting):

* ``tiny``: ``--config tiny`` (the project's trained tiny SAM 2.1 + CLIP), as a user runs it;
* ``real``: the real architectures, SAM 2.1 hiera-tiny (1024 px) + CLIP ViT-B-32, with random
  weights (no weights can be downloaded here), AMG thresholds relaxed so that regions survive.
  The figures are about time and memory, not quality.

    python benchmarks/index_pipeline.py [--setting both|tiny|real] [--images N] [--preset fast]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import save_results  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_setting(setting: str, n_images: int, preset: str) -> dict:
    import torch

    import indexer  # noqa: F401  (registers the indexing runners Engine.index uses)
    from regionsearch.config import load_config
    from regionsearch.demo import write_sample_photos
    from regionsearch.engine import Engine
    from regionsearch.pipeline import Pipeline

    work = Path(tempfile.mkdtemp(prefix=f"rs-bench-{setting}-"))
    photos = write_sample_photos(work / "photos")[:n_images]
    t_load = time.perf_counter()
    if setting == "tiny":
        cfg = load_config("tiny", {"segment": {"preset": preset}})
        pipeline = Pipeline(cfg)
        pipeline.segmenter, pipeline.embedder  # load models now, timed separately
    else:
        import open_clip
        import sam2

        from regionsearch.embed.clip import ClipEmbedder
        from regionsearch.models.clip import ClipBundle
        from regionsearch.models.sam import build_sam2_model
        from regionsearch.segment.fast_amg import FastAutomaticSegmenter

        cfg = load_config("default", {"device": "cpu", "segment": {
            "preset": preset, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
            "stability_score_offset": 0.0, "box_nms_thresh": 0.5}})
        torch.manual_seed(0)
        sam_cfg = Path(sam2.__file__).parent / "configs/sam2.1/sam2.1_hiera_t.yaml"
        sam = build_sam2_model(sam_cfg, None, "cpu")
        clip, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
        clip.eval()
        tok = open_clip.get_tokenizer("ViT-B-32")
        bundle = ClipBundle(model=clip, tokenizer=tok, preprocess=preprocess, name="ViT-B-32 (random)",
                            pretrained=None, dim=512, image_size=224, mean=open_clip.OPENAI_DATASET_MEAN,
                            std=open_clip.OPENAI_DATASET_STD, context_length=77, device="cpu")
        pipeline = Pipeline(cfg)
        # the product's generator, as Pipeline builds it for this config
        pipeline._segmenter = FastAutomaticSegmenter(sam, cfg.segment, cfg.embed.min_region_area,
                                                     coarse_to_fine=cfg.segment.coarse_to_fine,
                                                     coarse_step=cfg.segment.coarse_step)
        pipeline._embedder = ClipEmbedder(bundle, cfg.embed.batch_size)
    load_s = time.perf_counter() - t_load
    with Engine(cfg, work / "data") as eng:
        eng.pipeline = pipeline
        report = eng.index([str(p) for p in photos], progress=False)
    out = report.as_dict()
    out.pop("failures", None)
    out.update(setting=setting, preset=preset, images=len(photos), model_load_s=round(load_s, 2),
               peak_rss_mb=round(_peak_rss_mb(), 1), regions_per_image=round(report.regions / max(1, report.indexed), 1),
               torch_threads=torch.get_num_threads())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", choices=["both", "tiny", "real"], default="both")
    ap.add_argument("--images", type=int, default=6, help="how many sample photos (max 6)")
    ap.add_argument("--preset", default="fast", help="AMG preset")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_setting(args.setting, args.images, args.preset)))
        return
    settings = ["tiny", "real"] if args.setting == "both" else [args.setting]
    rows = []
    for s in settings:
        proc = subprocess.run([sys.executable, __file__, "--child", "--setting", s, "--images", str(args.images),
                               "--preset", args.preset], capture_output=True, text=True,
                              env=dict(os.environ, HF_HUB_OFFLINE="1"))
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"setting {s} failed")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for r in rows:
        st = r["stage_seconds"]
        print(f"[{r['setting']}] {r['images']} images, preset {r['preset']}: {r['seconds']:.1f} s "
              f"({r['images_per_s']:.3f} images/s), {r['regions']} regions ({r['regions_per_image']}/image), "
              f"model load {r['model_load_s']} s, peak RSS {r['peak_rss_mb']} MB")
        print("    stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in st.items()))
    print(json.dumps(rows, indent=2))
    print(f"results: {save_results(f'index_pipeline-{args.setting}-{args.images}', {'runs': rows})}")


if __name__ == "__main__":
    main()
