"""The ``regionsearch`` command line.

Exit codes: 0 success; 1 the command ran but some input failed (e.g. files that could not be
indexed); 2 bad usage or a domain error (message on stderr, no traceback).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .errors import RegionSearchError
from .manifest import DEFAULT_DATA_DIR, default_data_dir

app = typer.Typer(
    name="regionsearch",
    help=(
        "Text search over image regions: SAM 2.1 segments every object of every image, CLIP "
        "embeds each region, FAISS + SQL store them, and a text query returns ranked regions "
        "with their masks.\n\nOffline? Add --config tiny to use the project's tiny models."
    ),
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_STATE: dict[str, Any] = {}

ConfigOpt = Annotated[Optional[str], typer.Option(
    "--config", "-c", help="Preset name (default, tiny, gpu; see configs/) or a YAML file. Env: REGIONSEARCH_CONFIG.")]
DataDirOpt = Annotated[Optional[str], typer.Option(
    "--data-dir", "-d", help="Data directory (SQLite + FAISS + manifest). Env: REGIONSEARCH_DATA_DIR. "
    f"Default: {DEFAULT_DATA_DIR}")]
DbOpt = Annotated[Optional[str], typer.Option(
    "--db", help="Metadata database URL instead of the SQLite file in the data directory, e.g. "
    "postgresql+psycopg://user@host/db. Env: REGIONSEARCH_DB.")]
VectorsOpt = Annotated[Optional[str], typer.Option(
    "--vectors", help="Keep vectors in Milvus instead of FAISS: milvus:///path/file.db (Milvus Lite) or "
    "http://host:19530 (server); recorded in the data directory. Env: REGIONSEARCH_VECTORS.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ServerOpt = Annotated[Optional[str], typer.Option(
    "--server", help="Ask a running `regionsearch serve` at this URL, e.g. http://127.0.0.1:8000, instead of "
    "opening a data dir here: no models load, one HTTP round trip. The server's data dir is used (so not with "
    "--data-dir/--db). Env: REGIONSEARCH_SERVER (ignored when --data-dir or --db is given).")]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _compose() -> None:
    """The CLI is the composition root: it wires the applications built on the library into it
    (importing ``indexer`` registers the indexing runners the engine looks up by name)."""
    import indexer  # noqa: F401


def _engine(config: str | None, data_dir: str | None, db: str | None, device: str | None,
            create: bool = True, vectors: str | None = None, readonly: bool = False, **overrides: Any) -> Any:
    """The engine of a command. Cheap checks first (the data dir is not a file; a command that does
    not create one finds a manifest there), then the config: the data dir's own models and
    pipeline settings unless ``--config``/flags override them (an embedder other than the stored
    vectors' is refused), all before any model loads. ``readonly`` opens without writing a byte."""
    from .config import load_config
    from .engine import Engine
    from .manifest import check_data_dir_path, load_config_for

    _compose()
    over: dict[str, Any] = {}
    dev = device or _STATE.get("device")
    if dev:
        over["device"] = dev
    for key, value in overrides.items():
        if value is not None:
            section, name = key.split("__", 1)
            over.setdefault(section, {})
            node = over[section]
            *parents, leaf = name.split("__")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
    name = config or _STATE.get("config")
    if name:
        load_config(name, over)  # a bad preset or flag is reported before the data dir
    root = data_dir or _STATE.get("data_dir") or default_data_dir()
    existing = check_data_dir_path(root, must_exist=not create)
    cfg = load_config_for(existing, name, over)
    return Engine(cfg, root, db or _STATE.get("db"), create=create, readonly=readonly,
                  vectors_url=vectors or _STATE.get("vectors"))


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
    device: DeviceOpt = None,
    vectors: VectorsOpt = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv for debug).")] = 0,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Global options apply to every command (each command also accepts them)."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:  # the hub client's retry warnings are not for end users; our errors say what to do
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    _STATE.update(config=config, data_dir=data_dir, db=db, device=device, vectors=vectors)
    if version:
        from . import __version__

        typer.echo(f"regionsearch {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        from .config import load_config

        try:
            cfg = load_config(config)
        except RegionSearchError as exc:
            _fail(str(exc))
        typer.echo(ctx.get_help())
        sam = cfg.models.sam
        typer.echo(f"\nactive config: {cfg.name} (device {cfg.device}); SAM 2.1: "
                   f"{sam.checkpoint or sam.model}; CLIP: {cfg.models.clip.model} / {cfg.models.clip.pretrained}")


@app.command()
def index(
    paths: Annotated[list[str], typer.Argument(help="Image and video files and/or folders (recursive).")],
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None, device: DeviceOpt = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="AMG preset: fast, default, dense.")] = None,
    crop: Annotated[Optional[str], typer.Option("--crop", help="Crop strategy: box, mask, blur.")] = None,
    sam_model: Annotated[Optional[str], typer.Option("--sam-model", help="SAM 2.1 hub id, e.g. facebook/sam2.1-hiera-small.")] = None,
    sam_checkpoint: Annotated[Optional[str], typer.Option("--sam-checkpoint", help="Local SAM 2.1 checkpoint (.pt).")] = None,
    sam_config: Annotated[Optional[str], typer.Option("--sam-config", help="sam2 model YAML for --sam-checkpoint.")] = None,
    clip_model: Annotated[Optional[str], typer.Option("--clip-model", help="open_clip model name, hf-hub:org/repo or local-dir:PATH.")] = None,
    clip_pretrained: Annotated[Optional[str], typer.Option("--clip-pretrained", help="open_clip pretrained tag or a local weights file.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Reader threads decoding ahead of the models (0 = inline; default from config: 1).")] = None,
    as_json: JsonOpt = False,
    runner: Annotated[str, typer.Option("--runner", help="local (this process) or ray (Ray Data: CPU decode, "
                                        "SAM and CLIP actor pools, Parquet shards merged into the data dir).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join with --runner ray, "
                                                       "e.g. auto; default: start a local Ray instance.")] = None,
    vectors: VectorsOpt = None,
    reindex_changed: Annotated[bool, typer.Option("--reindex-changed", help="When this run's segmenter or crop "
                                                  "settings differ from those the data dir's images were indexed "
                                                  "with, re-index those images too (else the run is refused).")] = False,
) -> None:
    """Segment every object in every image, embed each region, store it (idempotent, resumable).

    Videos (.mp4, .mov, .mkv, .webm, .avi, ...; also recognised by their content) become object
    tracks: frames sampled at video.sample_fps, automatic masks on keyframes, propagated between
    them, one vector per track; `search` returns them beside image regions.

    On an existing data dir the models and settings it records are used (no --config needed);
    flags that change what the vectors mean are refused unless --reindex-changed. Re-running on
    the same files does no model work; moved files get their new path; changed files are
    re-indexed. Files that cannot be read are recorded (see `info --errors`) and make the exit
    code 1; a path given on the command line that does not exist is a usage error (exit 2).
    Ctrl-C saves what is done; the same command resumes.
    """
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        _fail(f"{missing[0]} does not exist" + (f" (nor {len(missing) - 1} more path(s))" if len(missing) > 1 else "")
              + "; nothing was indexed")
    eng = _engine(config, data_dir, db, device, segment__preset=preset, embed__crop=crop,
                  models__sam__model=sam_model, models__sam__checkpoint=sam_checkpoint,
                  models__sam__config=sam_config, models__clip__model=clip_model,
                  models__clip__pretrained=clip_pretrained, vectors=vectors)
    if runner not in ("local", "ray"):
        _fail(f"unknown runner {runner!r}; valid: local, ray")
    try:
        with eng:
            report = eng.index(paths, progress=progress and not as_json, workers=workers, runner=runner,
                               ray_address=ray_address, reindex_changed=reindex_changed)
    except KeyboardInterrupt as exc:
        done = getattr(exc, "report", None)
        saved = f"{done.indexed} image(s) indexed and saved" if done is not None else "the last committed batch is saved"
        typer.echo(f"interrupted: {saved}; run the same command to resume", err=True)
        raise typer.Exit(130)
    _print_index_report(report.as_dict(), as_json)
    raise typer.Exit(1 if report.failed else 0)


