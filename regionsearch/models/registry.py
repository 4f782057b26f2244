"""One load per process: models are cached by their full spec and shared between threads."""

from __future__ import annotations

import threading
from typing import Any, Callable, Hashable

_LOCK = threading.Lock()
_KEY_LOCKS: dict[Hashable, threading.Lock] = {}
_CACHE: dict[Hashable, Any] = {}


def cached(key: Hashable, build: Callable[[], Any]) -> Any:
    """Return the object cached under ``key``, building it once (other threads wait)."""
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:
        with _LOCK:
            if key in _CACHE:
                return _CACHE[key]
        obj = build()
        with _LOCK:
            _CACHE[key] = obj
        return obj


def clear() -> None:
    """Forget every cached model (tests use this)."""
    with _LOCK:
        _CACHE.clear()
        _KEY_LOCKS.clear()
