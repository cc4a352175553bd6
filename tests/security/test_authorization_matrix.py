"""Every REST operation, called as every kind of principal, answers as its permission says.

The operations come from the live OpenAPI document, so an endpoint added later fails the
coverage test until it gets a recipe (and, without a declared permission, a rule). Each
call is built to succeed for a principal the operation allows (the recipes create what it
needs), so a refusal is the permission check speaking, never a 404 or 422 standing in for
it: a refused call must be 401 (anonymous) or 403 with an authorization code, and an
allowed one must answer the operation's documented success status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse

import tests.security.recipes_content  # noqa: F401  (registers the content recipes)
import tests.security.recipes_jobs  # noqa: F401  (registers the background-work recipes)
import tests.security.recipes_scheduling  # noqa: F401  (schedules, calendar, preview)
import tests.security.recipes_workers_admin  # noqa: F401  (alerts, alert levels, scaling rules)
from tests.security.principals import PRINCIPALS, Who, clone_bearer, principals
from tests.security.recipes import RECIPES, RULES
from tests.security.recipes import signed_in as signed_in_rule
from tests.security.world import World, build_world
from tests.support.harness import Harness

PROBLEM = "application/problem+json"
# Codes a refusal on authorization grounds may carry; anything else is not the check speaking.
REFUSALS = frozenset(
    {
        "permission_denied",
        "no_access",
        "read_only",
        "session_required",
        "target_outranks_you",
        "permission_not_held",
        "scope_not_held",
    }
)


@dataclass(frozen=True)
class Operation:
    """One operation of the OpenAPI document, with what the matrix needs to judge it."""

    id: str
    method: str
    path: str
    permission: str | None
    public: bool
    success: int

    def allows(self, world: World, who: Who) -> bool:
        if self.public:
            return True
        if who.anonymous:
            return False
        if self.permission is not None:
            return self.permission in who.permissions
        return RULES[self.id](world, who)


def operations_of(document: dict[str, Any]) -> list[Operation]:
    found = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            [success] = [int(status) for status in op["responses"] if status.startswith("2")]
            found.append(
                Operation(
                    op["operationId"],
                    method.upper(),
                    path,
                    op.get("x-permission"),
                    op["security"] == [],
                    success,
                )
            )
    return found


@pytest.fixture(scope="module")
async def operations(harness: Harness) -> list[Operation]:
    response = await harness.call("GET", "/api/v1/openapi.json")
    return operations_of(await response.json())


@pytest.fixture(scope="module")
async def world(harness: Harness) -> World:
    return await build_world(harness, await principals(harness))


async def call(world: World, operation: Operation, who: Who) -> ClientResponse:
    request = await RECIPES[operation.id](world, who)
    bearer = who.bearer
    if request.as_clone and not who.anonymous:
        bearer = await clone_bearer(world.harness, who)
    headers = dict(request.headers)
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return await world.harness.client.request(
        operation.method,
        operation.path.format(**request.params),
        json=request.json,
        data=request.data,
        headers=headers,
        params=request.query,
    )


async def judge(world: World, operation: Operation, who: Who) -> str | None:
    """What is wrong with the answer to `who` calling `operation`; None when it is right."""
    response = await call(world, operation, who)
    status, text = response.status, (await response.read()).decode(errors="replace")
    where = f"{operation.method} {operation.path} as {who.name}: {status} {text[:300]}"
    if status >= 400:
        if response.content_type != PROBLEM:
            return f"{where} (not problem+json)"
        body = await response.json(content_type=None)
        if body.get("status") != status or not body.get("code"):
            return f"{where} (a malformed problem)"
    if status >= 500:
        return f"{where} (a server error)"
    if operation.allows(world, who):
        return None if status == operation.success else f"{where} (expected {operation.success})"
    if who.anonymous:
        return None if status == 401 else f"{where} (expected 401)"
    if status != 403:
        return f"{where} (expected 403)"
    code = (await response.json(content_type=None))["code"]
    return None if code in REFUSALS else f"{where} (403 for another reason than authorization)"


async def test_every_operation_has_a_recipe_and_every_unpermissioned_one_a_rule(
    operations: list[Operation],
) -> None:
    ids = {operation.id for operation in operations}
    assert len(ids) == len(operations) >= 100
    assert ids == set(RECIPES), (sorted(ids - set(RECIPES)), sorted(set(RECIPES) - ids))
    ruled = {op.id for op in operations if op.permission is None and not op.public}
    assert ruled == set(RULES), (sorted(ruled - set(RULES)), sorted(set(RULES) - ruled))


async def test_every_principal_holds_exactly_the_permissions_the_matrix_assumes(
    world: World,
) -> None:
    for who in world.who.values():
        if who.anonymous:
            continue
        response = await world.harness.call("GET", "/api/v1/auth/me", token=who.bearer)
        assert response.status == 200, who.name
        assert set((await response.json())["data"]["permissions"]) == who.permissions, who.name


async def test_every_guarded_operation_is_allowed_to_some_principals_and_refused_to_others(
    world: World, operations: list[Operation]
) -> None:
    signed_in = [who for who in world.who.values() if not who.anonymous]
    for operation in operations:
        if operation.public:
            continue
        verdicts = {operation.allows(world, who) for who in signed_in}
        # Self-service operations are everyone's; all others must tell principals apart.
        expected = {True} if RULES.get(operation.id) is signed_in_rule else {True, False}
        assert verdicts == expected, operation.id


@pytest.mark.parametrize("name", PRINCIPALS)
async def test_every_operation_answers_a_principal_as_its_permission_says(
    world: World, operations: list[Operation], name: str
) -> None:
    who = world.who[name]
    wrong = [problem for op in operations if (problem := await judge(world, op, who))]
    assert not wrong, "\n".join(wrong)
