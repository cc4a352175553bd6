"""`authorize`: anonymous callers, missing permissions and the `.own` rule for owned resources."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from realtime_cms.errors import Forbidden, Unauthorized
from realtime_cms.principal import Principal, anonymous, system
from realtime_cms.rbac.authorize import authorize, is_allowed


@dataclass
class Document:
    owner_id: int | None


@dataclass
class Unowned:
    title: str


def user(*permissions: str, user_id: int = 7) -> Principal:
    return Principal(user_id=user_id, username=f"user{user_id}", permissions=frozenset(permissions))


def test_an_anonymous_caller_is_unauthorized() -> None:
    with pytest.raises(Unauthorized) as caught:
        authorize(anonymous(), "content.view")
    assert caught.value.status == 401


def test_an_anonymous_caller_is_unauthorized_even_on_an_unowned_resource() -> None:
    with pytest.raises(Unauthorized):
        authorize(anonymous(), "content.update", Document(owner_id=None))


def test_a_user_holding_the_permission_is_allowed() -> None:
    authorize(user("content.view"), "content.view")


def test_a_user_without_the_permission_is_forbidden_with_permission_denied() -> None:
    with pytest.raises(Forbidden) as caught:
        authorize(user("content.view"), "content.delete")
    assert (caught.value.status, caught.value.code) == (403, "permission_denied")
    assert "content.delete" in caught.value.message


def test_the_system_principal_acts_with_the_permissions_it_was_given() -> None:
    authorize(system(frozenset({"workers.manage"})), "workers.manage")
    with pytest.raises(Forbidden):
        authorize(system(frozenset()), "workers.manage")


def test_the_full_permission_grants_the_action_on_anyones_resource() -> None:
    authorize(user("content.update"), "content.update", Document(owner_id=99))


def test_the_own_permission_grants_the_action_on_ones_own_resource() -> None:
    authorize(user("content.update.own", user_id=7), "content.update", Document(owner_id=7))


def test_the_own_permission_does_not_grant_the_action_on_someone_elses_resource() -> None:
    with pytest.raises(Forbidden) as caught:
        authorize(user("content.update.own", user_id=7), "content.update", Document(owner_id=8))
    assert caught.value.code == "permission_denied"


def test_the_own_permission_does_not_grant_the_action_on_a_resource_without_owner() -> None:
    with pytest.raises(Forbidden):
        authorize(user("content.update.own"), "content.update", Document(owner_id=None))


def test_the_own_permission_does_not_grant_the_action_without_a_resource() -> None:
    with pytest.raises(Forbidden):
        authorize(user("content.update.own"), "content.update")


def test_the_own_permission_does_not_apply_to_resources_that_have_no_owner_field() -> None:
    with pytest.raises(Forbidden):
        authorize(user("content.update.own"), "content.update", Unowned(title="x"))


def test_owning_a_resource_grants_nothing_without_the_own_permission() -> None:
    assert not is_allowed(user("content.view", user_id=7), "content.update", Document(owner_id=7))


def test_the_own_permission_of_one_action_does_not_grant_another() -> None:
    assert not is_allowed(
        user("content.update.own", user_id=7), "content.delete", Document(owner_id=7)
    )
