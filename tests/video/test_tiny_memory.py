"""The tiny SAM 2.1's memory dimensions fit its 64-wide model and its memory path is trained
(``regionsearch/testing/_train_memory.py``): the image path is bit-identical to the one before
either change, and sam2's own video predictor runs on it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
#: sha256 over (name, bytes) of every tensor the memory-path training leaves frozen
#: (``_train_memory.is_trainable`` false), sorted by name, of the checkpoint *before* the memory
#: path was trained; the same tensors were checked unchanged by the memory-dimension refit
#: (its hash over everything outside the memory encoder: 7e9d6a26...d2208)
IMAGE_PATH_SHA256 = "73a2d4b793267a23e9271eaa0073296973c55b7435d632f9eae6d77dc6ac0530"


@pytest.fixture(scope="module")
def tiny_sam():
    from regionsearch.models.sam import build_sam2_model
    from regionsearch.testing.tiny import SAM_CHECKPOINT, SAM_CONFIG, WEIGHTS_DIR

    return build_sam2_model(WEIGHTS_DIR / SAM_CONFIG, WEIGHTS_DIR / SAM_CHECKPOINT, "cpu")


def test_checkpoint_image_path_tensors_unchanged():
    import torch

    from regionsearch.testing._train_memory import is_trainable
    from regionsearch.testing.tiny import SAM_CHECKPOINT, WEIGHTS_DIR

    state = torch.load(WEIGHTS_DIR / SAM_CHECKPOINT, map_location="cpu", weights_only=True)["model"]
    h = hashlib.sha256()
    frozen = [key for key in sorted(state) if not is_trainable(key)]
    # the image path: encoder, no-memory embedding, prompt encoder, mask decoder (its object-score
    # token included; only the MLP head reading that token's output is trained)
    assert any(k.startswith("image_encoder.") for k in frozen) and "no_mem_embed" in frozen
    assert "sam_mask_decoder.obj_score_token.weight" in frozen
    assert not any(k.startswith(("memory_attention.", "memory_encoder.")) for k in frozen)
    for key in frozen:
        h.update(key.encode())
        h.update(state[key].numpy().tobytes())
    assert h.hexdigest() == IMAGE_PATH_SHA256


def test_image_path_outputs_same_as_before_the_fix(tiny_sam, tiny_config):
    """Low-res logits of 3 clicks and the automatic masks on a fixed scene, recorded with the
    checkpoint and config before the memory dimensions were fixed."""
    import torch

    from regionsearch.models.sam import make_image_predictor
    from regionsearch.segment.amg import AutomaticSegmenter
    from regionsearch.testing.shapes import make_scene

    ref = np.load(DATA / "tiny_sam_image_path.npz")
    scene = make_scene(4242)
    pred = make_image_predictor(tiny_sam)
    logits, scores = [], []
    with torch.inference_mode():
        pred.set_image(scene.image)
        for m in scene.masks[:3]:
            ys, xs = np.nonzero(m)
            i = len(ys) // 2
            _, s, low = pred.predict(point_coords=np.array([[xs[i], ys[i]]], np.float32),
                                     point_labels=np.array([1]), multimask_output=True)
            logits.append(low)
            scores.append(s)
    logits = np.stack(logits).astype(np.float32)
    np.testing.assert_allclose(logits, ref["low_res_logits"], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(logits > 0, ref["low_res_logits"] > 0)
    np.testing.assert_allclose(np.stack(scores), ref["scores"], rtol=0, atol=1e-5)
    regions = AutomaticSegmenter(tiny_sam, tiny_config.segment).segment(scene.image)
    assert [r.rle for r in regions] == json.loads((DATA / "tiny_sam_amg_rles.json").read_text())


def test_sam2_video_predictor_runs_on_the_tiny_model(tmp_path):
    """sam2's SAM2VideoPredictor (memory encoder, memory attention, object pointers) runs end to
    end on the tiny config: before the fix its first memory-encoder call raised a shape error."""
    import torch
    from PIL import Image

    from regionsearch.models.sam import build_sam2_model
    from regionsearch.testing.clips import make_clip
    from regionsearch.testing.tiny import SAM_CHECKPOINT, SAM_CONFIG, WEIGHTS_DIR

    clip = make_clip(7, "slow", n_frames=4)
    for i, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(tmp_path / f"{i}.jpg", quality=95)
    predictor = build_sam2_model(WEIGHTS_DIR / SAM_CONFIG, WEIGHTS_DIR / SAM_CHECKPOINT, "cpu",
                                 overrides={"_target_": "sam2.sam2_video_predictor.SAM2VideoPredictor"})
    with torch.inference_mode():
        state = predictor.init_state(str(tmp_path))
        for obj_id, mask in enumerate(clip.masks[0]):
            predictor.add_new_mask(state, frame_idx=0, obj_id=obj_id, mask=mask)
        outputs = {f: (ids, logits) for f, ids, logits in predictor.propagate_in_video(state)}
    assert sorted(outputs) == [0, 1, 2, 3]
    for ids, logits in outputs.values():
        assert list(ids) == list(range(len(clip.masks[0])))
        assert tuple(logits.shape) == (len(ids), 1, 256, 256)
        assert torch.isfinite(logits).all()
