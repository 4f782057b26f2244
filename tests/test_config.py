from __future__ import annotations

import pytest

from regionsearch.config import AMG_PRESETS, load_config, list_presets
from regionsearch.errors import ConfigError, UnknownNameError


def test_presets_load_and_differ():
    assert {"default", "tiny", "gpu"} <= set(list_presets())
    default, tiny, gpu = load_config("default"), load_config("tiny"), load_config("gpu")
    assert default.models.sam.model == "facebook/sam2.1-hiera-tiny"
    assert default.models.clip.model == "ViT-B-32"
    assert tiny.models.sam.checkpoint.startswith("tiny:")
    assert gpu.models.sam.model == "facebook/sam2.1-hiera-base-plus"  # extends default
    assert gpu.embed.crop == default.embed.crop
    assert len({default.pipeline_key(), tiny.pipeline_key(), gpu.pipeline_key()}) == 3


def test_amg_params_take_preset_then_overrides():
    cfg = load_config("default", {"segment": {"preset": "dense", "pred_iou_thresh": 0.5}})
    params = cfg.segment.amg_params()
    assert params["pred_iou_thresh"] == 0.5
    assert params["points_per_side"] == AMG_PRESETS["dense"]["points_per_side"]
    assert set(params) == set(AMG_PRESETS["default"])


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown key.*pointz_per_side.*valid keys"):
        load_config("default", {"segment": {"pointz_per_side": 3}})


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match="segment.max_regions must be an integer"):
        load_config("default", {"segment": {"max_regions": "many"}})


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="tiny"):
        load_config("nonexistent-preset")


def test_unknown_crop_strategy():
    with pytest.raises(UnknownNameError, match="blur"):
        load_config("default", {"embed": {"crop": "fancy"}})


def test_unknown_text_dtype_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="bfloat16"):
        load_config("default", {"search": {"text_dtype": "int4"}})


def test_yaml_file_and_env(tmp_path, monkeypatch):
    f = tmp_path / "mine.yaml"
    f.write_text("extends: tiny\nsegment:\n  max_regions: 7\n")
    cfg = load_config(str(f))
    assert cfg.segment.max_regions == 7 and cfg.models.sam.checkpoint.startswith("tiny:")
    monkeypatch.setenv("REGIONSEARCH_DEVICE", "cpu")
    assert load_config("default").device == "cpu"
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(bad))


def test_video_pipeline_key_follows_video_settings_and_leaves_the_image_key_alone():
    import dataclasses

    from regionsearch.config import load_config

    cfg = load_config("tiny")
    other = dataclasses.replace(cfg, video=dataclasses.replace(cfg.video, sample_fps=4.0))
    assert other.pipeline_key() == cfg.pipeline_key()
    assert other.video_pipeline_key() != cfg.video_pipeline_key() != cfg.pipeline_key()
    same = dataclasses.replace(cfg, video=dataclasses.replace(cfg.video, max_pixels=1000))
    assert same.video_pipeline_key() == cfg.video_pipeline_key()  # limits do not change tracks
    crop = dataclasses.replace(cfg, embed=dataclasses.replace(cfg.embed, crop="box"))
    assert crop.video_pipeline_key() != cfg.video_pipeline_key()
