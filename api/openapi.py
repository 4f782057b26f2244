"""The served OpenAPI schema states what the service enforces, and links responses to the ids
they carry.

FastAPI generates the schema from the route signatures and :mod:`api.schemas`; the limits that
come from :class:`~api.settings.Settings` (``max_k``, ``max_text_chars``, ``max_points``,
``max_boxes``, ``max_overlay_regions``) and the rules checked in code (a non-blank text, at least
one prompt, an image given one way) are added here, so a client or a fuzzer that follows the
schema sends nothing the service rejects. OpenAPI links (search hit -> region, image, crop,
similar; upload -> image, delete) let clients and stateful testing follow the ids.
"""

from __future__ import annotations

import copy
from typing import Callable

from regionsearch.types import JSON_SCHEMA_SPACE

from .settings import Settings

#: image formats the upload endpoints decode (a multipart ``file`` part must be one of these)
IMAGE_MEDIA_TYPES = "image/png, image/jpeg, image/webp, image/gif"
#: the white space the service strips (``regionsearch.types.JSON_SCHEMA_SPACE``), spelled out so that
#: every regex engine (ECMA-262 clients, Python validators) reads the same class as the service
_SPACE = "".join(f"\\u{ord(c):04x}" for c in JSON_SCHEMA_SPACE)
#: at least one character that is not white space (the service strips the text before checking it)
NOT_BLANK = f"[^{_SPACE}]"


def _op(spec: dict, path: str, method: str) -> dict | None:
    return spec.get("paths", {}).get(path, {}).get(method)


def _json_schema(spec: dict, op: dict | None, media: str = "application/json") -> dict | None:
    """The (resolved) body schema of ``op`` for ``media``; a ``$ref`` is inlined into the operation
    so that settings-dependent limits do not leak into the shared component."""
    if op is None:
        return None
    content = op.get("requestBody", {}).get("content", {}).get(media)
    if content is None:
        return None
    schema = content["schema"]
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = copy.deepcopy(spec["components"]["schemas"][name])
        content["schema"] = schema
    return schema


def _param(op: dict | None, name: str) -> dict | None:
    for p in (op or {}).get("parameters", []):
        if p.get("name") == name:
            return p["schema"]
    return None


def _non_null(schema: dict) -> dict:
    """``anyOf: [X, {type: null}]`` -> ``X`` (in place; form fields cannot carry a JSON null)."""
    options = schema.get("anyOf")
    if options and any(o.get("type") == "null" for o in options):
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            extra = {k: v for k, v in schema.items() if k != "anyOf"}
            schema.clear()
            schema.update(rest[0])
            schema.update(extra)
            schema.pop("default", None)
    return schema


def _text(schema: dict, s: Settings) -> None:
    schema.update(minLength=1, maxLength=s.max_text_chars, pattern=NOT_BLANK)


def _k(schema: dict, max_k: int | None) -> None:
    schema.update(minimum=1)
    if max_k is not None:
        schema.update(maximum=max_k)
        if isinstance(schema.get("default"), int) and schema["default"] > max_k:
            schema["default"] = max_k  # the route caps an omitted k the same way


def _prompt_schema(schema: dict, s: Settings) -> None:
    """Points/labels/box limits and the prompt groups of a segmentation request."""
    props = schema["properties"]
    for prop in props.values():
        _non_null(prop)  # the segment routes refuse explicit nulls
    point = {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 2, "maxItems": 2}
    props["points"] = {"type": "array", "items": point, "minItems": 1, "maxItems": s.max_points,
                       "description": props.get("points", {}).get("description", "")}
    props["labels"] = {"type": "array", "items": {"type": "integer", "enum": [0, 1]}, "minItems": 1,
                       "maxItems": s.max_points, "description": props.get("labels", {}).get("description", "")}
    box = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}
    props["box"] = {"anyOf": [box, {"type": "array", "items": box, "minItems": 1, "maxItems": s.max_boxes}],
                    "description": props.get("box", {}).get("description", "")}
    schema["anyOf"] = [{"required": ["points", "labels"]}, {"required": ["box"]}, {"required": ["mask_input"]}]
    schema["dependentRequired"] = {"points": ["labels"], "labels": ["points"]}
    schema["dependentSchemas"] = {"points": {"properties": {"box": box}}}  # points go with one box at most


def _image_given(schema: dict) -> None:
    """A JSON body names its image by exactly one of ``image_id`` / ``image_key``."""
    props = schema["properties"]
    for name in ("image_id", "image_key"):
        _non_null(props[name])
    props["image_id"].update(minimum=1, maximum=2**62)
    schema["oneOf"] = [{"required": ["image_id"]}, {"required": ["image_key"]}]


