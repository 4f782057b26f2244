"""Scene latency (issue #16): relations for 100 objects, and the scene of an indexed image with
50 objects from the library, the CLI and the API.

* relations: ``measure`` + ``relations`` (regionsearch/scene/relations.py: crops, box pre-filters,
  pixel work only where a relation is possible) on 100 random blobs (discs, boxes, rings, unions
  of them) in a 1024 x 768 image, against the baseline in the same run: the direct full-frame
  computation (per pair: intersection, inside fraction against the hole-filled mask, minimum
  distance from a full-frame distance transform). Both give the same relations (checked).
* scene: a 1024 x 768 image with 50 painted shapes is indexed through ``DataDir.commit`` with
  their exact masks and tiny-CLIP embeddings of their crops (so the image has exactly 50 mask
  regions + the whole-image region). Timed: ``scene_of_indexed`` warm; ``GET
  /v1/images/{id}/scene`` through the ASGI app in-process (first call and warm); the CLI
  ``regionsearch --config tiny scene ID --json`` as a fresh process (interpreter + model load
  included, as a user sees it).

Run::

    python benchmarks/scene_latency.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

W, H = 1024, 768


def blobs(n: int, seed: int) -> list[np.ndarray]:
    """``n`` full-frame bool masks: discs, boxes, rings and unions, some nested."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = np.zeros((H, W), np.uint8)
        cx, cy = int(rng.integers(0, W)), int(rng.integers(0, H))
        r = int(rng.integers(8, 70))
        kind = i % 4
        if kind == 0:
            cv2.circle(m, (cx, cy), r, 1, -1)
        elif kind == 1:
            cv2.rectangle(m, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 1, -1)
        elif kind == 2:
            cv2.circle(m, (cx, cy), r, 1, -1)
            cv2.circle(m, (cx, cy), max(2, r // 2), 0, -1)
        else:
            cv2.circle(m, (cx, cy), r, 1, -1)
            cv2.circle(m, (cx + r, cy + r // 3), max(3, r // 2), 1, -1)
        out.append(m.astype(bool))
    return out


def baseline_relations(masks: list[np.ndarray]) -> set[tuple[int, str, int]]:
    """The direct full-frame computation of the same definitions (the baseline)."""
    import cv2

    from regionsearch.scene.relations import INSIDE_FRACTION, NEAR_FRACTION, SIDE_MARGIN

    n = len(masks)
    ys, xs = np.mgrid[0:H, 0:W]
    cent = [(xs[m].mean(), ys[m].mean()) for m in masks]
    boxes = []
    filled, dist = [], []
    for m in masks:
        rr, cc = np.nonzero(m)
        boxes.append((cc.min(), rr.min(), cc.max() + 1, rr.max() + 1))
        pad = np.zeros((H + 2, W + 2), np.uint8)
        pad[1:-1, 1:-1] = m
        cv2.floodFill(pad, np.zeros((H + 4, W + 4), np.uint8), (0, 0), 2)
        filled.append(pad[1:-1, 1:-1] != 2)
        dist.append(cv2.distanceTransform((~m).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE))
    r = NEAR_FRACTION * max(W, H)
    inside = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(n):
            if i != j:
                inside[i, j] = (masks[i] & filled[j]).sum() >= INSIDE_FRACTION * masks[i].sum()
    out = set()
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if cent[i][0] < cent[j][0] - SIDE_MARGIN * W:
                out |= {(i, "left_of", j), (j, "right_of", i)}
            if cent[i][1] < cent[j][1] - SIDE_MARGIN * H:
                out |= {(i, "above", j), (j, "below", i)}
            either = inside[i, j] or inside[j, i]
            if inside[i, j]:
                out |= {(i, "inside", j), (j, "contains", i)}
            if not either and float(dist[i][masks[j]].min()) <= r:
                out.add((i, "near", j))
            a, b = boxes[i], boxes[j]
            if not either and a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                out.add((i, "overlaps", j))
    return out


def time_relations(repeats: int) -> dict:
    from regionsearch.scene.relations import ObjectMask, measure, relation_array, relations

    masks = blobs(100, 0)
    objs = [ObjectMask.from_full(m) for m in masks]  # how objects travel (crops), not timed
    times, as_list, cpu = [], [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        relation_array(measure(objs, W, H))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        rels = relations(measure(objs, W, H))
        as_list.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    base = baseline_relations(masks)
    base_s = time.perf_counter() - t0
    ours = {(r.subject, r.predicate, r.object) for r in rels}
    if ours != base:
        raise SystemExit(f"relations differ from the baseline: {len(ours ^ base)} differences")
    med = statistics.median(times)
    print(f"relations for 100 objects ({W}x{H}, measure + relation_array): median {1000 * med:.1f} ms "
          f"(min {1000 * min(times):.1f}, {repeats} runs; CPU time of the process: median "
          f"{1000 * statistics.median(cpu):.1f} ms, min {1000 * min(cpu):.1f}), {len(ours)} relations; as a list of Relation tuples "
          f"median {1000 * statistics.median(as_list):.1f} ms; baseline (full frame) {1000 * base_s:.0f} ms; "
          f"ratio {base_s / med:.0f}x faster; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return {"relations_100_objects_ms_median": round(1000 * med, 2), "relations_100_objects_ms_min": round(1000 * min(times), 2),
            "relations_as_list_ms_median": round(1000 * statistics.median(as_list), 2),
            "relations_100_objects_cpu_ms_median": round(1000 * statistics.median(cpu), 2),
            "relations_100_objects_cpu_ms_min": round(1000 * min(cpu), 2),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "relations_count": len(ours), "baseline_full_frame_ms": round(1000 * base_s, 1),
            "speedup_vs_baseline": round(base_s / med, 1), "image": [W, H]}


def build_scene_dir(root: Path) -> tuple[int, Path]:
    """A data dir whose one image has exactly 50 mask regions (+ the whole image)."""
    import cv2
    from PIL import Image

    from regionsearch.config import load_config
    from regionsearch.datadir import DataDir, ImageResult
    from regionsearch.imageio import path_to_db, sha256_bytes
    from regionsearch.masks import encode_rle, mask_to_bbox
    from regionsearch.pipeline import Pipeline
    from regionsearch.testing.shapes import PALETTE
    from regionsearch.types import Region

    cfg = load_config("tiny")
    pipe = Pipeline(cfg)
    rng = np.random.default_rng(5)
    img = np.full((H, W, 3), 128, np.uint8)
    masks = []
    cols = list(PALETTE.values())
    for i in range(50):  # a 10 x 5 grid of shapes with jitter, some overlapping
        m = np.zeros((H, W), np.uint8)
        cx = int(60 + (i % 10) * 100 + rng.integers(-20, 20))
        cy = int(70 + (i // 10) * 150 + rng.integers(-30, 30))
        r = int(rng.integers(25, 55))
        if i % 2:
            cv2.circle(m, (cx, cy), r, 1, -1)
        else:
            cv2.rectangle(m, (cx - r, cy - r), (cx + r, cy + r), 1, -1)
        m = m.astype(bool)
        img[m] = cols[i % len(cols)]
        masks.append(m)
    vis = []
    covered = np.zeros((H, W), bool)
    for m in reversed(masks):
        vis.append(m & ~covered)
        covered |= m
    vis = vis[::-1]
    path = root / "fifty.png"
    Image.fromarray(img).save(path)
    regions = [Region(bbox=mask_to_bbox(m), area=int(m.sum()), rle=encode_rle(m), predicted_iou=0.9,
                      stability_score=0.95) for m in vis]
    regions.append(Region(bbox=(0.0, 0.0, float(W), float(H)), area=W * H, rle=encode_rle(np.ones((H, W), bool)),
                          kind="whole"))
    emb = pipe.embedder.embed_images(pipe.crops(img, regions))
    with DataDir.open(root / "data", manifest=pipe.manifest()) as dd:
        dd.commit([ImageResult(path=path_to_db(str(path.resolve())), sha256=sha256_bytes(path.read_bytes()), width=W,
                               height=H, pipeline_key=cfg.pipeline_key(), regions=regions, embeddings=emb)])
        dd.save(force=True)
        rec = dd.image_by_path(path_to_db(str(path.resolve())))
    return rec.id, root / "data"


def time_scene(repeats: int) -> dict:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings
    from regionsearch.config import load_config
    from regionsearch.engine import Engine
    from regionsearch.scene.scene import labeler_for, scene_of_indexed

    tmp = Path(tempfile.mkdtemp(prefix="scene-latency-"))
    image_id, data = build_scene_dir(tmp)
    with Engine(load_config("tiny"), data, create=False) as eng:
        lab = labeler_for(eng.pipeline.embedder)
        t0 = time.perf_counter()
        doc = scene_of_indexed(eng.datadir, image_id, lab, eng.config.scene).to_json()
        first_lib = time.perf_counter() - t0
        lib = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            scene_of_indexed(eng.datadir, image_id, lab, eng.config.scene)
            lib.append(time.perf_counter() - t0)
    n_obj = len(doc["objects"])
    app = create_app(Settings(config="tiny", data_dir=str(data), reload_interval_s=3600.0))
    api = []
    with TestClient(app) as client:
        t0 = time.perf_counter()
        r = client.get(f"/v1/images/{image_id}/scene")
        first_api = time.perf_counter() - t0
        if r.status_code != 200:
            raise SystemExit(f"API: {r.status_code} {r.text}")
        for _ in range(repeats):
            t0 = time.perf_counter()
            client.get(f"/v1/images/{image_id}/scene")
            api.append(time.perf_counter() - t0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "regionsearch.cli", "--config", "tiny", "scene", str(image_id),
                              "--json", "--data-dir", str(data)], capture_output=True, text=True, env=env)
        cli.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise SystemExit(f"CLI failed: {out.stderr}")
    print(f"scene of an indexed image with {n_obj} objects, {len(doc['relations'])} relations ({W}x{H}):")
    print(f"  library warm median {1000 * statistics.median(lib):.1f} ms (first call, vocabulary embedded: "
          f"{1000 * first_lib:.0f} ms)")
    print(f"  API GET /v1/images/{{id}}/scene warm median {1000 * statistics.median(api):.1f} ms (first {1000 * first_api:.0f} ms)")
    print(f"  CLI `regionsearch --config tiny scene ID --json` (fresh process) median {statistics.median(cli):.2f} s")
    return {"objects": n_obj, "relations": len(doc["relations"]),
            "library_warm_ms_median": round(1000 * statistics.median(lib), 1), "library_first_ms": round(1000 * first_lib, 1),
            "api_warm_ms_median": round(1000 * statistics.median(api), 1), "api_first_ms": round(1000 * first_api, 1),
            "cli_process_s_median": round(statistics.median(cli), 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--skip-scene", action="store_true", help="relations only")
    args = ap.parse_args(argv)
    from _results import save_results

    figs = {"relations": time_relations(args.repeats)}
    if not args.skip_scene:
        figs["scene"] = time_scene(args.repeats)
    print(f"wrote {save_results('scene_latency', figs)}")


if __name__ == "__main__":
    main()
