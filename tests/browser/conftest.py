"""Browser tests: headless Chromium (Debian's `chromium`, driven by Playwright through
`executable_path`: Playwright's own browser download is not needed) against a live service.

Where no chromium is installed the tests are skipped with the reason; in CI (CI=true), where
deploy/bootstrap.sh installs it, they fail instead: a skip there would hide a broken setup.
Screenshots of every step go to tests/browser/artifacts/<test>/ (gitignored)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import LiveServer, running_server
from tests.requires import missing

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    found = os.environ.get("ELASTICACHE_LOCAL_CHROMIUM") or next(filter(None, map(shutil.which, CANDIDATES)), None)
    problem = None
    if found is None:
        problem = "no chromium on PATH (Debian/Ubuntu: apt-get install chromium; deploy/bootstrap.sh --dev does it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (pip install -e '.[dev]')"
    if problem is None and found is not None:
        return found
    missing(str(problem))


# Per module, not per session: Playwright's sync API keeps an asyncio loop running in the main
# thread while it is open, and every later test that calls asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        chromium = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # Networks of their own, so a session that also runs tests/api never meets them on an address.
    with running_server("process", tmp_path_factory.mktemp("elasticache-local-browser"),
                        ELASTICACHE_LOCAL_NODE_NETWORK="127.0.128.0/24",
                        ELASTICACHE_LOCAL_ENDPOINT_NETWORK="127.0.129.0/24") as server:
        yield server


class Shots:
    """Numbered screenshots of one test's steps."""

    def __init__(self, page: Any, directory: Path) -> None:
        self.page = page
        self.directory = directory
        self.count = 0

    def __call__(self, step: str) -> Path:
        self.count += 1
        path = self.directory / f"{self.count:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser: Any, live: LiveServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A laptop-sized page that can reach the service and nothing else: a request anywhere but
    127.0.0.0/8 fails the test (the dashboard and /docs must work with no internet)."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=live.url)
    outside: list[str] = []

    def only_local(route: Any) -> None:
        host = route.request.url.split("/")[2].split(":")[0]
        if host.startswith("127."):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not outside, f"the page reached outside this machine: {outside}"
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def shots(page: Any, request: pytest.FixtureRequest) -> Shots:
    directory = ARTIFACTS / request.node.name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return Shots(page, directory)
