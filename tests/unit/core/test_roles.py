"""Roles, their permissions, token delegation and the principal's authorisation check."""

from __future__ import annotations

import contextvars
from collections.abc import Callable

import pytest

from spillguard.core.errors import AuthenticationRequired, PermissionDenied
from spillguard.core.roles import (
    ROLE_DESCRIPTIONS,
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    RequestContext,
    Role,
    begin_request,
    current_request,
    role_may_delegate,
)


def _user(role: Role) -> Principal:
    return Principal("user", 7, "someone@example.com", role)


def test_every_role_has_permissions_and_a_description() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert set(ROLE_DESCRIPTIONS) == set(Role)
    assert {r.value for r in Role} == {"admin", "helpdesk", "security", "dpo", "auditor"}


def test_admin_holds_every_permission() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)


def test_auditor_is_read_only() -> None:
    granted = ROLE_PERMISSIONS[Role.AUDITOR]
    assert not any(p.value.endswith(":manage") for p in granted)
    writes = {p for p in granted if not p.value.endswith(":view")}
    assert writes == {Permission.TOKENS_OWN}  # an auditor may hold API tokens, nothing more
    assert {Permission.AUDIT_VIEW, Permission.USERS_VIEW, Permission.STATUS_VIEW} <= granted


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.ADMIN])
def test_only_admin_manages_users_and_tokens(role: Role) -> None:
    assert Permission.USERS_MANAGE not in ROLE_PERMISSIONS[role]
    assert Permission.TOKENS_MANAGE not in ROLE_PERMISSIONS[role]
    assert Permission.TOKENS_OWN in ROLE_PERMISSIONS[role]
    assert Permission.STATUS_VIEW in ROLE_PERMISSIONS[role]


@pytest.mark.parametrize(
    ("role", "may_read_audit"),
    [
        (Role.ADMIN, True),
        (Role.AUDITOR, True),
        (Role.HELPDESK, False),
        (Role.SECURITY, False),
        (Role.DPO, False),
    ],
)
def test_who_reads_the_audit_trail(role: Role, may_read_audit: bool) -> None:
    assert _user(role).can(Permission.AUDIT_VIEW) is may_read_audit


A, H, S, D, U = Role.ADMIN, Role.HELPDESK, Role.SECURITY, Role.DPO, Role.AUDITOR
# Rows: the owner's role; columns: the role a token would carry.  Only helpdesk (and
# admin) enrol and command devices, and security reports them lost, so nobody else may
# hold a helpdesk token, and an auditor may not hold a security one.
# Only admin and dpo may hold a dpo token: it imports customers and reveals contacts.
DELEGATION = {
    A: {A: True, H: True, S: True, D: True, U: True},
    H: {A: False, H: True, S: False, D: False, U: False},
    S: {A: False, H: False, S: True, D: False, U: False},
    D: {A: False, H: False, S: False, D: True, U: False},
    U: {A: False, H: False, S: False, D: False, U: True},
}


@pytest.mark.parametrize(
    ("owner", "token", "allowed"),
    [(o, t, ok) for o, row in DELEGATION.items() for t, ok in row.items()],
    ids=lambda v: v.value if isinstance(v, Role) else str(v),
)
def test_role_may_delegate_matrix(owner: Role, token: Role, allowed: bool) -> None:
    assert role_may_delegate(owner, token) is allowed


def test_a_delegated_role_never_grants_more() -> None:
    for owner in Role:
        for token in Role:
            if role_may_delegate(owner, token):
                for permission in Permission:
                    if _user(token).can(permission):
                        assert _user(owner).can(permission), (owner, token, permission)


def _in_fresh_request(body: Callable[[RequestContext], None]) -> None:
    """Run ``body(ctx)`` in its own context so no request state leaks between tests."""

    def run() -> None:
        ctx = begin_request("req-test")
        assert current_request() is ctx
        assert ctx.authz_checked is False
        body(ctx)

    contextvars.Context().run(run)


def test_anonymous_require_asks_for_authentication_and_marks_checked() -> None:
    def body(ctx: RequestContext) -> None:
        with pytest.raises(AuthenticationRequired):
            Principal.anonymous("192.0.2.1").require(Permission.STATUS_VIEW)
        assert ctx.authz_checked is True

    _in_fresh_request(body)


def test_missing_permission_is_denied_and_marks_checked() -> None:
    def body(ctx: RequestContext) -> None:
        with pytest.raises(PermissionDenied) as caught:
            _user(Role.HELPDESK).require(Permission.USERS_VIEW)
        assert "helpdesk" in caught.value.detail
        assert "users:view" in caught.value.detail
        assert ctx.authz_checked is True

    _in_fresh_request(body)


def test_granted_permission_passes_and_marks_checked() -> None:
    def body(ctx: RequestContext) -> None:
        _user(Role.AUDITOR).require(Permission.AUDIT_VIEW)
        assert ctx.authz_checked is True

    _in_fresh_request(body)


def test_require_authenticated() -> None:
    def body(ctx: RequestContext) -> None:
        with pytest.raises(AuthenticationRequired):
            Principal.anonymous().require_authenticated()
        assert ctx.authz_checked is True
        _user(Role.DPO).require_authenticated()

    _in_fresh_request(body)


def test_require_outside_a_request_still_decides() -> None:
    def body() -> None:
        assert current_request() is None
        with pytest.raises(PermissionDenied):
            _user(Role.DPO).require(Permission.USERS_MANAGE)

    contextvars.Context().run(body)


def test_anonymous_and_system_principals() -> None:
    nobody = Principal.anonymous("198.51.100.4", "r-1")
    assert not nobody.authenticated
    assert not any(nobody.can(p) for p in Permission)
    assert (nobody.source_ip, nobody.request_id) == ("198.51.100.4", "r-1")
    system = Principal.system("cli")
    assert system.authenticated and system.label == "cli"
    assert all(system.can(p) for p in Permission)
