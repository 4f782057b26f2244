"""``regionsearch demo``: index example photos, show the best regions for a few queries, serve.

With the default (real) models the corpus is scikit-image's sample photos. Where the Hugging
Face hub cannot be reached, the same demo runs with ``--config tiny`` on a generated
shapes-world corpus.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Iterator

from .config import load_config
from .errors import HubUnreachableError, MissingDependencyError, RegionSearchError
from .manifest import default_data_dir

log = logging.getLogger(__name__)

PHOTO_QUERIES = ["an astronaut", "a cup of coffee", "a cat", "a rocket", "a flag"]
SHAPES_QUERIES = ["red circle", "blue square", "yellow star", "green triangle", "purple hexagon"]
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


def write_sample_photos(folder: Path) -> list[Path]:
    """Save scikit-image's bundled sample photos (no network) as PNG files."""
    try:
        from skimage import data as skdata
    except ImportError as exc:
        raise MissingDependencyError("scikit-image", "the demo's sample photos") from exc
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in SAMPLE_PHOTOS:
        path = folder / f"{name}.png"
        if not path.exists():
            Image.fromarray(getattr(skdata, name)()).convert("RGB").save(path)
        out.append(path)
    return out


def write_shapes_corpus(folder: Path, n: int = 24, seed: int = 7) -> list[Path]:
    """Generate a small shapes-world corpus (PNG files)."""
    from PIL import Image

    from .testing.shapes import make_scenes

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, scene in enumerate(make_scenes(n, seed=seed)):
        path = folder / f"scene_{i:03d}.png"
        if not path.exists():
            Image.fromarray(scene.image).save(path)
        out.append(path)
    return out


def _real_models_reachable(config_name: str | None, echo: Callable[[str], None]) -> bool:
    """True when the default models are cached locally or the hub can be reached (then they are
    downloaded now); False, with one line saying so, when they cannot be had."""
    from .models.clip import load_clip
    from .models.sam import resolve_sam_source

    cfg = load_config(config_name)
    try:
        resolve_sam_source(cfg.models.sam)
        load_clip(cfg.models.clip, cfg.device)
        return True
    except HubUnreachableError:
        echo("The Hugging Face hub cannot be reached and the default models are not cached; running "
             "the demo offline with --config tiny on a generated shapes corpus.")
        return False


@contextlib.contextmanager
def _hub_offline_if_unreachable() -> Iterator[None]:
    """While the demo runs, an unreachable hub is treated as offline (cached weights still load, no
    slow retries); huggingface_hub's setting is restored afterwards."""
    from .models.hub import hub_reachable

    if hub_reachable():
        yield
        return
    import huggingface_hub.constants as hf_constants

    before = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = before


def run_demo(data_dir: str | None = None, serve: bool = True, port: int = 8000, config: str | None = None,
             echo: Callable[[str], None] = lambda line: None) -> None:
    """Index the demo corpus, print (with ``echo``, one line per call) the best regions for a few
    queries, then serve the API. Called by the CLI's ``demo`` command."""
    with _hub_offline_if_unreachable() if config is None else contextlib.nullcontext():
        _run_demo(data_dir, serve, port, config, echo)


def _run_demo(data_dir: str | None, serve: bool, port: int, config: str | None, echo: Callable[[str], None]) -> None:
    from .engine import Engine

    base = Path(data_dir or default_data_dir())
    if config is None and not _real_models_reachable(None, echo):
        config = "tiny"
    cfg = load_config(config)
    if cfg.name == "tiny":
        corpus, queries = write_shapes_corpus(base.parent / (base.name + "-corpus")), SHAPES_QUERIES
        base = base.parent / (base.name + "-tiny")
    else:
        corpus, queries = write_sample_photos(base.parent / (base.name + "-corpus")), PHOTO_QUERIES
    echo(f"indexing {len(corpus)} images from {corpus[0].parent} into {base} (config {cfg.name})")
    with Engine(cfg, base) as eng:
        report = eng.index([str(corpus[0].parent)])
        echo(f"{report.indexed} indexed, {report.unchanged} unchanged, {report.regions} regions, "
             f"{report.seconds:.1f} s")
        for q in queries:
            echo(f"\n{q!r}:")
            try:
                hits = eng.search(q, k=3)
            except RegionSearchError as exc:
                echo(f"  error: {exc}")
                continue
            for h in hits:
                x, y, w, hh = h.bbox
                echo(f"  {h.score:.3f}  {Path(h.image_path).name}  box x={x:.0f} y={y:.0f} w={w:.0f} h={hh:.0f}")
    if serve:
        try:
            from api.app import run_server
        except ImportError:
            echo("\n(the API service is not part of this installation yet; skipping `serve`)")
            return
        echo(f"\nserving on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
        run_server(host="127.0.0.1", port=port, config=config, data_dir=str(base), db=None, device=None)
