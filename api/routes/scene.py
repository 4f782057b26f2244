"""The scene of an indexed image: labelled objects, spatial relations, a text for language models."""

from __future__ import annotations

from typing import Annotated, Any, Optional, Sequence

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from regionsearch.errors import InvalidRequestError
from regionsearch.scene.scene import labeler_for, scene_of_indexed
from regionsearch.scene.vocabulary import check_names

from ..deps import State
from ..schemas import RLE
from .common import ImageId, errors

router = APIRouter(prefix="/v1", tags=["scenes"])


class SceneImage(BaseModel):
    id: Optional[int]
    path: Optional[str]
    width: int = Field(description="pixels")
    height: int = Field(description="pixels")


class SceneObjectOut(BaseModel):
    region_id: Optional[int]
    label: str = Field(description="zero-shot CLIP label from the vocabulary")
    label_score: float = Field(description="softmax probability of the label over the vocabulary")
    bbox: list[float] = Field(description="XYWH pixels")
    area: int = Field(description="mask pixels")
    centroid: list[float] = Field(description="[x, y] mean pixel position of the mask")
    mask: RLE


class SceneRelationOut(BaseModel):
    subject: Optional[int] = Field(description="region id of the subject")
    predicate: str = Field(description="left_of, right_of, above, below, near, inside, contains or overlaps")
    object: Optional[int] = Field(description="region id of the object")
    subject_index: int = Field(description="position of the subject in objects")
    object_index: int = Field(description="position of the object in objects")


class SceneOut(BaseModel):
    image: SceneImage
    objects: list[SceneObjectOut]
    relations: list[SceneRelationOut]
    text: str = Field(description="compact deterministic description, for a language model's context")


def scene_json(datadir: Any, engine: Any, image_id: int, labels: Optional[Sequence[str]]) -> dict[str, Any]:
    """The scene document of an indexed image (shared with the MCP server). ``labels``: names
    (never a file: a request must not name files on the server)."""
    names = check_names(labels) if labels is not None else None
    return scene_of_indexed(datadir, image_id, labeler_for(engine.pipeline.embedder), engine.config.scene,
                            names).to_json()


#: at most this many characters of ``labels``: with one separator per name, fewer than
#: ``MAX_NAMES`` (5,000) names fit, so the vocabulary's count limit never has to reject a request
LABELS_MAX_CHARS = 9_999
#: characters of one comma-separated name as sent (surrounding white space included)
MAX_NAME_CHARS = 200
LABELS_DOC = (f"comma-separated label vocabulary (default: the server config's); at least one non-blank name, "
              f"each at most {MAX_NAME_CHARS} characters as sent; empty names are ignored, repeats kept once")


@router.get("/images/{image_id}/scene", response_model=SceneOut, responses=errors(404, 422, 503),
            summary="Objects, labels and spatial relations of an indexed image")
def scene(image_id: ImageId, state: State,
          labels: Annotated[Optional[str], Query(max_length=LABELS_MAX_CHARS, description=LABELS_DOC)] = None) -> dict:
    """Objects (stored mask regions without near-duplicates and parts) with zero-shot labels,
    boxes (XYWH pixels), centroids and masks (COCO RLE); every spatial relation between them
    (definitions in the README); and a compact text."""
    names = labels.split(",") if labels is not None else None
    if names is not None and any(len(n) > MAX_NAME_CHARS for n in names):
        raise InvalidRequestError(f"each comma-separated label may have at most {MAX_NAME_CHARS} characters")
    return scene_json(state.datadir(), state.engine, image_id, names)
