"""A real headless Chromium (Debian's `chromium` and `chromedriver`, driven by Selenium) against
the real server on 127.0.0.1. Without the browser these tests skip — except when
RAMPLIGHT_REQUIRE_BROWSER or CI is set (.ci/run sets the first): then they fail."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import RunningServer

PASSWORD = "correct horse battery staple"


def browser_paths() -> tuple[str, str]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        reason = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("RAMPLIGHT_REQUIRE_BROWSER") or os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return browser, driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1280,900",
        # No network but this machine: a page that needs anything from outside fails here.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_page_load_timeout(30)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def add_user(server: RunningServer) -> Callable[[str, str], None]:
    def add(name: str, role: str) -> None:
        response = server.admin.post("/api/users", json={"name": name, "role": role, "password": PASSWORD})
        assert response.status_code == 201, response.text

    return add


@pytest.fixture
def sign_in(server: RunningServer) -> Iterator[Callable[[str], tuple[httpx.Client, str]]]:
    """An HTTP client signed in as a user through the sign-in form, and its session's CSRF token."""
    clients: list[httpx.Client] = []

    def signed_in(name: str) -> tuple[httpx.Client, str]:
        client, csrf = _sign_in(server, name)
        clients.append(client)
        return client, csrf

    yield signed_in
    for client in clients:
        client.close()


def _sign_in(server: RunningServer, name: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=server.url, timeout=60)
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post("/login", data={"csrf": csrf.group(1), "name": name, "password": PASSWORD})
    assert answer.status_code == 303 and "ramplight_session" in client.cookies
    page = client.get("/")
    session_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert session_csrf is not None
    return client, session_csrf.group(1)
