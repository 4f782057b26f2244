"""Model loaders: the tiny checkpoints go through the same code paths as real ones (local
files, hub ids resolved from a local Hugging Face cache in offline mode), and every error
message a user can meet is checked."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from regionsearch.config import ClipConfig, SamConfig
from regionsearch.errors import (
    CheckpointNotFoundError,
    ConfigError,
    HubUnreachableError,
    UnknownNameError,
    WeightsMismatchError,
)
from regionsearch.models import registry
from regionsearch.models.clip import load_clip
from regionsearch.models.device import resolve_device
from regionsearch.models.sam import (
    backbone_feature_sizes,
    build_sam2_model,
    load_sam2,
    make_image_predictor,
    resolve_sam_source,
)
from regionsearch.testing.hfcache import populate_hf_cache
from regionsearch.testing.tiny import CLIP_DIR, CLIP_WEIGHTS, SAM_CHECKPOINT, SAM_CONFIG, tiny_path


@pytest.fixture(autouse=True)
def _fresh_registry():
    registry.clear()
    yield
    registry.clear()


def _state_equal(a: torch.nn.Module, b: dict) -> bool:
    sa = a.state_dict()
    return set(sa) == set(b) and all(torch.equal(sa[k].float(), b[k].float()) for k in sa)


def _ckpt_state(path) -> dict:
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state["model"] if "model" in state else state


def test_tiny_sam_loads_from_local_checkpoint(tiny_config):
    model = load_sam2(tiny_config.models.sam, "cpu")
    assert type(model).__name__ == "SAM2Base"
    assert model.image_size == 256
    assert _state_equal(model, _ckpt_state(tiny_path(SAM_CHECKPOINT)))


def test_image_predictor_handles_non_1024_models(tiny_config):
    model = load_sam2(tiny_config.models.sam, "cpu")
    assert backbone_feature_sizes(model) == [(64, 64), (32, 32), (16, 16)]
    predictor = make_image_predictor(model)
    image = np.random.default_rng(0).integers(0, 255, (120, 170, 3), dtype=np.uint8)
    predictor.set_image(image)
    masks, scores, low_res = predictor.predict(point_coords=np.array([[60.0, 40.0]]),
                                               point_labels=np.array([1]), multimask_output=True)
    assert masks.shape == (3, 120, 170)
    assert scores.shape == (3,)
    assert low_res.shape == (3, 64, 64)


def test_sam_hub_id_resolves_from_local_hf_cache(tmp_path):
    populate_hf_cache(tmp_path, "facebook/sam2.1-hiera-tiny", {"sam2.1_hiera_tiny.pt": tiny_path(SAM_CHECKPOINT)})
    cfg = SamConfig(model="facebook/sam2.1-hiera-tiny", config=f"tiny:{SAM_CONFIG}", cache_dir=str(tmp_path))
    src = resolve_sam_source(cfg)
    assert src.checkpoint is not None and str(tmp_path) in str(src.checkpoint)
    assert src.checkpoint.name == "sam2.1_hiera_tiny.pt"
    model = load_sam2(cfg, "cpu")
    assert _state_equal(model, _ckpt_state(tiny_path(SAM_CHECKPOINT)))


def test_sam_hub_id_uses_the_official_config_by_default(tmp_path):
    populate_hf_cache(tmp_path, "facebook/sam2.1-hiera-tiny", {"sam2.1_hiera_tiny.pt": tiny_path(SAM_CHECKPOINT)})
    src = resolve_sam_source(SamConfig(model="facebook/sam2.1-hiera-tiny", cache_dir=str(tmp_path)))
    assert src.config.name == "sam2.1_hiera_t.yaml"
    assert src.config.is_file()


def test_sam_weights_that_do_not_fit_the_config(tmp_path):
    # tiny weights under the official hiera-tiny name: the real config does not fit them
    populate_hf_cache(tmp_path, "facebook/sam2.1-hiera-tiny", {"sam2.1_hiera_tiny.pt": tiny_path(SAM_CHECKPOINT)})
    with pytest.raises(WeightsMismatchError, match="does not fit config .*sam2.1_hiera_t.yaml"):
        load_sam2(SamConfig(model="facebook/sam2.1-hiera-tiny", cache_dir=str(tmp_path)), "cpu")


def test_sam_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "sam2.1_hiera_tiny.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatchError, match="not a readable PyTorch checkpoint"):
        build_sam2_model(tiny_path(SAM_CONFIG), bad)


def test_sam_hub_unreachable_suggests_local_checkpoint(tmp_path):
    with pytest.raises(HubUnreachableError, match="--sam-checkpoint"):
        resolve_sam_source(SamConfig(model="facebook/sam2.1-hiera-small", cache_dir=str(tmp_path)))


def test_sam_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        resolve_sam_source(SamConfig(checkpoint=str(tmp_path / "nope.pt"), config=f"tiny:{SAM_CONFIG}"))


def test_sam_unknown_model_lists_valid_ids():
    with pytest.raises(UnknownNameError) as info:
        resolve_sam_source(SamConfig(model="facebook/sam9-huge"))
    assert "facebook/sam2.1-hiera-large" in str(info.value)
    assert "facebook/sam2.1-hiera-tiny" in str(info.value)


def test_sam_checkpoint_without_config_is_explained(tmp_path):
    ckpt = tmp_path / "mystery.pt"
    ckpt.write_bytes(b"x")
    with pytest.raises(ConfigError, match="--sam-config"):
        resolve_sam_source(SamConfig(model=None, checkpoint=str(ckpt)))


def test_sam_config_not_found():
    with pytest.raises(ConfigError, match="neither a file nor a config of the sam2 package"):
        resolve_sam_source(SamConfig(model=None, checkpoint=f"tiny:{SAM_CHECKPOINT}", config="nope.yaml"))


def test_tiny_clip_loads_through_local_dir(tiny_config):
    bundle = load_clip(tiny_config.models.clip, "cpu")
    assert bundle.image_size > 0 and bundle.dim > 0
    with torch.inference_mode():
        tokens = bundle.tokenizer(["red circle"])
        vec = bundle.model.encode_text(tokens)
    assert vec.shape == (1, bundle.dim)
    from safetensors.torch import load_file

    assert _state_equal(bundle.model, load_file(str(tiny_path(CLIP_DIR) / CLIP_WEIGHTS)))


def test_clip_hf_hub_id_resolves_from_local_hf_cache(tmp_path):
    folder = tiny_path(CLIP_DIR)
    populate_hf_cache(tmp_path, "regionsearch/tiny-clip", {
        "open_clip_config.json": folder / "open_clip_config.json",
        CLIP_WEIGHTS: folder / CLIP_WEIGHTS,
    })
    bundle = load_clip(ClipConfig(model="hf-hub:regionsearch/tiny-clip", pretrained=None, cache_dir=str(tmp_path)), "cpu")
    from safetensors.torch import load_file

    assert _state_equal(bundle.model, load_file(str(folder / CLIP_WEIGHTS)))


def test_clip_local_weights_file_for_builtin_architecture(tmp_path):
    import open_clip

    model = open_clip.create_model("RN50", pretrained=None)
    path = tmp_path / "rn50.pt"
    torch.save(model.state_dict(), path)
    bundle = load_clip(ClipConfig(model="RN50", pretrained=str(path)), "cpu")
    assert _state_equal(bundle.model, torch.load(path, weights_only=True))
    assert bundle.dim == 1024


def test_clip_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        load_clip(ClipConfig(model="ViT-Q-99", pretrained=None), "cpu")
    assert "ViT-B-32" in str(info.value)


def test_clip_unknown_tag_lists_valid_tags():
    with pytest.raises(UnknownNameError) as info:
        load_clip(ClipConfig(model="ViT-B-32", pretrained="nonsense_tag"), "cpu")
    assert "datacomp_xl_s13b_b90k" in str(info.value) and "laion2b_s34b_b79k" in str(info.value)


def test_clip_missing_weights_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_clip(ClipConfig(model="ViT-B-32", pretrained=str(tmp_path / "missing.pt")), "cpu")


def test_clip_missing_local_dir(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="open_clip_config.json"):
        load_clip(ClipConfig(model=f"local-dir:{tmp_path}", pretrained=None), "cpu")


def test_clip_hub_unreachable_suggests_local_file(tmp_path):
    with pytest.raises(HubUnreachableError, match="--clip-pretrained"):
        load_clip(ClipConfig(model="RN50", pretrained="openai", cache_dir=str(tmp_path)), "cpu")


def test_clip_weights_that_do_not_fit(tmp_path):
    import open_clip

    path = tmp_path / "rn50.pt"
    torch.save(open_clip.create_model("RN50", pretrained=None).state_dict(), path)
    with pytest.raises(WeightsMismatchError, match="do not fit model RN101"):
        load_clip(ClipConfig(model="RN101", pretrained=str(path)), "cpu")


def test_models_load_once_per_process_and_threads_share_them(tiny_config):
    results: list[object] = []

    def worker() -> None:
        results.append(load_sam2(tiny_config.models.sam, "cpu"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is results[0] for r in results)
    other = replace(tiny_config.models.sam, cache_dir="/elsewhere")
    assert load_sam2(other, "cpu") is not results[0]


def test_device_choice():
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
        assert resolve_device("auto") == "cpu" or torch.backends.mps.is_available()
