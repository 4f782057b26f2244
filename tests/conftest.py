"""Shared fixtures: offline Hugging Face hub, the tiny preset, a fresh model cache."""

from __future__ import annotations

import os

import pytest

import indexer  # noqa: F401  (the test suite composes the library like the CLI: registers the indexing runners)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the network: the hub client runs in offline mode."""
    try:
        import huggingface_hub.constants as hf_constants
    except ImportError:  # pragma: no cover
        return
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture
def tiny_config():
    from regionsearch.config import load_config

    return load_config("tiny")
