"""Every page of the web UI, over the demo's data, checked by axe-core in the real headless
Chromium: no serious or critical accessibility violation. Each page is also photographed, full
length; `make screenshots` writes the pictures to docs/screenshots/ (the README shows them).

axe-core comes from the npm registry through `tests/ui/axe/package-lock.json` (`npm ci` there:
`make test` and `.ci/run` do it) and is injected into each page by the WebDriver, so the pages
themselves load nothing but Ramplight's own assets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from ramplight import control, release
from ramplight.control import users
from ramplight.demo.simulation import FLAG, run_demo
from ramplight.server.run import ServerThread, free_port
from ramplight.settings import Settings
from ramplight.store import open_store
from tests.ui.conftest import PASSWORD, browser_paths

AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = os.environ.get("RAMPLIGHT_SCREENSHOTS")
"""Where the pictures go (`make screenshots`: docs/screenshots); unset, a temporary directory."""


def axe_source() -> str:
    if not AXE.exists():
        reason = f"axe-core is not installed: run `npm ci` in {AXE.parents[2]}"
        if os.environ.get("RAMPLIGHT_REQUIRE_BROWSER") or os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return AXE.read_text()


@dataclass
class Demo:
    url: str
    request_id: str
    decision_id: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo's story (a 5 % stage, a 20 % stage the guardian rolled back, traces and eval
    scores), a second flag waiting for approval, and three people to sign in as."""
    browser_paths()
    axe_source()
    where = tmp_path_factory.mktemp("demo")
    settings = Settings(db=where / "demo.duckdb", port=free_port())
    with (where / "demo.txt").open("w") as out:
        run_demo(settings, conversations=6000, seed=3, serve=False, as_json=False, console=Console(file=out))
    store = open_store(settings)
    try:
        users.create_user(store, "ana", "admin", PASSWORD)
        users.create_user(store, "eve", "editor", PASSWORD)
        flag = store.get_flag(FLAG)
        assert flag is not None
        doc = {
            "key": "answer_model_route",
            "type": "string",
            "assignment_unit": "conversation",
            "description": "route long answers to the larger model",
            "variations": [{"key": "small", "value": "gpt-small"}, {"key": "large", "value": "gpt-large"}],
            "environments": {
                "production": {
                    "default_variation": "small",
                    "off_variation": "small",
                    "rollout": {"weights": {"small": 90, "large": 10}},
                }
            },
        }
        control.create_flag(store, doc, "user:eve")
        plan = {
            "flag_key": "answer_model_route",
            "environment": "production",
            "candidate": "large",
            "approvers": 1,
        }
        release.save_plan(store, plan, None, "user:eve")
        (rollback,) = [d for d in store.decisions(FLAG) if d.state == "rollback"]
        request = release.propose(
            store, "answer_model_route", "production", "expand", "user:eve", "eve",
            "latency and cost hold at 10 %", percent=25,
        )  # fmt: skip
    finally:
        store.close()
    server = ServerThread(settings).start()
    try:
        yield Demo(server.url, request["request_id"], rollback.decision_id)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chrome(demo: Demo) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1280,900", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):  # fmt: skip
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.set_page_load_timeout(60)
    browser.set_script_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


def violations(browser: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page now in the browser."""
    browser.execute_script(axe_source())
    found: list[dict[str, Any]] = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));"
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def photograph(browser: Any, name: str, directory: Path) -> Path:
    """The whole page, not only the window: the window grows to the document's height first
    (of a page taller than the window, the first screenful is kept too, as `NAME-top.png`)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    if int(height) > 900:
        browser.save_screenshot(str(directory / f"{name}-top.png"))
    browser.set_window_size(1280, min(max(int(height), 600), 8000))
    path = directory / f"{name}.png"
    browser.save_screenshot(str(path))
    browser.set_window_size(1280, 900)
    return path


PAGES = [
    ("flags", "/", "table.flags"),
    ("flag", f"/flags/{FLAG}", "svg.difference-chart"),
    ("flag-approval", "/flags/answer_model_route", "#act-title"),
    ("new-flag", "/new-flag", "#variations"),
    ("requests", "/requests", "h1"),
    ("users", "/users", "h1"),
]


def test_every_page_has_no_serious_accessibility_violation_and_is_photographed(
    demo: Demo, chrome: Any, tmp_path: Path
) -> None:
    directory = Path(SHOTS) if SHOTS else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    problems: dict[str, list[dict[str, Any]]] = {}

    chrome.get(demo.url + "/login")
    WebDriverWait(chrome, 30).until(seen.presence_of_element_located((By.ID, "name")))
    problems["login"] = violations(chrome)
    photograph(chrome, "login", directory)
    chrome.find_element(By.ID, "name").send_keys("ana")
    chrome.find_element(By.ID, "password").send_keys(PASSWORD)
    chrome.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(chrome, 30).until(seen.presence_of_element_located((By.CSS_SELECTOR, "table.flags")))

    pages = [*PAGES, ("decision", f"/flags/{FLAG}/decisions/{demo.decision_id}", "table.metrics")]
    for name, path, ready in pages:
        chrome.get(demo.url + path)

        def drawn(driver: Any, ready: str = ready) -> bool:
            """The difference series is computed on the server's worker (the page waits 5 s for
            it, then says it is being computed): reload until it is drawn."""
            if driver.find_elements(By.CSS_SELECTOR, ready):
                return True
            driver.refresh()
            return False

        WebDriverWait(chrome, 120, poll_frequency=2, ignored_exceptions=(WebDriverException,)).until(drawn)
        problems[name] = violations(chrome)
        shot = photograph(chrome, name, directory)
        assert shot.stat().st_size > 10_000, f"{name}: the picture is blank"
    # The pages show what the pictures are for: the story's rollback and the waiting request.
    chrome.get(demo.url + f"/flags/{FLAG}")
    assert "guardian" in chrome.find_element(By.CSS_SELECTOR, "section[aria-labelledby=dec-title]").text
    chrome.get(demo.url + "/requests")
    assert "answer_model_route" in chrome.find_element(By.TAG_NAME, "main").text
    assert {name: found for name, found in problems.items() if found} == {}
    # The check sees what it is for: an image without a text alternative planted in a page is one.
    chrome.execute_script("document.querySelector('main').append(document.createElement('img'))")
    assert "image-alt" in {v["id"] for v in violations(chrome)}
