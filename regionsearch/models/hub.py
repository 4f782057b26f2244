"""Hugging Face hub downloads with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointNotFoundError, HubUnreachableError, MissingDependencyError


def hub_download(repo_id: str, filename: str, cache_dir: str | None, what: str, local_hint: str) -> Path:
    """Download (or find in the local cache) ``filename`` of ``repo_id``.

    Honours ``HF_HUB_OFFLINE`` and ``HF_HOME``/``cache_dir`` like every Hugging Face tool.
    """
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a core dependency
        raise MissingDependencyError("huggingface_hub", f"downloading {what}") from exc
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, cache_dir=cache_dir))
    except LocalEntryNotFoundError as exc:
        raise HubUnreachableError(
            f"{what} ({repo_id}/{filename}) is not in the local cache and the Hugging Face hub "
            f"cannot be reached (offline?); download it on a connected machine or {local_hint}"
        ) from exc
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise CheckpointNotFoundError(
            f"the Hugging Face hub has no {filename} in {repo_id}; check the model id or {local_hint}"
        ) from exc
    except OSError as exc:  # connection errors surface as OSError subclasses
        raise HubUnreachableError(
            f"could not download {what} from the Hugging Face hub ({exc.__class__.__name__}); {local_hint}"
        ) from exc


def hub_reachable(timeout: float = 3.0) -> bool:
    """Quick check (DNS + TCP connect, ``timeout`` seconds) that the hub endpoint answers, so a
    caller can fall back at once instead of waiting for the download client's retries."""
    import os
    import socket
    from urllib.parse import urlparse

    try:
        import huggingface_hub.constants as hf_constants

        if hf_constants.HF_HUB_OFFLINE:
            return False
        endpoint = hf_constants.ENDPOINT
    except ImportError:  # pragma: no cover
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False
