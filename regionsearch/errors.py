"""Domain exceptions. Every message is one sentence a user can act on; the CLI prints it without
a traceback and the API maps it to a 4xx/5xx status."""

from __future__ import annotations


class RegionSearchError(Exception):
    """Base class of every error this project raises on purpose."""

    #: HTTP status the API uses for this error.
    http_status: int = 500


class ConfigError(RegionSearchError):
    """A configuration file or value is invalid."""

    http_status = 400


class UnknownNameError(ConfigError):
    """A name (model, preset, crop strategy, ...) is not one of the known ones."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]):
        self.kind, self.name, self.valid = kind, name, list(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s are: {', '.join(sorted(self.valid))}")


class ModelLoadError(RegionSearchError):
    """A model could not be loaded."""


class CheckpointNotFoundError(ModelLoadError):
    pass


class HubUnreachableError(ModelLoadError):
    pass


class WeightsMismatchError(ModelLoadError):
    pass


class MissingDependencyError(RegionSearchError):
    """An optional package is needed for this feature."""

    def __init__(self, package: str, feature: str, extra: str | None = None):
        hint = f"pip install 'regionsearch[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the package {package!r}; install it with: {hint}")


class InvalidImageError(RegionSearchError):
    """An input file is not a usable image (the reason says why)."""

    http_status = 422


class InvalidVideoError(InvalidImageError):
    """An input file is not a usable video (the reason says why); recorded like a bad image."""


class InvalidRequestError(RegionSearchError):
    """A query or prompt is malformed."""

    http_status = 422


class NotFoundError(RegionSearchError):
    http_status = 404


class IndexMismatchError(RegionSearchError):
    """A data directory was built with a different pipeline (embedder, dim, ...)."""

    http_status = 409


class StoreError(RegionSearchError):
    """The metadata store or vector index is unusable or inconsistent."""


class DataDirBusyError(StoreError):
    """Another process holds the data directory's writer lock."""

    http_status = 409


class ImageTooLargeError(InvalidImageError):
    """An image exceeds the configured pixel or byte limit (the API answers 413 for uploads)."""