def _multipart(op: dict | None, s: Settings, prompt: Callable[[dict], None] | None = None) -> None:
    """File parts must be non-empty images; nullable form fields become plain ones; the JSON
    ``prompt`` part is described as an object sent as ``application/json``."""
    if op is None:
        return
    content = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
    if content is None:
        return
    schema = content["schema"]
    if "$ref" in schema:
        return  # generated body models are resolved by _json_schema's callers
    props = schema.get("properties", {})
    encoding = content.setdefault("encoding", {})
    for name, prop in props.items():
        _non_null(prop)
        if prop.get("format") == "binary" or prop.get("contentMediaType") == "application/octet-stream":
            prop["minLength"] = 1
            encoding[name] = {"contentType": IMAGE_MEDIA_TYPES}
    if prompt is not None and "prompt" in props:
        prompt(props)
        encoding["prompt"] = {"contentType": "application/json"}
        schema["required"] = sorted(set(schema.get("required", [])) | {"prompt"})
        schema["additionalProperties"] = False  # the segment routes refuse other form fields


def _form_body(spec: dict, op: dict | None) -> dict | None:
    """Inline the multipart body model FastAPI generated for a route with ``Form``/``File``."""
    if op is None:
        return None
    content = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
    if content is None:
        return None
    if "$ref" in content["schema"]:
        name = content["schema"]["$ref"].rsplit("/", 1)[-1]
        content["schema"] = copy.deepcopy(spec["components"]["schemas"][name])
    return content["schema"]


def _links(spec: dict) -> None:
    """OpenAPI links from responses that carry ids to the operations that take them."""
    ids = {(path, method): op.get("operationId") for path, item in spec.get("paths", {}).items()
           for method, op in item.items() if isinstance(op, dict)}

    def link(target: tuple[str, str], parameters: dict[str, str], description: str) -> dict | None:
        op_id = ids.get(target)
        return None if op_id is None else {"operationId": op_id, "parameters": parameters, "description": description}

    def region_links(pointer: str) -> dict[str, dict | None]:
        return {
            "GetRegion": link(("/v1/regions/{region_id}", "get"), {"region_id": f"$response.body#{pointer}/region_id"},
                              "the region's record"),
            "GetRegionCrop": link(("/v1/regions/{region_id}/crop.png", "get"),
                                  {"region_id": f"$response.body#{pointer}/region_id"}, "the region's crop"),
            "GetSimilarRegions": link(("/v1/regions/{region_id}/similar", "get"),
                                      {"region_id": f"$response.body#{pointer}/region_id"}, "regions like it"),
            "GetImage": link(("/v1/images/{image_id}", "get"), {"image_id": f"$response.body#{pointer}/image_id"},
                             "its image with all regions"),
            "GetImageFile": link(("/v1/images/{image_id}/file", "get"),
                                 {"image_id": f"$response.body#{pointer}/image_id"}, "its image file"),
            "GetImageOverlay": link(("/v1/images/{image_id}/overlay.png", "get"),
                                    {"image_id": f"$response.body#{pointer}/image_id"}, "its image with regions drawn"),
        }

    targets: dict[tuple[str, str, str], dict[str, dict | None]] = {
        ("/v1/search", "post", "200"): region_links("/hits/0"),
        ("/v1/search/image", "post", "200"): region_links("/hits/0"),
        ("/v1/regions/{region_id}/similar", "get", "200"): region_links("/hits/0"),
        ("/v1/regions/{region_id}", "get", "200"): region_links(""),
        ("/v1/images/{image_id}", "get", "200"): region_links("/regions/0"),
        ("/v1/images", "get", "200"): {
            "GetImage": link(("/v1/images/{image_id}", "get"), {"image_id": "$response.body#/images/0/image_id"},
                             "the newest image with its regions"),
            "GetImageThumb": link(("/v1/images/{image_id}/thumb.jpg", "get"),
                                  {"image_id": "$response.body#/images/0/image_id"}, "its preview"),
        },
        ("/v1/images", "post", "201"): {
            "GetImage": link(("/v1/images/{image_id}", "get"), {"image_id": "$response.body#/image_id"},
                             "the indexed image with its regions"),
            "DeleteImage": link(("/v1/images/{image_id}", "delete"), {"image_id": "$response.body#/image_id"},
                                "remove it again"),
        },
    }
    for (path, method, status), links in targets.items():
        op = _op(spec, path, method)
        response = (op or {}).get("responses", {}).get(status)
        if response is None:
            continue
        response["links"] = {name: v for name, v in links.items() if v is not None}


def _scene_labels(schema: dict) -> None:
    """Comma-separated names, each at most ``MAX_NAME_CHARS`` as sent, at least one non-blank."""
    from .routes.scene import MAX_NAME_CHARS

    n = MAX_NAME_CHARS
    schema["allOf"] = [{"pattern": f"^[^,]{{0,{n}}}(,[^,]{{0,{n}}})*$"}, {"pattern": f"[^,{_SPACE}]"}]


