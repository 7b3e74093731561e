"""Keys, scopes and signed sessions (service.access), in-process: what a forged, expired or revoked session gets."""

from __future__ import annotations

import pytest

from errors import ApiError
from service.access import Door, requires, scope_of
from settings import ApiKeySpec, Settings

KEYS = {"k-admin": ApiKeySpec(scopes=["admin"]), "k-view": ApiKeySpec(scopes=["monitor"], models=["default"], rpm=2, name="Wall")}


@pytest.fixture()
def door() -> Door:
    return Door(Settings(api_keys=KEYS, session_secret="s" * 32))


def test_a_session_is_the_keys_until_it_expires(door):
    viewer = door.principal_for_key("k-view")
    token = door.session_token(viewer, now=1000.0)
    assert door.principal_for_session(token, now=1000.0 + 3600) == viewer
    assert door.principal_for_session(token, now=1000.0 + 13 * 3600) is None  # SESSION_HOURS 12
    assert "k-view" not in token  # the key itself never travels in the cookie


def test_a_forged_or_foreign_session_is_nobody(door):
    token = door.session_token(door.principal_for_key("k-view"), now=1e12)
    payload, signature = token.split(".")
    admin_payload = door.session_token(door.principal_for_key("k-admin"), now=1e12).split(".")[0]
    assert door.principal_for_session(f"{admin_payload}.{signature}", now=1e12) is None  # someone else's payload
    assert door.principal_for_session(f"{payload}.{'0' * 64}", now=1e12) is None
    assert door.principal_for_session("garbage", now=1e12) is None
    other_server = Door(Settings(api_keys=KEYS, session_secret="t" * 32))
    assert other_server.principal_for_session(token, now=1e12) is None
    revoked = Door(Settings(api_keys={"k-admin": KEYS["k-admin"]}, session_secret="s" * 32))
    assert revoked.principal_for_session(token, now=1e12) is None  # the key was removed: its sessions end


def test_scopes_models_and_rate(door):
    viewer = door.principal_for_key("k-view")
    assert door.check(viewer, "monitor") == viewer
    with pytest.raises(ApiError) as refused:
        door.check(viewer, "gallery:write")
    assert refused.value.status == 403 and "change galleries" in str(refused.value)
    with pytest.raises(ApiError):
        door.check(viewer, "monitor", model="sface")  # only the default model
    door.check(viewer, "monitor", model="faceplugin-r512")  # "default" names it
    with pytest.raises(ApiError) as limited:
        door.check(viewer, "monitor")  # the third call in a minute (rpm 2)
    assert limited.value.status == 429 and int(limited.value.headers["Retry-After"]) >= 1
    with pytest.raises(ApiError) as nobody:
        door.check(door.principal_for_key("nope"), "monitor")
    assert nobody.value.status == 401


def test_a_handler_without_a_declared_scope_needs_admin():
    def undeclared():
        return None

    assert scope_of(undeclared) == "admin"
    assert scope_of(requires("monitor")(lambda: None)) == "monitor"
    with pytest.raises(ValueError):
        requires("everything")