def _print_index_report(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    videos = (f" ({data['tracks']} track{'s' * (data['tracks'] != 1)} of {data['videos']} "
              f"video{'s' * (data['videos'] != 1)})" if data.get("videos") else "")
    typer.echo(
        f"{data['files']} files: {data['indexed']} indexed, {data['unchanged']} unchanged, "
        f"{data['moved']} moved, {data['failed']} failed; {data['regions']} regions{videos} in "
        f"{data['seconds']:.1f} s ({data['images_per_s']:.2f} images/s, {data['regions_per_s']:.1f} regions/s)"
    )
    st = data["stage_seconds"]
    typer.echo("stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in st.items()))
    for f in data["failures"][:20]:
        typer.echo(f"  failed: {f['path']}: {f['reason']}", err=True)
    if len(data["failures"]) > 20:
        typer.echo(f"  ... and {len(data['failures']) - 20} more (regionsearch info --errors)", err=True)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="What to look for, e.g. \"red car\".")],
    k: Annotated[int, typer.Option("-k", "--k", help="Number of hits: 1 to the config's search.max_k (1000 by default; the API accepts the same).")] = 10,
    as_json: JsonOpt = False,
    per_image: Annotated[Optional[int], typer.Option("--per-image", help="At most N hits per image.")] = None,
    path_prefix: Annotated[Optional[str], typer.Option("--path-prefix", help="Only images whose path starts with P.")] = None,
    min_area: Annotated[Optional[float], typer.Option("--min-area", help="Minimum region area: a fraction of the image (<= 1) or pixels (> 1).")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Minimum hit score (the similarity, plus a collapsed group's consensus bonus).")] = None,
    save: Annotated[Optional[Path], typer.Option("--save", help="Write one overlay PNG per hit into this folder (created if missing): the mask filled and outlined, rank and score; prints each file written.")] = None,
    no_dedupe: Annotated[bool, typer.Option("--no-dedupe", help="Show near-duplicate regions too (by default a region of the same image as a better hit is dropped when their mask IoU is >= search.dedupe_iou, 0.8, or one mask lies >= search.dedupe_contain, 0.5, inside the other).")] = False,
    media: Annotated[str, typer.Option("--media", help="image (regions of images), video (object tracks of videos: path, time range, frames) or all (both, ranked together).")] = "all",
    server: ServerOpt = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None, device: DeviceOpt = None,
) -> None:
    """Search indexed image regions and video object tracks by text; prints ranked hits (or the
    JSON hit schema with --json: "kind" is "region" or "track").

    With --server (or REGIONSEARCH_SERVER) a running service answers: the same hits, no model
    loading here."""
    from .search import SearchFilters, check_k, check_text

    filters = SearchFilters(path_prefix=_abs_prefix(path_prefix), min_area=min_area, min_score=min_score,
                            per_image=per_image, dedupe=not no_dedupe, media=media)
    filters.validate()
    if save is not None and save.exists() and not save.is_dir():
        _fail(f"--save needs a folder; {save} is a file")
    url = _server_url(server, data_dir, db)
    if url is not None:
        hits, written = _remote_search(url, text, k, filters, save)
    else:
        eng = _engine(config, data_dir, db, device, create=False, readonly=True)
        check_k(k, eng.config.search.max_k)
        check_text(text, eng.config.search.max_text_chars)
        with eng:
            hits = eng.search(text, k, filters)
            written = _save_overlays(hits, save, text, _local_image) if save is not None else []
    _print_hits(text, hits, as_json)
    for path in written:
        typer.echo(f"wrote {path}", err=as_json)  # stdout stays one JSON document with --json


def _print_hits(text: str, hits: list[Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"query": text, "hits": [h.to_json() for h in hits]}, indent=2))
        return
    if not hits:
        typer.echo("no hits")
        return
    from .imageio import display_path

    for rank, h in enumerate(hits, 1):
        if h.track is not None:
            typer.echo(_track_line(rank, h))
            continue
        x, y, w, hh = h.bbox
        rel = h.relation
        why = "" if rel is None else (f"  {rel['predicate']} the whole image ({rel['object']['score']:.4f})" if rel.get("scene")
                                      else f"  {rel['predicate']} region {rel['object']['region_id']} ({rel['object']['score']:.4f})")
        typer.echo(f"{rank:3d}. {h.score:.4f}  {display_path(h.image_path)}  region {h.region_id} "
                   f"[{h.kind}] box x={x:.0f} y={y:.0f} w={w:.0f} h={hh:.0f} area={h.area}{why}")


