"""Sites over REST: CRUD, domain checks, uniqueness, membership, permissions and the audit trail."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from realtime_cms.models.sites import SiteUser
from tests.support.harness import Harness

SITES = "/api/v1/sites"


def unique() -> str:
    return uuid.uuid4().hex[:12]


async def body_of(response: Any, status: int) -> Any:
    body = await response.json(content_type=None)
    assert response.status == status, body
    return body


async def create_site(harness: Harness, **fields: Any) -> dict[str, Any]:
    token = unique()
    payload = {"name": f"Site {token}", "domain": f"{token}.example.com", **fields}
    created: dict[str, Any] = (
        await body_of(await harness.call("POST", SITES, role="admin", json=payload), 201)
    )["data"]
    return created


async def members(harness: Harness, site_id: int, role: str = "admin") -> list[dict[str, Any]]:
    response = await harness.call("GET", f"{SITES}/{site_id}/users", role=role)
    listed: list[dict[str, Any]] = (await body_of(response, 200))["data"]
    return listed


async def the_audit_entry(harness: Harness, action: str, site_id: int) -> dict[str, Any]:
    """The newest entry for this action and site (SQLite may reuse a deleted site's id)."""
    query = f"filter[action_type]={action}&filter[entity_type]=site&filter[entity_id]={site_id}"
    body = await body_of(await harness.call("GET", f"/api/v1/audit-log?{query}", role="admin"), 200)
    assert body["data"], (action, site_id)
    entry: dict[str, Any] = body["data"][0]
    assert entry["action_type"] == action and entry["user_id"] == harness.users["admin"].id
    return entry


def path(site_id: int, user_id: int | None = None) -> str:
    return f"{SITES}/{site_id}" if user_id is None else f"{SITES}/{site_id}/users/{user_id}"


# Create, read, list, change, delete


async def test_an_admin_creates_a_site(harness: Harness) -> None:
    token = unique()
    site = await create_site(harness, name=f"Blog {token}", domain=f"blog-{token}.example.com")
    assert (site["name"], site["domain"], site["is_active"]) == (
        f"Blog {token}",
        f"blog-{token}.example.com",
        True,
    )
    assert isinstance(site["id"], int) and site["created_at"] and site["updated_at"]


async def test_a_domain_is_stored_trimmed_and_in_lower_case(harness: Harness) -> None:
    token = unique()
    site = await create_site(harness, domain=f"  WWW.{token.upper()}.Example.ORG:8443 ")
    assert site["domain"] == f"www.{token}.example.org:8443"


async def test_a_created_site_can_be_read_back(harness: Harness) -> None:
    site = await create_site(harness, is_active=False)
    assert (await body_of(await harness.call("GET", path(site["id"]), role="admin"), 200))[
        "data"
    ] == site


async def test_reading_an_unknown_site_is_404(harness: Harness) -> None:
    body = await body_of(await harness.call("GET", path(99999999), role="admin"), 404)
    assert body["code"] == "not_found"


async def test_sites_can_be_filtered_sorted_and_paginated(harness: Harness) -> None:
    token = unique()
    made = [await create_site(harness, name=f"{token} {letter}") for letter in "abc"]
    query = f"filter[name][contains]={token}&sort=-name&limit=2&offset=1"
    body = await body_of(await harness.call("GET", f"{SITES}?{query}", role="admin"), 200)
    assert [site["id"] for site in body["data"]] == [made[1]["id"], made[0]["id"]]
    assert body["meta"] == {"total": 3, "limit": 2, "offset": 1}


async def listed_ids(harness: Harness, **params: str) -> list[int]:
    response = await harness.call("GET", SITES, role="admin", params=params)
    return [site["id"] for site in (await body_of(response, 200))["data"]]


async def test_listing_filters_on_is_active(harness: Harness) -> None:
    token = unique()
    inactive = await create_site(harness, name=f"{token} off", is_active=False)
    await create_site(harness, name=f"{token} on")
    filters = {"filter[name][contains]": token, "filter[is_active]": "false"}
    assert await listed_ids(harness, **filters) == [inactive["id"]]


@pytest.mark.parametrize(
    ("name", "decoy", "needle"),
    [
        # As LIKE wildcards, `%_` would match the " x" of the decoy too.
        ("100%_sure", "100 xsure", "100%_s"),
        ("back\\slash", "backslash", "back\\s"),
    ],
)
async def test_a_contains_filter_matches_wildcard_characters_literally(
    harness: Harness, name: str, decoy: str, needle: str
) -> None:
    token = unique()
    literal = await create_site(harness, name=f"{token} {name}")
    await create_site(harness, name=f"{token} {decoy}")
    filters = {"filter[name][contains]": f"{token} {needle}"}
    assert await listed_ids(harness, **filters) == [literal["id"]]


async def test_an_admin_changes_a_site(harness: Harness) -> None:
    site = await create_site(harness)
    token = unique()
    changes = {"name": f"Renamed {token}", "domain": f"NEW-{token}.example.net", "is_active": False}
    changed = await body_of(
        await harness.call("PATCH", path(site["id"]), role="admin", json=changes), 200
    )
    assert (changed["data"]["name"], changed["data"]["domain"], changed["data"]["is_active"]) == (
        f"Renamed {token}",
        f"new-{token}.example.net",
        False,
    )
    read = await body_of(await harness.call("GET", path(site["id"]), role="admin"), 200)
    assert read["data"] == changed["data"]


async def test_a_patch_changes_only_the_fields_sent(harness: Harness) -> None:
    site = await create_site(harness)
    changed = await body_of(
        await harness.call("PATCH", path(site["id"]), role="admin", json={"is_active": False}), 200
    )
    assert (changed["data"]["name"], changed["data"]["domain"]) == (site["name"], site["domain"])


async def test_changing_a_site_is_audited_with_the_difference(harness: Harness) -> None:
    site = await create_site(harness)
    new_name = f"Audited {unique()}"
    response = await harness.call(
        "PATCH", path(site["id"]), role="admin", json={"name": new_name, "domain": site["domain"]}
    )
    await body_of(response, 200)
    entry = await the_audit_entry(harness, "site.update", site["id"])
    assert json.loads(entry["details"]) == {"name": [site["name"], new_name]}


async def test_changing_an_unknown_site_is_404(harness: Harness) -> None:
    response = await harness.call("PATCH", path(99999999), role="admin", json={"is_active": False})
    await body_of(response, 404)


async def test_creating_a_site_is_audited(harness: Harness) -> None:
    site = await create_site(harness)
    entry = await the_audit_entry(harness, "site.create", site["id"])
    assert json.loads(entry["details"]) == {"name": site["name"], "domain": site["domain"]}


async def test_an_admin_deletes_a_site(harness: Harness) -> None:
    site = await create_site(harness)
    assert (await harness.call("DELETE", path(site["id"]), role="admin")).status == 204
    await body_of(await harness.call("GET", path(site["id"]), role="admin"), 404)


async def test_deleting_a_site_is_audited(harness: Harness) -> None:
    site = await create_site(harness)
    assert (await harness.call("DELETE", path(site["id"]), role="admin")).status == 204
    entry = await the_audit_entry(harness, "site.delete", site["id"])
    assert json.loads(entry["details"]) == {"name": site["name"], "domain": site["domain"]}


async def test_deleting_a_site_removes_its_memberships(harness: Harness) -> None:
    site = await create_site(harness)
    user = harness.users["author"]
    assert (await harness.call("PUT", path(site["id"], user.id), role="admin")).status == 204
    assert (await harness.call("DELETE", path(site["id"]), role="admin")).status == 204
    count = sa.select(sa.func.count()).select_from(SiteUser).where(SiteUser.site_id == site["id"])
    assert await harness.scalar(count) == 0


async def test_deleting_an_unknown_site_is_404(harness: Harness) -> None:
    await body_of(await harness.call("DELETE", path(99999999), role="admin"), 404)


# Validation and uniqueness


async def test_an_invalid_domain_fails_validation(harness: Harness) -> None:
    for domain in (
        "",
        "not a domain",
        "http://example.com",
        "example.com/path",
        "-leading.example.com",
        "trailing-.example.com",
        "double..dot.com",
        "under_score.com",
        "example.com:port",
        "a" * 64 + ".com",
    ):
        response = await harness.call(
            "POST", SITES, role="admin", json={"name": f"Bad {unique()}", "domain": domain}
        )
        body = await body_of(response, 422)
        assert body["code"] == "validation_failed", domain
        assert body["errors"][0]["loc"] == ["body", "domain"], domain


async def test_an_invalid_domain_in_a_patch_fails_validation(harness: Harness) -> None:
    site = await create_site(harness)
    response = await harness.call("PATCH", path(site["id"]), role="admin", json={"domain": "a b"})
    await body_of(response, 422)


async def test_an_empty_name_fails_validation(harness: Harness) -> None:
    response = await harness.call(
        "POST", SITES, role="admin", json={"name": "   ", "domain": f"{unique()}.example.com"}
    )
    await body_of(response, 422)


async def test_a_duplicate_name_is_a_conflict(harness: Harness) -> None:
    site = await create_site(harness)
    response = await harness.call(
        "POST",
        SITES,
        role="admin",
        json={"name": site["name"], "domain": f"{unique()}.example.com"},
    )
    assert (await body_of(response, 409))["code"] == "site_exists"


async def test_a_duplicate_domain_is_a_conflict_whatever_its_case(harness: Harness) -> None:
    site = await create_site(harness)
    response = await harness.call(
        "POST",
        SITES,
        role="admin",
        json={"name": f"Other {unique()}", "domain": site["domain"].upper()},
    )
    assert (await body_of(response, 409))["code"] == "site_exists"


async def test_changing_to_another_sites_name_or_domain_is_a_conflict(harness: Harness) -> None:
    first, second = await create_site(harness), await create_site(harness)
    for field in ("name", "domain"):
        response = await harness.call(
            "PATCH", path(second["id"]), role="admin", json={field: first[field]}
        )
        assert (await body_of(response, 409))["code"] == "site_exists", field


# Membership


async def test_a_member_is_added_and_listed(harness: Harness) -> None:
    site = await create_site(harness)
    user = harness.users["editor"]
    assert (await harness.call("PUT", path(site["id"], user.id), role="admin")).status == 204
    assert await members(harness, site["id"]) == [
        {"user_id": user.id, "username": user.username, "email": user.email}
    ]


async def test_members_are_listed_by_username(harness: Harness) -> None:
    site = await create_site(harness)
    for role in ("viewer", "author", "editor"):
        user_id = harness.users[role].id
        assert (await harness.call("PUT", path(site["id"], user_id), role="admin")).status == 204
    assert [m["username"] for m in await members(harness, site["id"])] == [
        "author1",
        "editor1",
        "viewer1",
    ]


async def test_adding_a_member_twice_is_harmless_and_audited_once(harness: Harness) -> None:
    site = await create_site(harness)
    user = harness.users["viewer"]
    for _ in range(2):
        assert (await harness.call("PUT", path(site["id"], user.id), role="admin")).status == 204
    assert len(await members(harness, site["id"])) == 1
    query = f"filter[action_type]=site.member_add&filter[entity_id]={site['id']}"
    body = await body_of(await harness.call("GET", f"/api/v1/audit-log?{query}", role="admin"), 200)
    assert [json.loads(entry["details"]) for entry in body["data"]] == [{"user_id": user.id}]


async def test_a_member_is_removed(harness: Harness) -> None:
    site = await create_site(harness)
    user = harness.users["editor"]
    assert (await harness.call("PUT", path(site["id"], user.id), role="admin")).status == 204
    assert (await harness.call("DELETE", path(site["id"], user.id), role="admin")).status == 204
    assert await members(harness, site["id"]) == []
    entry = await the_audit_entry(harness, "site.member_remove", site["id"])
    assert json.loads(entry["details"]) == {"user_id": user.id}


async def test_removing_a_user_who_is_not_a_member_is_404(harness: Harness) -> None:
    site = await create_site(harness)
    await body_of(
        await harness.call("DELETE", path(site["id"], harness.users["viewer"].id), role="admin"),
        404,
    )


async def test_membership_of_an_unknown_site_is_404(harness: Harness) -> None:
    user_id = harness.users["viewer"].id
    await body_of(await harness.call("GET", f"{SITES}/99999999/users", role="admin"), 404)
    await body_of(await harness.call("PUT", path(99999999, user_id), role="admin"), 404)
    await body_of(await harness.call("DELETE", path(99999999, user_id), role="admin"), 404)


async def test_adding_an_unknown_user_is_404(harness: Harness) -> None:
    site = await create_site(harness)
    await body_of(await harness.call("PUT", path(site["id"], 99999999), role="admin"), 404)
    assert await members(harness, site["id"]) == []


# Permissions


async def test_a_viewer_can_list_and_read_sites_and_members(harness: Harness) -> None:
    site = await create_site(harness)
    listed = await body_of(
        await harness.call("GET", f"{SITES}?filter[id]={site['id']}", role="viewer"), 200
    )
    assert [s["id"] for s in listed["data"]] == [site["id"]]
    assert (await body_of(await harness.call("GET", path(site["id"]), role="viewer"), 200))[
        "data"
    ] == site
    assert await members(harness, site["id"], role="viewer") == []


async def test_a_viewer_cannot_create_a_site(harness: Harness) -> None:
    token = unique()
    response = await harness.call(
        "POST",
        SITES,
        role="viewer",
        json={"name": f"Nope {token}", "domain": f"{token}.example.com"},
    )
    assert (await body_of(response, 403))["code"] == "permission_denied"
    listed = await body_of(
        await harness.call("GET", f"{SITES}?filter[name]=Nope {token}", role="admin"), 200
    )
    assert listed["meta"]["total"] == 0


async def test_an_editor_cannot_change_delete_or_add_members(harness: Harness) -> None:
    site = await create_site(harness)
    user_id = harness.users["editor"].id
    for method, url, payload in (
        ("PATCH", path(site["id"]), {"is_active": False}),
        ("DELETE", path(site["id"]), None),
        ("PUT", path(site["id"], user_id), None),
        ("DELETE", path(site["id"], user_id), None),
    ):
        response = await harness.call(method, url, role="editor", json=payload)
        assert (await body_of(response, 403))["code"] == "permission_denied", (method, url)


async def test_anonymous_callers_cannot_list_sites(harness: Harness) -> None:
    await body_of(await harness.call("GET", SITES), 401)
