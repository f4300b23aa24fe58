"""Users and the login page: argon2 hashes, throttling, lockout, CSRF, sessions."""

from __future__ import annotations

import pytest

from fhir_server.auth.clients import ClientSpecError, build_user
from fhir_server.auth.passwords import LoginGuard, verify_password
from fhir_server.settings import AuthSettings, Settings
from tests.auth.conftest import PASSWORD, Browser, World, forms, page_kind


def test_passwords_are_kept_as_argon2id_hashes() -> None:
    user = build_user(username="nina", password="a long enough password", kind="staff", roles=["nurse"])
    assert user.password_hash.startswith("$argon2id$")
    assert "a long enough password" not in user.password_hash
    assert verify_password(user.password_hash, "a long enough password")
    assert not verify_password(user.password_hash, "a long enough passwore")


@pytest.mark.parametrize(("kwargs", "element"), [
    ({"password": "short"}, "password"),
    ({"kind": "robot"}, "kind"),
    ({"roles": ["surgeon"]}, "roles"),
    ({"roles": []}, "roles"),
    ({"username": "no spaces please"}, "username"),
    ({"patient": "pat-a"}, "patient"),  # a staff user linked to a Patient
])
def test_user_rules(kwargs: dict[str, object], element: str) -> None:
    args: dict[str, object] = {"username": "nina", "password": "a long enough password", "kind": "staff",
                               "roles": ["nurse"]}
    args.update(kwargs)
    with pytest.raises(ClientSpecError) as caught:
        build_user(**args)  # type: ignore[arg-type]
    assert caught.value.element == element


async def _login(http_browser: Browser, username: str, password: str) -> tuple[int, str]:
    page = await http_browser.go("/auth/login")
    response = await http_browser.submit(page, values={"username": username, "password": password})
    return response.status_code, response.text


async def test_login_sets_a_session_and_logout_ends_it(world: World) -> None:
    async with world.http() as http:
        browser = Browser(http)
        status, text = await _login(browser, "alice", PASSWORD)
        assert status == 200 and page_kind(text) == "Signed in"
        cookie = http.cookies.get("infirmary_session")
        assert cookie
        sid = cookie.rsplit(".", 1)[0]
        assert world.service.store.get_session(sid) is not None
        page = await http.get("/auth/logout")
        await http.post("/auth/logout", data=dict(forms(page.text)[0].fields))
        assert world.service.store.get_session(sid) is None


async def test_wrong_and_unknown_credentials_get_the_same_answer(world: World) -> None:
    async with world.http() as http:
        browser = Browser(http)
        wrong = await _login(browser, "alice", "not the password")
        unknown = await _login(browser, "nobody-here", "not the password")
    assert wrong[0] == unknown[0] == 401
    assert "Invalid username or password." in wrong[1] and "Invalid username or password." in unknown[1]


async def test_account_locks_after_repeated_failures_and_an_admin_unlock_reopens_it(world: World) -> None:
    limit = world.service.settings.auth.login_max_failures
    async with world.http() as http:
        browser = Browser(http)
        for _ in range(limit - 1):
            assert (await _login(browser, "bob", "wrong password!"))[0] == 401
        status, text = await _login(browser, "bob", "wrong password!")
        assert status == 429 and "Too many failed attempts" in text
        # locked: even the right password is refused
        status, _ = await _login(browser, "bob", PASSWORD)
        assert status == 429
        user = world.service.store.get_user_by_username("bob")
        assert user is not None and user.locked_until > 0
        world.service.store.set_login_state(user.id, 0, 0.0)
        status, _ = await _login(browser, "bob", PASSWORD)
        assert status == 200


def test_an_address_with_too_many_failures_is_throttled(world: World, auth_settings: Settings) -> None:
    store = world.service.store
    guard = LoginGuard(store, max_failures=100, lockout_s=60, window_s=300, max_failures_per_address=3)
    for name in ("x1", "x2", "x3"):
        assert guard.login(name, "whatever pw", "10.9.9.9").outcome == "invalid"
    # the right password from the throttled address is refused; from another address it works
    assert guard.login("alice", PASSWORD, "10.9.9.9").outcome == "throttled"
    assert guard.login("alice", PASSWORD, "10.9.9.8").outcome == "ok"
    assert AuthSettings().throttle_max_failures > AuthSettings().login_max_failures


async def test_forms_without_the_csrf_token_are_refused(world: World) -> None:
    async with world.http() as http:
        await http.get("/auth/login")  # sets the CSRF cookie
        response = await http.post("/auth/login", data={"username": "alice", "password": PASSWORD})
        assert response.status_code == 403
        response = await http.post("/auth/login", data={"username": "alice", "password": PASSWORD,
                                                        "csrf": "0" * 64})
        assert response.status_code == 403
    async with world.http() as fresh:  # a form posted from elsewhere: no CSRF cookie at all
        page = await fresh.get("/auth/login")
        token = dict(forms(page.text)[0].fields)["csrf"]
    async with world.http() as other:
        response = await other.post("/auth/login", data={"username": "alice", "password": PASSWORD, "csrf": token})
    assert response.status_code == 403


async def test_pages_forbid_framing_and_caching(world: World) -> None:
    async with world.http() as http:
        response = await http.get("/auth/login")
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/auth" in cookie


async def test_login_redirects_only_to_the_authorization_endpoint(world: World) -> None:
    async with world.http() as http:
        page = await http.get("/auth/login", params={"next": "https://evil.example.org/"})
        fields = dict(forms(page.text)[0].fields)
        assert fields["next"] == ""
        response = await http.post("/auth/login", data={**fields, "username": "alice", "password": PASSWORD,
                                                        "next": "//evil.example.org/auth/authorize?x"})
    assert response.status_code == 200 and "location" not in response.headers