def _server_url(server: str | None, data_dir: str | None, db: str | None) -> str | None:
    """The service a command asks instead of a local data dir: ``--server``, else the
    ``REGIONSEARCH_SERVER`` environment variable unless ``--data-dir``/``--db`` name a local store."""
    from .client import check_server_url

    local = data_dir or _STATE.get("data_dir") or db or _STATE.get("db")
    if server is not None:
        if local:
            _fail("give --server or --data-dir/--db, not both (with --server the server's data dir is used)")
        return check_server_url(server)
    env = os.environ.get("REGIONSEARCH_SERVER", "").strip()
    return check_server_url(env) if env and not local else None


def _remote_search(url: str, text: str, k: int, filters: Any, save: Path | None) -> tuple[list[Any], list[Path]]:
    """Hits of ``text`` from the service at ``url`` (and their overlays, from the image files it serves)."""
    from .client import Client
    from .types import SearchHit

    with Client(url) as client:
        doc = client.search(text, k, path_prefix=filters.path_prefix, min_area=filters.min_area,
                            min_score=filters.min_score, per_image=filters.per_image, dedupe=filters.dedupe,
                            media=filters.media)
        hits = [SearchHit.from_json(h) for h in doc["hits"]]
        if save is None:
            return hits, []

        def image_of(hit: Any) -> Any:
            from .imageio import decode_image

            if hit.track is not None:
                return _remote_track_frame(client, hit)
            return decode_image(client.image_file(hit.image_id), max_pixels=1 << 62)

        return hits, _save_overlays(hits, save, text, image_of)


