"""schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.api.schemathesis_hooks``): what a JSON schema
cannot state, taught to the generator for *positive* cases only (``/v1/segment/video``: the
upload is a real 2-frame mp4, frames inside it and its range, a mask of its size).

The served schema states every limit it can (lengths, ranges, item counts, prompt groups). A
multipart ``prompt`` part's text is "not blank" in words (see ``api/openapi.py``), so valid cases
get a non-blank text here. Three rules depend on the data and stay outside it: an uploaded file must decode as an image, points
must lie inside the image,, and a box must have ``x1 > x0``, ``y1 > y0`` and overlap the image. A
case generated as valid is made to satisfy them here (the file replaced by a real 64x64 PNG, points and
boxes moved inside a 64x64 area, which every image of the test data dir contains); negative cases
are left alone, so schemathesis still checks that invalid data is rejected.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import schemathesis
from PIL import Image

from regionsearch.types import JSON_SCHEMA_SPACE

SIDE = 64  # the upload below is SIDE x SIDE; the indexed test images are larger


def _png() -> bytes:
    from regionsearch.testing.shapes import make_scene

    buf = io.BytesIO()
    Image.fromarray(make_scene(11, size=SIDE).image).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()


def _mp4() -> bytes:
    import tempfile
    from pathlib import Path

    from regionsearch.testing.clips import clip_spec, write_mp4

    with tempfile.TemporaryDirectory() as tmp:
        return write_mp4(clip_spec(11, "slow", n_frames=VIDEO_FRAMES, size=SIDE), Path(tmp) / "v.mp4").read_bytes()


VIDEO_FRAMES = 2  # the upload below: a SIDE x SIDE moving-shapes clip of this many frames (few: each costs model work)
MP4 = _mp4()


def _fix_video_prompt(prompt: dict) -> None:
    """Frames inside the clip and its range, geometry inside it, a mask of its size."""
    from regionsearch.masks import encode_rle

    _fix_prompt(prompt)
    if isinstance(prompt.get("frame"), int):
        prompt["frame"] = prompt["frame"] % VIDEO_FRAMES
    k = prompt.get("frame", 0) if isinstance(prompt.get("frame"), int) else 0
    if isinstance(prompt.get("frame_start"), int):
        prompt["frame_start"] = min(prompt["frame_start"], k)
    if isinstance(prompt.get("frame_end"), int):
        prompt["frame_end"] = max(prompt["frame_end"], k)
    if isinstance(prompt.get("mask"), dict):
        for name in ("points", "labels", "box"):  # a mask prompt goes alone (stated in words)
            prompt.pop(name, None)
        m = np.zeros((SIDE, SIDE), bool)
        m[20:40, 24:44] = True
        prompt["mask"] = encode_rle(m)


def _inside(v: Any) -> float:
    return float(np.clip(abs(float(v)), 0, SIDE - 2))


def _fix_box(box: list) -> list:
    x0, x1 = sorted((_inside(box[0]), _inside(box[2])))
    y0, y1 = sorted((_inside(box[1]), _inside(box[3])))
    return [x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)]


def _fix_prompt(prompt: dict) -> None:
    if "labels" in prompt and not prompt.get("points"):
        del prompt["labels"]
    if isinstance(prompt.get("points"), list):
        prompt["points"] = [[_inside(x), _inside(y)] for x, y in prompt["points"]]
        labels = prompt.get("labels") or [1]
        prompt["labels"] = [labels[i % len(labels)] for i in range(len(prompt["points"]))]
    box = prompt.get("box")
    if isinstance(box, list) and box and isinstance(box[0], list) and prompt.get("points"):
        box = box[0]  # the schema's dependentSchemas: points go with one box at most
    if isinstance(box, list) and box:
        prompt["box"] = [_fix_box(b) for b in box] if isinstance(box[0], list) else _fix_box(box)


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    body = case.body
    if "file" in body:
        # also replaces schemathesis' 1x1 samples, too small for the geometry below
        body["file"] = MP4 if case.operation.path == "/v1/segment/video" else PNG
    if case.operation.path == "/v1/segment/video":
        _fix_video_prompt(body.get("prompt", body) if isinstance(body.get("prompt"), dict) else body)
    if case.operation.path in ("/v1/segment",):
        _fix_prompt(body.get("prompt", body) if isinstance(body.get("prompt"), dict) else body)
    prompt = body.get("prompt")
    if case.operation.path == "/v1/segment/text" and isinstance(prompt, dict) and isinstance(prompt.get("text"), str):
        if not prompt["text"].strip(JSON_SCHEMA_SPACE):
            prompt["text"] = "red circle"  # the multipart part's text states "not blank" in words only
    if case.operation.path == "/v1/search/image" and isinstance(body.get("box"), str):
        body["box"] = ",".join(f"{v:g}" for v in _fix_box([float(v) for v in body["box"].split(",")]))
    return case
