"""The OpenAPI 3.1 document, generated from the declared endpoints, and a page that renders it."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from handlers.api import API_KEY, Api, Endpoint
from realtime_cms import __version__
from realtime_cms.listing import Page

_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_DOCS_PAGE = Path(__file__).resolve().parent.parent / "static" / "api-docs.html"
_TYPES = {int: "integer", str: "string", bool: "boolean", float: "number"}


class _Schemas:
    """Collects model schemas into `components.schemas`, referenced by name."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}
        self._names: dict[type[BaseModel], str] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, str]:
        name = self._names.get(model)
        if name is None:
            name = self._name_for(model)
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            self.components.update(schema.pop("$defs", {}))
            self.components[name] = schema
            self._names[model] = name
        return {"$ref": f"#/components/schemas/{name}"}

    def _name_for(self, model: type[BaseModel]) -> str:
        """The class name, qualified by its package when two models share a name."""
        if model.__name__ not in self.components:
            return model.__name__
        package = model.__module__.split(".")[-2 if model.__module__.count(".") else -1]
        return f"{package.title().replace('_', '')}{model.__name__}"


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "code": {"type": "string", "description": "Stable machine-readable error code"},
            "request_id": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object"}},
        },
    }


def _returns_page(endpoint: Endpoint) -> bool:
    """Whether the handler answers a `Page` (rendered with `meta`), listing or not."""
    if endpoint.listing is not None:
        return True
    returned = inspect.get_annotations(endpoint.handler, eval_str=True).get("return")
    return returned is Page or typing.get_origin(returned) is Page


def _returns_nothing(endpoint: Endpoint) -> bool:
    """Whether the handler is declared `-> None` (rendered as 204 No Content)."""
    annotations = inspect.get_annotations(endpoint.handler, eval_str=True)
    return "return" in annotations and annotations["return"] in (None, type(None))


def _parameters(endpoint: Endpoint, schemas: _Schemas) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer"} if pattern == r"\d+" else {"type": "string"},
        }
        for name, pattern in _PATH_PARAM.findall(endpoint.path)
    ]
    if endpoint.listing is not None:
        params += [
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
            },
            {
                "name": "offset",
                "in": "query",
                "schema": {"type": "integer", "minimum": 0, "default": 0},
            },
            {
                "name": "sort",
                "in": "query",
                "description": "Comma-separated fields, `-` for descending; sortable: "
                + ", ".join(n for n, f in endpoint.listing.fields.items() if f.sortable),
                "schema": {"type": "string", "default": endpoint.listing.default_sort},
            },
        ]
        for name, spec in endpoint.listing.fields.items():
            params.append(
                {
                    "name": f"filter[{name}][{{op}}]",
                    "in": "query",
                    "description": f"Filter on {name}; op one of {', '.join(spec.operators)}",
                    "schema": {"type": _TYPES.get(spec.type, "string")},
                }
            )
        params += [
            {"name": extra, "in": "query", "schema": {"type": "string"}}
            for extra in sorted(endpoint.listing.extra_params)
        ]
    elif endpoint.query is not None:
        schema = endpoint.query.model_json_schema()
        required = set(schema.get("required", []))
        params += [
            {"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()
        ]
    return params


def _operation(endpoint: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": _parameters(endpoint, schemas),
    }
    if endpoint.description:
        op["description"] = endpoint.description
    if endpoint.permission:
        op["x-permission"] = endpoint.permission
    op["security"] = [] if endpoint.public else [{"bearer": []}, {"cookie": []}]
    if endpoint.raw_body:
        op["requestBody"] = {"required": True, "content": _BINARY}
    elif endpoint.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(endpoint.body)}},
        }
    op["responses"] = _responses(endpoint, schemas)
    return op


def _responses(endpoint: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    problem = {
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    }
    responses: dict[str, Any] = {}
    if endpoint.raw_response:
        responses[str(endpoint.status)] = {"description": endpoint.summary, "content": _BINARY}
    elif endpoint.status == 204 or endpoint.response is None and _returns_nothing(endpoint):
        responses["204"] = {"description": "Done"}
    else:
        item = schemas.ref(endpoint.response) if endpoint.response else {}
        if _returns_page(endpoint):
            data: dict[str, Any] = {"type": "array", "items": item}
            meta = {"$ref": "#/components/schemas/PageMeta"}
            schema = {"type": "object", "properties": {"data": data, "meta": meta}}
        else:
            schema = {"type": "object", "properties": {"data": item}}
        responses[str(endpoint.status)] = {
            "description": endpoint.summary,
            "content": {"application/json": {"schema": schema}},
        }
    for status, reason in (
        (400, "Invalid request"),
        (401, "Not authenticated"),
        (403, "Forbidden"),
        (422, "Validation failed"),
    ):
        if endpoint.public and status in (401, 403):
            continue
        responses[str(status)] = {"description": reason, **problem}
    # Every other failure (404, 409, 413, 415, 429, 503...) is a problem document too.
    responses["default"] = {"description": "An error (RFC 9457 problem)", **problem}
    return responses


def build_document(api: Api) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing every registered endpoint."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in api.endpoints:
        path = _PATH_PARAM.sub(lambda m: "{" + m[1] + "}", endpoint.path)
        paths.setdefault(path, {})[endpoint.method.lower()] = _operation(endpoint, schemas)
    schemas.components["Problem"] = _problem_schema()
    schemas.components["PageMeta"] = {
        "type": "object",
        "properties": {
            "total": {"type": "integer"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "realtime_cms REST API",
            "version": __version__,
            "description": "Conventions: docs/rest.md. Errors are RFC 9457 problem+json "
            "with a stable `code`.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "rcms_session"},
            },
        },
    }


async def docs_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(_DOCS_PAGE)


def setup(app: web.Application) -> None:
    """Serve the document (built once, from the endpoints already registered) and its page."""
    document = build_document(app[API_KEY])

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/api/v1/openapi.json", openapi_json)
    app.router.add_get("/api/v1/docs", docs_page)
