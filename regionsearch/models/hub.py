"""Hugging Face hub downloads with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointNotFoundError, HubUnreachableError, MissingDependencyError


def cached_hub_file(repo_id: str, filenames: tuple[str, ...] | list[str], cache_dir: str | None) -> Path | None:
    """The first of ``filenames`` of ``repo_id`` already in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        return None
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id=repo_id, filename=filename, cache_dir=cache_dir,
                                        local_files_only=True))
        except Exception:  # noqa: BLE001 - any miss (not cached, bad repo id) means "not local"
            continue
    return None


def require_hub(what: str, local_hint: str) -> None:
    """Raise :class:`HubUnreachableError` at once (one TCP connect of at most 3 s, no retries) when
    ``HF_HUB_OFFLINE`` is set or the hub cannot be reached, so a model that is neither cached nor
    local fails in seconds with the sentence the README promises."""
    if not hub_reachable():
        raise HubUnreachableError(
            f"{what} is not in the local cache and the Hugging Face hub cannot be reached (offline?); "
            f"download it on a connected machine or {local_hint}")


def hub_download(repo_id: str, filename: str, cache_dir: str | None, what: str, local_hint: str) -> Path:
    """Find in the local cache, else download, ``filename`` of ``repo_id``.

    Honours ``HF_HUB_OFFLINE`` and ``HF_HOME``/``cache_dir`` like every Hugging Face tool; with no
    cached copy and no reachable hub it fails at once (:func:`require_hub`).
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
    cached = cached_hub_file(repo_id, [filename], cache_dir)
    if cached is not None:
        return cached
    require_hub(f"{what} ({repo_id}/{filename})", local_hint)
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