def document_limits(spec: dict, s: Settings, *, max_k: int | None) -> dict:
    """Add the service's enforced limits (``max_k``: the service's largest ``k``, None for no
    bound) and response links to a FastAPI-generated ``spec`` (in place; returned for convenience)."""
    body = _json_schema(spec, _op(spec, "/v1/search", "post"))
    if body:
        _text(body["properties"]["text"], s)
        _k(body["properties"]["k"], max_k)
    body = _json_schema(spec, _op(spec, "/v1/export", "post"))
    if body:
        _text(body["properties"]["text"], s)
        _k(body["properties"]["k"], max_k)
    for path, method in (("/v1/regions/{region_id}/similar", "get"),):
        k = _param(_op(spec, path, method), "k")
        if k is not None:
            _k(k, max_k)
    labels = _param(_op(spec, "/v1/images/{image_id}/scene", "get"), "labels")
    if labels is not None:
        _scene_labels(_non_null(labels))
    overlay = _param(_op(spec, "/v1/images/{image_id}/overlay.png", "get"), "regions")
    if overlay is not None:
        for option in overlay.get("anyOf", [overlay]):
            if option.get("type") == "string":
                n = s.max_overlay_regions - 1
                option["pattern"] = rf"^\d{{1,18}}(,\d{{1,18}}){{0,{n}}}$"
                option["maxLength"] = min(option.get("maxLength", 19 * s.max_overlay_regions),
                                          19 * s.max_overlay_regions)
    image_search = _op(spec, "/v1/search/image", "post")
    form = _form_body(spec, image_search)
    if form:
        _k(form["properties"]["k"], max_k)
        _multipart(image_search, s)
    upload = _op(spec, "/v1/images", "post")
    if _form_body(spec, upload):
        _multipart(upload, s)
    segment = _op(spec, "/v1/segment", "post")
    body = _json_schema(spec, segment)
    if body:
        _image_given(body)
        _prompt_schema(body, s)
        prompt = {k: copy.deepcopy(v) for k, v in body["properties"].items() if k not in ("image_id", "image_key")}
        prompt_schema = {"type": "object", "additionalProperties": False, "properties": prompt,
                         "anyOf": copy.deepcopy(body["anyOf"]),
                         "dependentRequired": copy.deepcopy(body["dependentRequired"]),
                         "dependentSchemas": copy.deepcopy(body["dependentSchemas"])}
        _multipart(segment, s, lambda props: props.__setitem__("prompt", {**prompt_schema, "description": props[
            "prompt"].get("description", "")}))
    seg_text = _op(spec, "/v1/segment/text", "post")
    body = _json_schema(spec, seg_text)
    if body:
        _image_given(body)
        for prop in body["properties"].values():
            _non_null(prop)
        _text(body["properties"]["text"], s)
        _k(body["properties"]["k"], max_k)
        # inside the multipart JSON part the not-blank rule is stated in words, not as a pattern:
        # schemathesis 4.32's negative fuzzing of a pattern in such a part appends "*" to a valid
        # text and expects a rejection (ST201), though "*" keeps it valid (seen twice in CI)
        text = {k: v for k, v in body["properties"]["text"].items() if k != "pattern"}
        text["description"] = "what to look for; not only white space"
        prompt_schema = {"type": "object", "additionalProperties": False, "required": ["text"],
                         "properties": {"text": text, "k": copy.deepcopy(body["properties"]["k"])}}
        _multipart(seg_text, s, lambda props: props.__setitem__("prompt", {**prompt_schema, "description": props[
            "prompt"].get("description", "")}))
    from .routes.video_segment import document as document_video_segment

    document_video_segment(spec, s.max_points)
    box = _form_body(spec, image_search)
    if box and "box" in box["properties"]:
        number = r"\d{1,6}(\.\d{1,6})?"
        box["properties"]["box"]["pattern"] = rf"^{number},{number},{number},{number}$"
    for item in spec.get("paths", {}).values():
        for op in item.values():
            if isinstance(op, dict) and "requestBody" in op:
                # a body that cannot be parsed at all (broken JSON or multipart framing)
                op["responses"].setdefault("400", {"description": "the body could not be parsed", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
            elif isinstance(op, dict) and any(p.get("in") == "query" for p in op.get("parameters", [])):
                # the HTTP server refuses a request line over its limit (a long query string: e.g. 9,999
                # four-byte characters percent-encoded) before the route runs
                op["responses"].setdefault("400", {"description": "the request line is too long for the server"})
    _links(spec)
    return spec
