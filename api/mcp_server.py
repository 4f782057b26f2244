"""The Model Context Protocol server (``regionsearch mcp``): regionsearch as tools for LLM agents.

Built on the official ``mcp`` Python SDK (``MCPServer``, stdio transport). Every tool returns a
JSON text item (masks as COCO RLE ``{"size": [h, w], "counts"}``, boxes XYWH pixels) and, with
``overlay: true``, a PNG image item showing the masks over the image. Domain errors come back
as tool errors (``isError``) with the one-line message a CLI user would see.

Tools: ``search_regions(text, k, filters)``, ``describe_scene(image_id, labels?)``,
``segment(image_id, points?, labels?, box?)``, ``get_region(region_id)``.

Logs go to stderr; stdout carries the protocol only.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any, Optional

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ImageContent, TextContent

from regionsearch.errors import InvalidRequestError, RegionSearchError

from .schemas import SearchFiltersIn

log = logging.getLogger("regionsearch.mcp")

INSTRUCTIONS = (
    "regionsearch indexes images as regions (SAM 2.1 masks, CLIP embeddings). search_regions finds "
    "regions by text, including relations such as 'a red circle left of a blue square'; describe_scene "
    "lists an image's labelled objects and spatial relations with a compact text; segment runs SAM 2.1 on "
    "point/box prompts; get_region returns one region. Boxes are XYWH pixels (prompt boxes XYXY); masks "
    "are COCO RLE."
)
MAX_K = 100


class _Tools:
    """The tool implementations over one open engine (sync; the SDK runs them in worker threads)."""

    def __init__(self, engine: Any):
        self.engine = engine
        self._prompt: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    def image(self, image_id: int) -> tuple[Any, Any]:
        from regionsearch.errors import NotFoundError
        from regionsearch.imageio import load_image, path_from_db

        rec = self.engine.datadir.store.get_image(int(image_id))
        cfg = self.engine.config.ingest
        try:
            return rec, load_image(path_from_db(rec.path), max_pixels=cfg.max_pixels, max_bytes=cfg.max_bytes).array
        except RegionSearchError as exc:
            raise NotFoundError(f"the file of image {image_id} cannot be read ({exc})") from exc

    def overlay_png(self, image_id: int, rles: list[dict], boxes: list, labels: list[str]) -> bytes:
        from regionsearch.render import overlay, to_png

        _, arr = self.image(image_id)
        return to_png(overlay(arr, rles, boxes, labels))

    def prompt_segmenter(self) -> Any:
        with self._lock:
            if self._prompt is None:
                from regionsearch.segment.prompt import PromptSegmenter

                self._prompt = PromptSegmenter(self.engine.pipeline.sam_model)
            return self._prompt

    # ------------------------------------------------------------------ tools
    def search_regions(self, text: str, k: int, filters: Optional[SearchFiltersIn]) -> tuple[dict, Optional[tuple]]:
        from regionsearch.search import SearchFilters

        if not 1 <= k <= MAX_K:
            raise InvalidRequestError(f"k must be between 1 and {MAX_K}, got {k}")
        f = filters or SearchFiltersIn()
        hits = self.engine.search(text, k, SearchFilters(path_prefix=f.path_prefix or None, min_area=f.min_area,
                                                         min_score=f.min_score, per_image=f.per_image,
                                                         media=f.media))
        doc = {"query": text, "hits": [h.to_json() for h in hits]}
        if not hits or hits[0].track is not None:
            return doc, None  # no overlay of a video track (its frame is not an indexed image)
        top = hits[0]
        rles, boxes, names = [top.mask], [top.bbox], [f"#1 {top.score:.3f}"]
        if top.relation is not None and not top.relation.get("scene"):
            obj = self.engine.datadir.store.get_region(top.relation["object"]["region_id"])
            rles.append(obj.rle)
            boxes.append(obj.bbox)
            names.append(top.relation["predicate"])
        return doc, (top.image_id, rles, boxes, names)

    def describe_scene(self, image_id: int, labels: Optional[list[str]]) -> tuple[dict, tuple]:
        from regionsearch.scene.scene import object_names

        from .routes.scene import scene_json

        doc = scene_json(self.engine.datadir, self.engine, image_id, labels)
        objs = doc["objects"]
        return doc, (image_id, [o["mask"] for o in objs], [o["bbox"] for o in objs],
                     object_names([o["label"] for o in objs]))

    def segment(self, image_id: int, points: Optional[list[list[float]]], labels: Optional[list[int]],
                box: Optional[list[float]]) -> tuple[dict, Optional[tuple]]:
        if not points and not box:
            raise InvalidRequestError("give at least one prompt: points (with labels) or box [x0, y0, x1, y1]")
        if points and labels is None:
            labels = [1] * len(points)
        rec, arr = self.image(image_id)
        seg = self.prompt_segmenter()
        handle = seg.set_image(arr)
        cands = seg.predict(handle, points=points, labels=labels, box=box, multimask=True)[0]
        doc = {"image_id": rec.id, "width": int(arr.shape[1]), "height": int(arr.shape[0]),
               "masks": [{"mask": {"size": list(c.rle["size"]), "counts": c.rle["counts"]}, "score": c.score,
                          "bbox": [float(v) for v in c.bbox], "area": c.area} for c in cands]}
        if not cands:
            return doc, None
        return doc, (rec.id, [cands[0].rle], [cands[0].bbox], [f"{cands[0].score:.3f}"])

    def get_region(self, region_id: int) -> tuple[dict, tuple]:
        from .routes.common import region_json

        row = self.engine.datadir.store.get_region(int(region_id))
        return region_json(row), (row.image_id, [row.rle], [row.bbox], [f"region {row.region_id}"])


def build_server(engine: Any) -> Any:
    """An ``MCPServer`` exposing the four tools over ``engine`` (an open-able
    :class:`~regionsearch.engine.Engine`)."""
    tools = _Tools(engine)
    server = MCPServer("regionsearch", instructions=INSTRUCTIONS)

    def respond(call: Any, overlay: bool) -> list[Any]:
        try:
            doc, spec = call()
            out: list[Any] = [TextContent(type="text", text=json.dumps(doc))]
            if overlay and spec is not None:
                png = tools.overlay_png(*spec)
                out.append(ImageContent(type="image", data=base64.b64encode(png).decode("ascii"),
                                        mime_type="image/png"))
            return out
        except RegionSearchError as exc:
            raise ToolError(str(exc)) from exc

    @server.tool(structured_output=False)
    def search_regions(text: str, k: int = 10, filters: Optional[SearchFiltersIn] = None,
                       overlay: bool = False) -> list[TextContent | ImageContent]:
        """Image regions best matching a text, e.g. "red car" or a relation such as "a red circle left of a
        blue square" (left of, right of, above/over, below/under, near/next to, inside/in, containing).
        Returns JSON {"query", "hits": [{"kind": "region", "region_id", "image_id", "image_path", "score",
        "bbox" (XYWH px), "area", "mask" (COCO RLE), "region_kind", "relation"?} or {"kind": "track",
        "region_id", "score", "video", "t_start", "t_end", "frame_start", "frame_end", "best_frame"}]}.
        filters: path_prefix, min_area (fraction of the image if <= 1, else pixels), min_score, per_image,
        media (image, video or all). overlay: also a PNG of the best hit."""
        return respond(lambda: tools.search_regions(text, k, filters), overlay)

    @server.tool(structured_output=False)
    def describe_scene(image_id: int, labels: Optional[list[str]] = None,
                       overlay: bool = False) -> list[TextContent | ImageContent]:
        """The scene of an indexed image: objects with zero-shot labels (from `labels` if given, else the
        server's vocabulary), boxes (XYWH px), centroids, masks (COCO RLE), every spatial relation between
        them (left_of, right_of, above, below, near, inside, contains, overlaps) and a compact "text" to
        read. overlay: also a PNG with the objects outlined and labelled."""
        return respond(lambda: tools.describe_scene(image_id, labels), overlay)

    @server.tool(structured_output=False)
    def segment(image_id: int, points: Optional[list[list[float]]] = None, labels: Optional[list[int]] = None,
                box: Optional[list[float]] = None, overlay: bool = False) -> list[TextContent | ImageContent]:
        """Segment an object of an indexed image with SAM 2.1 from prompts: points [[x, y], ...] in pixels
        with labels (1 foreground, 0 background; default all 1) and/or a box [x0, y0, x1, y1] in pixels.
        Returns JSON {"image_id", "width", "height", "masks": [{"mask" (COCO RLE), "score", "bbox", "area"}]}
        best first. overlay: also a PNG of the best mask."""
        return respond(lambda: tools.segment(image_id, points, labels, box), overlay)

    @server.tool(structured_output=False)
    def get_region(region_id: int, overlay: bool = False) -> list[TextContent | ImageContent]:
        """One indexed region: its image, box (XYWH px), area, mask (COCO RLE), SAM scores, kind.
        overlay: also a PNG of the region over its image."""
        return respond(lambda: tools.get_region(region_id), overlay)

    return server


def run_mcp(config: str | None = None, data_dir: str | None = None, db: str | None = None,
            device: str | None = None) -> None:
    """Serve MCP over stdio until the client closes the connection."""
    from regionsearch.config import load_config
    from regionsearch.engine import Engine

    cfg = load_config(config, {"device": device} if device else None)
    engine = Engine(cfg, data_dir, db, readonly=True, create=False)
    try:
        engine.datadir  # fail now, with the data dir's own message, not at the first tool call
        server = build_server(engine)
        log.info("regionsearch MCP server on stdio (data dir %s)", engine.data_dir)
        server.run("stdio")
    finally:
        engine.close()
