"""The OpenAPI 3.1 document generated from the declared endpoints, and the page that renders it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from handlers.api import API_KEY, Endpoint
from tests.support.harness import Harness

METHODS = ("get", "put", "post", "patch", "delete")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")


@pytest.fixture
async def document(harness: Harness) -> dict[str, Any]:
    response = await harness.call("GET", "/api/v1/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    return body


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def operation_of(document: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    path = _PARAM.sub(lambda m: "{" + m[1] + "}", endpoint.path)
    operation: dict[str, Any] = document["paths"][path][endpoint.method.lower()]
    return operation


def endpoints(harness: Harness) -> list[Endpoint]:
    return list(harness.app[API_KEY].endpoints)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_the_document_is_openapi_3_1_with_info(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] and document["info"]["version"]


def test_every_endpoint_is_documented_once(harness: Harness, document: dict[str, Any]) -> None:
    documented = sorted((path, method) for path, method, _ in operations(document))
    declared = sorted(
        (_PARAM.sub(lambda m: "{" + m[1] + "}", e.path), e.method.lower())
        for e in endpoints(harness)
    )
    assert documented == declared


def test_every_operation_has_an_id_summary_tags_and_responses(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        assert operation["operationId"], (path, method)
        assert operation["summary"], (path, method)
        assert operation["tags"] and all(operation["tags"]), (path, method)
        assert operation["responses"], (path, method)


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_protected_operations_require_bearer_or_cookie(
    harness: Harness, document: dict[str, Any]
) -> None:
    schemes = set(document["components"]["securitySchemes"])
    for endpoint in endpoints(harness):
        security = operation_of(document, endpoint)["security"]
        if endpoint.public:
            assert security == [], endpoint.path
        else:
            assert security and {name for req in security for name in req} <= schemes, endpoint.path


def test_operations_needing_a_permission_name_it(
    harness: Harness, document: dict[str, Any]
) -> None:
    named = 0
    for endpoint in endpoints(harness):
        operation = operation_of(document, endpoint)
        assert operation.get("x-permission") == endpoint.permission, endpoint.path
        named += endpoint.permission is not None
    assert named >= 15


def test_protected_operations_document_401_and_403_and_public_ones_do_not(
    harness: Harness, document: dict[str, Any]
) -> None:
    for endpoint in endpoints(harness):
        responses = operation_of(document, endpoint)["responses"]
        assert ({"401", "403"} <= set(responses)) is not endpoint.public, endpoint.path


def test_list_operations_document_pagination_sort_and_every_filter(
    harness: Harness, document: dict[str, Any]
) -> None:
    listed = 0
    for endpoint in endpoints(harness):
        if endpoint.listing is None:
            continue
        listed += 1
        params = {p["name"]: p for p in operation_of(document, endpoint)["parameters"]}
        assert {"limit", "offset", "sort"} <= set(params), endpoint.path
        assert params["limit"]["schema"]["maximum"] == 200
        assert params["sort"]["schema"]["default"] == endpoint.listing.default_sort
        for name in endpoint.listing.fields:
            assert f"filter[{name}][{{op}}]" in params, (endpoint.path, name)
            assert params[f"filter[{name}][{{op}}]"]["in"] == "query"
    assert listed >= 4


def test_list_operations_answer_an_array_with_page_meta(
    harness: Harness, document: dict[str, Any]
) -> None:
    for endpoint in endpoints(harness):
        if endpoint.listing is None:
            continue
        response = operation_of(document, endpoint)["responses"][str(endpoint.status)]
        schema = response["content"]["application/json"]["schema"]
        assert schema["properties"]["data"]["type"] == "array", endpoint.path
        assert schema["properties"]["meta"] == {"$ref": "#/components/schemas/PageMeta"}


def test_path_parameters_are_declared_and_required(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", path)), (path, method)
        assert all(p["required"] for p in operation["parameters"] if p["in"] == "path")


def test_request_bodies_reference_the_endpoints_model(
    harness: Harness, document: dict[str, Any]
) -> None:
    schemas = document["components"]["schemas"]
    for endpoint in endpoints(harness):
        operation = operation_of(document, endpoint)
        if endpoint.raw_body:
            assert set(operation["requestBody"]["content"]) == {"application/octet-stream"}
            continue
        if endpoint.body is None:
            assert "requestBody" not in operation, endpoint.path
            continue
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{endpoint.body.__name__}"}
        assert schemas[endpoint.body.__name__]["properties"], endpoint.path


def test_every_reference_resolves_to_a_component(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    found = list(refs(document))
    assert found
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_errors_are_documented_as_problem_json(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    for path, method, operation in operations(document):
        content = operation["responses"]["400"]["content"]
        assert set(content) == {"application/problem+json"}, (path, method)


async def test_the_docs_page_is_html_that_loads_the_document(harness: Harness) -> None:
    response = await harness.call("GET", "/api/v1/docs")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert page.lstrip().lower().startswith("<!doctype html") and "/api/v1/openapi.json" in page
