"""The HTTP API as an OpenAPI 3.1 document, generated from the request models so it cannot drift from them.

``python -m ganserve.serving.openapi > docs/openapi.json`` regenerates the committed copy (a test compares them).
"""

from __future__ import annotations

import json
from typing import Any

from ganserve.families import loadable_families
from ganserve.requests import request_json_schema

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "field", "message"],
    "properties": {
        "error": {"type": "string", "example": "invalid request"},
        "field": {"type": "string", "description": "dotted path of the offending field; empty for the whole body"},
        "message": {"type": "string"},
    },
}
IMAGE_LIST_SCHEMA = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "model_version": {"type": "string"},
        "seeds": {"type": "array", "items": {"type": "integer"}},
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "png": {"type": "string", "contentEncoding": "base64"},
                    "jpeg": {"type": "string", "contentEncoding": "base64"},
                    "params": {"type": "object", "description": "the settings that made this image"},
                },
            },
        },
        "grid": {"type": "object", "properties": {"png": {"type": "string"}, "cols": {"type": "integer"}}},
    },
}
HEADERS = {
    "X-Ganserve-Model": {"schema": {"type": "string"}},
    "X-Ganserve-Model-Version": {"schema": {"type": "string"}, "description": "content-hash prefix of the checkpoint"},
    "X-Ganserve-Seeds": {"schema": {"type": "string"}, "description": "comma-separated seed of each image"},
    "X-Ganserve-Images": {"schema": {"type": "string"}},
    "X-Ganserve-Generator-Ms": {"schema": {"type": "string"}, "description": "generator time of the request's batch"},
}


def build_openapi() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, "ImageList": IMAGE_LIST_SCHEMA}
    refs = []
    for family in (fam.name for fam in loadable_families()):
        schema = request_json_schema(family)
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        title = schema.get("title", family)
        schemas[title] = schema
        refs.append({"$ref": f"#/components/schemas/{title}"})
    text = json.dumps(schemas).replace("#/$defs/", "#/components/schemas/")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ganserve sampling API (TorchServe)",
            "version": "1",
            "description": "POST a JSON request to sample images. Authorization: Bearer <inference key> when token "
            "authorisation is on (the default of `ganserve serve`).",
        },
        "paths": {
            "/predictions/{model}": {
                "post": {
                    "summary": "Sample images",
                    "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": refs}}}},
                    "responses": {
                        "200": {
                            "description": "one image or a grid as image bytes; several images (or format=json) as "
                            "a JSON list; format=npy as one uint8 array [N, H, W, C]",
                            "headers": HEADERS,
                            "content": {
                                "image/png": {"schema": {"type": "string", "format": "binary"}},
                                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                                "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
                                "application/json": {"schema": {"$ref": "#/components/schemas/ImageList"}},
                            },
                        },
                        "400": {
                            "description": "invalid request: the field and the problem",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                        },
                        "500": {
                            "description": "internal failure (the worker keeps serving)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                        },
                    },
                }
            }
        },
        "components": {"schemas": json.loads(text)},
    }


if __name__ == "__main__":
    print(json.dumps(build_openapi(), indent=2, sort_keys=True))
