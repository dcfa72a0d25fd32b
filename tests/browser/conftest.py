"""The dashboard in a real browser: Debian's headless Chromium, driven by
Playwright, against a live muon that scripts/browser-test.sh started.

The script passes the server's address (`MUON_URL`), its data directory
(`MUON_DATA_DIR`, where the admin key is) and the built guests
(`MUON_GUESTS`). A session fixture deploys what the pages show: `hello` and
`greet` (two versions, for the rollback), the `digits` model and function,
`train-linear` and the `linear` dataset. Screenshots go to
target/ui-screenshots/, and the figures measured (first-load bytes, render
time per page) are printed at the end and written there as figures.json.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "ui-screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def linear_csv(rows: int) -> str:
    """`y = 2 x1 - 3 x2 + 0.5 x3 + 1` on a fixed sequence (the law of the Rust job tests)."""
    state = 0x2545F4914F6CDD1D
    mask = (1 << 64) - 1

    def unit() -> float:
        nonlocal state
        state ^= (state << 13) & mask
        state ^= state >> 7
        state ^= (state << 17) & mask
        return (state >> 11) / (1 << 53) * 2.0 - 1.0

    lines = ["x1,x2,x3,y"]
    for _ in range(rows):
        x = [unit(), unit(), unit()]
        y = 2.0 * x[0] - 3.0 * x[1] + 0.5 * x[2] + 1.0
        lines.append(f"{x[0]:.6f},{x[1]:.6f},{x[2]:.6f},{y:.6f}")
    return "\n".join(lines) + "\n"


def eventually(check: Callable[[], tuple[object, object]], limit_s: float = 10.0) -> None:
    """Until `check()` returns two equal values (the page's and the API's), at most `limit_s`:
    the page refreshes every few seconds, and the usage ledger lands a moment after a call."""
    deadline = time.monotonic() + limit_s
    while True:
        shown, wanted = check()
        if shown == wanted:
            return
        assert time.monotonic() < deadline, f"the page shows {shown!r}, the API says {wanted!r}"
        time.sleep(0.25)


@dataclass
class Muon:
    url: str
    key: str
    guests: Path
    api: httpx.Client
    figures: dict[str, object] = field(default_factory=dict)

    def component(self, name: str) -> bytes:
        path = self.guests / f"{name.replace('-', '_')}.wasm"
        if not path.exists():
            pytest.fail(f"{path} is missing: build the guests (scripts/build-functions.sh) or set MUON_GUESTS")
        return path.read_bytes()

    def deploy(self, name: str, component: str, **query: str) -> dict:
        response = self.api.put(f"/v1/functions/{name}", params=query, content=self.component(component),
                                headers={"content-type": "application/wasm"})
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, path: str, **params: object) -> dict:
        response = self.api.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="session")
def muon() -> Iterator[Muon]:
    url = os.environ.get("MUON_URL")
    if not url:
        pytest.fail("MUON_URL is not set: run the tests with scripts/browser-test.sh")
    key = (Path(os.environ["MUON_DATA_DIR"]) / "admin.key").read_text().strip()
    guests = Path(os.environ.get("MUON_GUESTS", REPO / "target/wasm32-wasip2/guest"))
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=60) as api:
        server = Muon(url=url, key=key, guests=guests, api=api)
        seed(server)
        yield server
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "figures.json").write_text(json.dumps(server.figures, indent=2) + "\n")


def seed(server: Muon) -> None:
    """What the pages show, deployed through the API."""
    server.deploy("hello", "hello", public="true", rollout="direct")
    server.deploy("greet", "hello", rollout="direct")
    server.deploy("greet", "hello", rollout="direct", memory_mb="96")
    model = (REPO / "examples/digits/digits.onnx").read_bytes()
    response = server.api.put("/v1/models/digits", content=model, headers={"content-type": "application/octet-stream"})
    assert response.status_code in (200, 201), response.text
    server.deploy("digits", "digits", models="digits", rollout="direct")
    server.deploy("train-linear", "train-linear", rollout="direct")
    response = server.api.put("/v1/datasets/linear", params={"label": "y", "split": "0.8,0.1,0.1", "seed": "3"},
                              content=linear_csv(400), headers={"content-type": "text/csv"})
    assert response.status_code == 201, response.text
    for _ in range(5):
        assert httpx.get(f"{server.url}/fn/default/hello?name=seed").status_code == 200


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/browser-test.sh installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


class Dashboard:
    """A signed-in tab, with the helpers the tests share."""

    def __init__(self, page: Page, server: Muon) -> None:
        self.page = page
        self.server = server
        self.requests: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))

    def open(self) -> None:
        self.page.goto(f"{self.server.url}/ui")

    def sign_in(self, key: str) -> None:
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()

    def go(self, route: str) -> float:
        """Navigates to `#/route`, waits until the page has rendered, and returns its render time in ms."""
        self.page.evaluate("(route) => { document.getElementById('main').dataset.rendered = 'false';"
                           " location.hash = '#/' + route; }", route)
        return self.rendered()

    def rendered(self) -> float:
        self.page.wait_for_selector("main[data-rendered='true']", timeout=15_000)
        return float(self.page.get_attribute("main", "data-render-ms") or "nan")

    def field(self, name: str, scope: str = "main") -> str:
        return self.page.locator(f"{scope} [data-field='{name}']").first.inner_text()

    def value(self, name: str, scope: str = "main") -> str | None:
        return self.page.locator(f"{scope} dd[data-field='{name}']").first.get_attribute("data-value")

    def screenshot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def error_text(self) -> str:
        self.page.wait_for_selector("#error:not([hidden])", timeout=10_000)
        return self.page.inner_text("#error")


@pytest.fixture()
def dashboard(browser: Browser, muon: Muon) -> Iterator[Dashboard]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    board = Dashboard(page, muon)
    board.open()
    board.sign_in(muon.key)
    board.rendered()
    yield board
    context.close()
    # No script error and no CSP violation on any page (Chromium logs both to the console).
    assert not [e for e in errors if "Failed to load resource" not in e], errors
    foreign = [u for u in board.requests if not u.startswith(muon.url) and not u.startswith(("data:", "blob:"))]
    assert not foreign, f"requests to other hosts: {foreign}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    path = SHOTS / "figures.json"
    if path.exists():
        terminalreporter.write_sep("-", "dashboard figures")
        terminalreporter.write_line(path.read_text().strip())
        terminalreporter.write_line(f"screenshots: {SHOTS}")