@app.command()
def track(
    track_id: Annotated[int, typer.Argument(help="A track's id: the region_id of a track hit of `search`.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None,
) -> None:
    """One video object track: its video, time range and its mask at every sampled frame
    (--json: {kind, region_id, video, t_start, t_end, frame_start, frame_end, best_frame, frames:
    [{frame, t, bbox, mask}]}; frame counts the video's decoded frames from 0, t is seconds)."""
    eng = _engine(config, data_dir, db, None, create=False, readonly=True)
    with eng:
        record, frames = eng.datadir.store.get_track(track_id)
    doc = record.track_json(frames=frames)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    from .imageio import display_path

    v = doc["video"]
    typer.echo(f"track {track_id}: {display_path(v['path'])} (video {v['id']}, {v['fps']:.2f} fps, "
               f"{v['duration_s'] if v['duration_s'] is not None else '?'} s)")
    typer.echo(f"  {doc['t_start']:.2f}-{doc['t_end']:.2f} s, frames {doc['frame_start']}-{doc['frame_end']}, "
               f"{len(frames)} stored frame(s); best frame {doc['best_frame']['frame']}")
    for f in doc["frames"]:
        x, y, w, h = f["bbox"]
        typer.echo(f"  frame {f['frame']:6d}  t={f['t']:8.3f} s  box x={x:.0f} y={y:.0f} w={w:.0f} h={h:.0f}")


def _track_frame(h: Any) -> Any:
    """The best frame of a track hit (HWC uint8 RGB, upright), decoded lazily up to it."""
    from .imageio import path_from_db
    from .video.decode import read_frame

    return read_frame(path_from_db(h.image_path), h.track.best_frame)


def _track_line(rank: int, h: Any) -> str:
    """One track hit as text: score, video path, time range, frames, best frame's box."""
    from .imageio import display_path

    tr = h.track
    x, y, w, hh = h.bbox
    return (f"{rank:3d}. {h.score:.4f}  {display_path(h.image_path)}  track {h.region_id} "
            f"{tr.t_start:.2f}-{tr.t_end:.2f} s (frames {tr.frame_start}-{tr.frame_end}), best frame "
            f"{tr.best_frame} at {tr.best_t:.2f} s: box x={x:.0f} y={y:.0f} w={w:.0f} h={hh:.0f}")


def _abs_prefix(prefix: str | None) -> str | None:
    if prefix is None:
        return None
    return os.path.abspath(prefix) if not prefix.startswith("/") else prefix


def _local_image(hit: Any) -> Any:
    from .imageio import load_image, path_from_db

    if hit.track is not None:
        return _track_frame(hit)
    return load_image(path_from_db(hit.image_path)).array


def _remote_track_frame(client: Any, hit: Any) -> Any:
    """A track hit's best frame from the video file the service streams (a temporary copy)."""
    import tempfile

    from .video.decode import read_frame

    with tempfile.NamedTemporaryFile(suffix=Path(hit.image_path).suffix or ".mp4") as tmp:
        tmp.write(client.image_file(hit.image_id))
        tmp.flush()
        return read_frame(tmp.name, hit.track.best_frame)


def _save_overlays(hits: list[Any], folder: Path, text: str, image_of: Any) -> list[Path]:
    """One overlay PNG per hit in ``folder`` (``image_of(hit)``: its image, HWC uint8 RGB); returns
    the files written (a hit whose image cannot be read is reported and skipped)."""
    from .render import overlay, to_png

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, h in enumerate(hits, 1):
        try:
            img = image_of(h)
        except RegionSearchError as exc:
            typer.echo(f"  cannot render hit {rank}: {exc}", err=True)
            continue
        out = overlay(img, [h.mask], [h.bbox], [f"#{rank} {h.score:.3f}"], title=text)
        path = folder / f"{rank:03d}_region{h.region_id}.png"
        path.write_bytes(to_png(out))
        written.append(path)
    return written


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="The file to write, e.g. regions.json, regions.parquet, regions.csv.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="coco (instances JSON with RLE masks, loadable by pycocotools and FiftyOne), parquet (one row per region with its CLIP embedding; needs pyarrow) or csv.")] = "coco",
    query: Annotated[Optional[str], typer.Option("--query", "-q", help="Export this text query's hits (ranked, with scores) instead of the whole store.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Hits of --query to export: 1 to the config's search.max_k.")] = 100,
    path_prefix: Annotated[Optional[str], typer.Option("--path-prefix", help="Only images whose path starts with P.")] = None,
    labels: Annotated[Optional[list[str]], typer.Option("--labels", help="Zero-shot categories: each region gets the closest of these texts (repeat the option or separate with commas). Default: one 'region' category.")] = None,
    as_json: JsonOpt = False,
    server: ServerOpt = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None,
) -> None:
    """Write the whole store, or a query's hits, as COCO, Parquet or CSV (streamed: constant memory).

    With --server (and --query) the server searches and builds the file; it is written here."""
    from .export import FORMATS, export_regions
    from .search import SearchFilters, check_k, check_text

    if fmt not in FORMATS:
        _fail(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        _fail(f"the folder {out.parent} does not exist")
    names = [t.strip() for v in labels or [] for t in v.split(",") if t.strip()]
    url = _server_url(server, data_dir, db)
    if url is not None:
        _remote_export(url, out, fmt, query, k, _abs_prefix(path_prefix), names, as_json)
        return
    eng = _engine(config, data_dir, db, None, create=False, readonly=True)
    if query is not None:
        check_k(k, eng.config.search.max_k)
        check_text(query, eng.config.search.max_text_chars)
    with eng:
        hits = None
        if query is not None:
            hits = eng.search(query, k, SearchFilters(path_prefix=_abs_prefix(path_prefix)))
        vectors = eng.pipeline.embedder.embed_texts(names) if names else None
        report = export_regions(eng.datadir, out, fmt, hits=hits, path_prefix=_abs_prefix(path_prefix),
                                labels=names, label_vectors=vectors)
    _print_export(report.to_json(), as_json)


def _print_export(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(f"wrote {report['regions']} regions of {report['images']} images to {report['path']} "
                   f"({report['format']})")


def _remote_export(url: str, out: Path, fmt: str, query: str | None, k: int, path_prefix: str | None,
                   names: list[str], as_json: bool) -> None:
    """``export --query`` answered by the service at ``url`` (it searches and writes the file)."""
    from .client import Client

    if query is None:
        _fail("with --server, export writes a query's hits: add --query TEXT (the whole store is exported "
              "where its data dir is, without --server)")
    with Client(url) as client:
        report = client.export(query, out, fmt, k, path_prefix=path_prefix, labels=names)
    _print_export(report, as_json)


@app.command()
def scene(
    image: Annotated[str, typer.Argument(help="An indexed image's path or id, or any image file (segmented on "
                                         "the fly; nothing is stored).")],
    as_json: JsonOpt = False,
    labels: Annotated[Optional[str], typer.Option("--labels", help="Label vocabulary: a file with one name per line "
                                                  "or comma-separated names, e.g. \"cat,dog,car\". Default: the "
                                                  "config's (tiny: the 30 shapes classes; default: a built-in list "
                                                  "of common objects).")] = None,
    save: Annotated[Optional[Path], typer.Option("--save", help="Also write a PNG with the objects outlined and "
                                                 "labelled.")] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None, device: DeviceOpt = None,
) -> None:
    """Objects (zero-shot CLIP labels), their spatial relations and a compact description of one
    image, for people and language models (--json: the scene schema of GET /v1/images/{id}/scene).

    Relations: left_of/right_of, above/below (centroids more than 5% of the image apart), near
    (masks within 5% of the image's longer side), inside/contains (>= 90% inside the hole-filled
    mask), overlaps (boxes intersect, neither inside the other).
    """
    from .scene.scene import labeler_for, scene_of_array, scene_of_indexed
    from .scene.vocabulary import parse_labels

    names = parse_labels(labels)
    eng = _engine(config, data_dir, db, device, create=False, readonly=True)
    with eng:
        rec = _indexed_image(eng, image)
        lab = labeler_for(eng.pipeline.embedder)
        if rec is not None:
            result = scene_of_indexed(eng.datadir, rec.id, lab, eng.config.scene, names)
        else:
            from .imageio import load_image

            if not os.path.isfile(image):
                _fail(f"{image} is neither an indexed image (path or id) nor an image file")
            cfg = eng.config.ingest
            loaded = load_image(image, max_pixels=cfg.max_pixels, max_bytes=cfg.max_bytes)
            result = scene_of_array(loaded.array, eng.pipeline, lab, eng.config.scene, names,
                                    path=os.path.abspath(image))
    if save is not None:
        _save_scene(result, save)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    typer.echo(result.text)


def _indexed_image(eng: Any, image: str) -> Any:
    """The indexed record of IMAGE (an id, or a path), or None when it is not indexed (or there
    is no data directory yet)."""
    from .datadir import MANIFEST_NAME
    from .imageio import path_to_db

    if not (Path(eng.data_dir) / MANIFEST_NAME).exists():
        if image.isdigit() and not os.path.exists(image):
            _fail(f"there is no data directory at {eng.data_dir}, so image id {image} is unknown")
        return None
    if image.isdigit() and not os.path.exists(image):
        return eng.datadir.store.get_image(int(image))
    rec = eng.datadir.image_by_path(path_to_db(os.path.abspath(image)))
    return rec if rec is not None and rec.status == "indexed" else None


def _save_scene(result: Any, path: Path) -> None:
    from .imageio import load_image, path_from_db
    from .render import overlay, to_png
    from .scene.scene import object_names

    img = load_image(path_from_db(result.image["path"])).array
    objs = result.objects
    out = overlay(img, [o.mask for o in objs], [o.bbox for o in objs], object_names([o.label for o in objs]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_png(out))


@app.command()
def info(
    as_json: JsonOpt = False,
    errors: Annotated[bool, typer.Option("--errors", help="List the files that could not be indexed, with reasons.")] = False,
    server: ServerOpt = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None,
) -> None:
    """Counts, models, index type, disk size, the settings each image was indexed with and failed
    files of a data directory (read-only: works while an index job writes it). With --server: those
    of the server's data directory."""
    url = _server_url(server, data_dir, db)
    if url is not None:
        from .client import Client

        with Client(url) as client:
            data = client.info(errors=errors)
        failures = data.get("failures")
        if not errors:
            data.pop("failures", None)
    else:
        from .datadir import mark_current

        eng = _engine(config, data_dir, db, None, create=False, readonly=True)
        with eng:
            data = eng.datadir.info()
            mark_current(data, eng.config.video_pipeline_key())
            failures = [{"path": f.path, "reason": f.error} for f in eng.datadir.failures()] if errors else None
        if failures is not None:
            data["failures"] = failures
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    for key, value in data.items():
        if key in ("failures", "pipelines"):
            continue
        typer.echo(f"{key}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")
    if data["writer_running"]:
        typer.echo(f"index job running: {data['images_indexed']} images indexed so far (counts as of its last "
                   "commit; run info again for newer ones)")
    typer.echo("indexed with:" if data["pipelines"] else "indexed with: (no images yet)")
    for p in data["pipelines"]:
        what = "video(s)" if "video" in (p["settings"] or {}) else "image(s)"
        typer.echo(f"  {p['images']} {what}: {_describe_settings(p['settings'])}  [key {p['pipeline_key']}"
                   f"{', current' if p['current'] else ''}]")
    if failures is not None:
        from .imageio import display_path

        typer.echo(f"failed files ({len(failures)}):")
        for f in failures:
            typer.echo(f"  {display_path(f['path'])}: {f['reason']}")


def _describe_settings(settings: dict[str, Any] | None) -> str:
    """One line for the settings behind a pipeline key (crop, generator, thresholds, SAM source)."""
    if not settings:
        return "settings not recorded (indexed by an older regionsearch)"
    seg, crop = settings.get("segmenter") or {}, settings.get("crop") or {}
    amg, sam = seg.get("amg") or {}, seg.get("sam") or {}
    return (f"crop {crop.get('crop')}, generator {seg.get('generator')}, points_per_side "
            f"{amg.get('points_per_side')}, pred_iou_thresh {amg.get('pred_iou_thresh')}, stability_score_thresh "
            f"{amg.get('stability_score_thresh')}, max_regions {seg.get('max_regions')}, SAM "
            f"{sam.get('checkpoint') or sam.get('model')}"
            + "".join(f", {k} {v}" for k, v in (settings.get("video") or {}).items()))


@app.command()
def doctor(
    repair: Annotated[bool, typer.Option("--repair", help="Fix what is found (from stored embeddings).")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None,
) -> None:
    """Check that the metadata store and the vector index agree exactly; --repair fixes them
    (without it nothing is written)."""
    eng = _engine(config, data_dir, db, None, create=False, readonly=not repair)
    with eng:
        report = eng.datadir.doctor(repair=repair)
    data = report.to_json()
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        for key, value in data.items():
            if isinstance(value, list) and len(value) > 10:
                value = f"{len(value)} ids, e.g. {value[:10]}"
            typer.echo(f"{key}: {value}")
        typer.echo("consistent" if report.ok else ("repaired" if report.repaired else "INCONSISTENT: run doctor --repair"))
    raise typer.Exit(0 if report.ok or report.repaired else 1)


@app.command()
def remove(
    paths: Annotated[list[str], typer.Argument(help="Indexed image files, folders (everything indexed under "
                                               "them, recursively) or quoted globs such as 'photos/*.jpg'; "
                                               "the files need not exist any more.")],
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None,
) -> None:
    """Remove images and videos with their regions, tracks and vectors. Arguments that name nothing
    indexed are listed as "not indexed" and make the exit code 1 (the others are still removed)."""
    from .imageio import display_path, path_to_db

    eng = _engine(config, data_dir, db, None, create=False)
    with eng:
        targets: dict[str, None] = {}
        unknown = []
        for arg in paths:
            found = eng.datadir.store.match_paths(path_to_db(os.path.abspath(arg)))
            if not found:
                unknown.append(arg)
            targets.update(dict.fromkeys(found))
        n_videos = _count_videos(eng.datadir, list(targets), eng.config.video.extensions)
        n = eng.datadir.remove_paths(list(targets)) if targets else 0
    for arg in unknown:
        typer.echo(f"not indexed: {display_path(arg)}", err=True)
    n_videos = min(n_videos, n)
    said = [f"{n - n_videos} image(s)"] if n - n_videos or not n_videos else []
    typer.echo("removed " + " and ".join(said + ([f"{n_videos} video(s)"] if n_videos else [])))
    raise typer.Exit(1 if unknown else 0)


def _count_videos(datadir: Any, paths: list[str], extensions: tuple[str, ...] | list[str]) -> int:
    """How many of the stored ``paths`` are videos, for what `remove` says it removed: indexed
    videos, and failed files with a video extension (a failure has no videos row)."""
    recs = [(p, datadir.image_by_path(p)) for p in paths]
    videos = datadir.store.video_image_ids([rec.id for _, rec in recs if rec is not None])
    exts = {e.lower() for e in extensions}
    return sum(rec is not None and (rec.id in videos or (rec.status != "indexed" and
                                                          os.path.splitext(p)[1].lower() in exts)) for p, rec in recs)


@app.command()
def reindex(
    factory: Annotated[Optional[str], typer.Option("--factory", help="faiss factory string, or auto.")] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None,
) -> None:
    """Rebuild the vector index from stored embeddings (no SAM, no CLIP)."""
    eng = _engine(config, data_dir, db, None, create=False)
    with eng:
        n = eng.datadir.reindex(factory)
    typer.echo(f"rebuilt the vector index with {n} vectors")


def _config_for_dir(path: Path, name: str | None, over: dict[str, Any]) -> Any:
    """The config for an evaluation data dir: an existing index's own models (no --config needed)."""
    from .manifest import check_data_dir_path, load_config_for

    return load_config_for(check_data_dir_path(path, must_exist=False), name, over)


@app.command("eval")
def eval_(
    coco: Annotated[Optional[Path], typer.Option("--coco", help="Ground truth: COCO instances JSON (images); "
                                                 "YouTube-VIS-style JSON is recognised by its content too.")] = None,
    ytvis: Annotated[Optional[Path], typer.Option("--ytvis", help="Ground truth: YouTube-VIS-style JSON (videos with "
                                                  "per-frame 'segmentations' per object); evaluates video tracks.")] = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="Folder the ground truth's file_name entries (images "
                                                   "or video files) are relative to. Default: the JSON's folder.")] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None, device: DeviceOpt = None,
    templates: Annotated[Optional[Path], typer.Option("--templates", help="Prompt templates, one per line with {} for the category name (averaged in embedding space). Default: 'a photo of a {}.' (videos: the bare category name, as typed into search).")] = None,
    k: Annotated[Optional[str], typer.Option("--k", help="Comma-separated cut-offs for P@k and R@k (default 1,5,10,100; videos: P@k of track search, default 1,3,10).")] = None,
    depth: Annotated[int, typer.Option("--depth", help="Ranked regions per category used for AP (images).")] = 1000,
    include_whole: Annotated[bool, typer.Option("--include-whole/--masks-only", help="Also rank whole-image regions (images).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for eval.json and the PNG plots (default: <data-dir>/eval).")] = None,
    compare_crops: Annotated[Optional[str], typer.Option("--compare-crops", help="Comparison mode: crop strategies, e.g. box,mask,blur.")] = None,
    compare_presets: Annotated[Optional[str], typer.Option("--compare-presets", help="Comparison mode: AMG presets, e.g. fast,default.")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PR-curve and per-category PNG plots (images).")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Measure search quality against ground truth: images (COCO) or videos (YouTube-VIS-style).

    Images: text-to-region P@k, R@k, AP per category and the segmentation ceiling (GT instances
    covered by any region at IoU >= 0.5). --compare-crops/--compare-presets run every combination
    into its own data directory and print them side by side with indexing time.

    Videos (--ytvis, or such a file given to --coco): indexed as tracks like `index` does; the
    stored tracks are scored: per-object track mIoU, share of objects with mIoU >= 0.5, identity
    switches per clip, fragments per object, and per category P@k of a text search over tracks
    (--media video; a hit: spatio-temporal mask IoU >= 0.5). Videos that could not be indexed
    are listed and make the exit code 1. A second run reuses the data directory. Corpora to try:
    python -m regionsearch.testing.shapes OUT (images), python -m regionsearch.testing.clips OUT.
    """
    from .evaluation.report import print_table, write_json, write_plots
    from .evaluation.run import load_templates, run_eval

    gt_path, kind = _ground_truth(coco, ytvis)
    ks = _parse_ks(k, "1,3,10" if kind == "ytvis" else "1,5,10,100")
    root = images if images is not None else gt_path.resolve().parent
    _compose()
    base_dir = Path(data_dir or _STATE.get("data_dir") or default_data_dir())
    out_dir = out or (base_dir / "eval")
    over: dict[str, Any] = {"device": device or _STATE.get("device")} if (device or _STATE.get("device")) else {}
    cfg_name = config or _STATE.get("config")
    if kind == "ytvis":
        if compare_crops or compare_presets:
            _fail("--compare-crops/--compare-presets work on COCO image ground truth only")
        _eval_videos(gt_path, root, _config_for_dir(base_dir, cfg_name, over), base_dir, out_dir, templates, ks,
                     progress, db)
        return
    tmpl = load_templates(templates)
    if compare_crops or compare_presets:
        _eval_compare(gt_path, root, cfg_name, over, base_dir, out_dir, compare_crops, compare_presets,
                      dict(templates=tmpl, ks=ks, depth=depth, include_whole=include_whole, progress=progress, db_url=db))
        return
    run = run_eval(gt_path, root, _config_for_dir(base_dir, cfg_name, over), base_dir, tmpl, ks, depth,
                   include_whole, progress, db_url=db)
    print_table(run.summary)
    write_json(run.summary, out_dir / "eval.json", extra={"templates": list(tmpl), "config": run.config,
                                                          "index_seconds": run.index_seconds})
    written = [str(out_dir / "eval.json")] + ([str(p) for p in write_plots(run.summary, out_dir)] if plots else [])
    typer.echo("wrote " + ", ".join(written))


def _ground_truth(coco: Path | None, ytvis: Path | None) -> tuple[Path, str]:
    """The ground-truth file of `eval` and its kind (``coco`` or ``ytvis``, told by its content)."""
    from .evaluation.video_run import ground_truth_kind

    if (coco is None) == (ytvis is None):
        _fail("give the ground truth with exactly one of --coco FILE (COCO images) or --ytvis FILE (videos)")
    gt_path: Path = coco if coco is not None else ytvis  # type: ignore[assignment]  # one of the two is set
    kind = ground_truth_kind(gt_path)  # a missing or unreadable file is a clear error here
    if ytvis is not None and kind != "ytvis":
        _fail(f"{ytvis} is not YouTube-VIS-style ground truth (needs 'videos' and 'annotations' with per-frame "
              "'segmentations'); pass COCO image annotations with --coco")
    return gt_path, kind


def _eval_compare(gt_path: Path, root: Path, cfg_name: str | None, over: dict[str, Any], base_dir: Path,
                  out_dir: Path, compare_crops: str | None, compare_presets: str | None, opts: dict[str, Any]) -> None:
    """`eval --compare-crops/--compare-presets`: every combination in its own data dir, side by side."""
    from .config import load_config
    from .evaluation.run import format_comparison, run_eval, write_runs_json

    base = load_config(cfg_name, over)
    crops = [c.strip() for c in (compare_crops or base.embed.crop).split(",") if c.strip()]
    presets = [p.strip() for p in (compare_presets or base.segment.preset).split(",") if p.strip()]
    runs = []
    for crop, preset in [(c, p) for c in crops for p in presets]:
        run_dir = base_dir / f"eval-{crop}-{preset}"
        cfg = _config_for_dir(run_dir, cfg_name, {**over, "embed": {"crop": crop}, "segment": {"preset": preset}})
        name = f"crop={crop} preset={preset}"
        typer.echo(f"== {name}", err=True)
        runs.append(run_eval(gt_path, root, cfg, run_dir, name=name, **opts))
    ks = opts["ks"]
    typer.echo(format_comparison(runs, [x for x in ks if x <= 10] or ks[:1]))
    typer.echo(f"wrote {write_runs_json(runs, out_dir / 'compare.json')}")


def _parse_ks(k: str | None, default: str) -> tuple[int, ...]:
    """``--k``: comma-separated positive integers."""
    try:
        ks = tuple(int(x) for x in (k or default).split(",") if x.strip())
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        _fail(f"--k must be comma-separated integers >= 1, got {k!r}")
    return ks


def _eval_videos(gt_path: Path, root: Path, cfg: Any, base_dir: Path, out_dir: Path, templates: Path | None,
                 ks: tuple[int, ...], progress: bool, db: str | None) -> None:
    """`eval` on YouTube-VIS-style ground truth: index, score the stored tracks, print, write eval.json."""
    from .evaluation.run import load_templates
    from .evaluation.video_run import VIDEO_TEMPLATES, format_video_report, run_video_eval, write_video_json

    tmpl = load_templates(templates) if templates is not None else VIDEO_TEMPLATES
    run = run_video_eval(gt_path, root, cfg, base_dir, tmpl, ks, progress, db_url=db)
    typer.echo(format_video_report(run))
    path = write_video_json(run, out_dir / "eval.json", extra={"templates": list(tmpl)})
    typer.echo(f"wrote {path}")
    for f in run.failures:
        typer.echo(f"not evaluated: {f['file_name']}: {f['reason']}", err=True)
    if run.failures:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None, device: DeviceOpt = None,
) -> None:
    """Serve the search API and the web page."""
    try:
        from api.app import run_server
    except ImportError as exc:
        _fail(f"the API service is not available in this installation ({exc})")
    run_server(host=host, port=port, config=config or _STATE.get("config"),
               data_dir=data_dir or _STATE.get("data_dir"), db=db or _STATE.get("db"),
               device=device or _STATE.get("device"))


@app.command()
def mcp(
    config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None, device: DeviceOpt = None,
) -> None:
    """Serve the Model Context Protocol over stdio for LLM agents (tools: search_regions,
    describe_scene, segment, get_region). Register it with a client as the command
    `regionsearch mcp --data-dir D` (see README)."""
    try:
        from api.mcp_server import run_mcp
    except ImportError as exc:
        _fail(f"the MCP server needs the mcp package: pip install 'regionsearch[mcp]' ({exc})")
    run_mcp(config=config or _STATE.get("config"), data_dir=data_dir or _STATE.get("data_dir"),
            db=db or _STATE.get("db"), device=device or _STATE.get("device"))


@app.command()
def demo(
    data_dir: DataDirOpt = None,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the API afterwards.")] = True,
    port: Annotated[int, typer.Option("--port")] = 8000,
    config: ConfigOpt = None,
) -> None:
    """Index example photos, print the best regions for a few queries, then serve the API.

    Uses the default real models; where the Hugging Face hub cannot be reached it says so and
    runs the same demo with --config tiny on a generated shapes corpus.
    """
    from .demo import run_demo

    _compose()
    run_demo(data_dir=data_dir or _STATE.get("data_dir"), serve=serve_after, port=port,
             config=config or _STATE.get("config"), echo=typer.echo)


#: third-party modules whose deprecation warnings the CLI hides
_CHATTY_MODULES = r"(sam2|torch|torchvision|timm|open_clip|huggingface_hub|transformers|hydra|iopath)(\.|$)"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: domain errors become one line on stderr and exit code 2."""
    import warnings

    # third-party deprecation chatter (torch.jit in sam2, ...) is not for end users; warnings of
    # this project and of other libraries still show
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=_CHATTY_MODULES)
    try:
        app(args=argv, standalone_mode=True)
    except RegionSearchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
