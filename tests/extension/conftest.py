"""Fixtures for the browser-extension tests: Debian's Chromium driven by Playwright with the
built extension loaded, the local test pages on a local HTTP server, and the REAL model server
(`civicsense serve`) on the model the real pipeline registered (`trained_home`)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ext_support import MODEL, OUTPUT, PAGES, build, require_chromium

from tests_support import CIVICSENSE, free_port, start_server, stop_server


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def built_extension(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The extension as `make extension` builds it, into a temporary folder."""
    out = tmp_path_factory.mktemp("extension-build")
    return build.build_extension(dist=out / "dist", zip_path=out / "civicsense-extension.zip")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output readable
        pass


@pytest.fixture(scope="session")
def pages_url() -> Iterator[str]:
    """The local test pages, served on 127.0.0.1 from a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(PAGES)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _get_json(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


@dataclass
class ModelServer:
    url: str
    version_tag: str
    log: Path | None
    process: subprocess.Popen | None = field(repr=False)

    def infer(self, texts: list[str]) -> list[str]:
        """Labels straight from the server (V1), to compare the extension with."""
        body = json.dumps({"instances": texts}).encode()
        request = urllib.request.Request(f"{self.url}/v1/models/{MODEL}:predict", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return [p["label"] for p in json.load(response)["predictions"]]


def _served_from_the_image(settings) -> Iterator[ModelServer]:
    """The champion from the serving image, as KServe runs it (`make serve-container`)."""
    from civicsense.deploy.container import serve_container, stop
    from civicsense.orchestration.docker_runner import local_image

    served = serve_container(settings, local_image("civicsense-serving"),
                             local_image("civicsense-storage-initializer"), free_port())
    try:
        version_tag = _get_json(f"{served.url}/v2/models/{MODEL}")["versions"][0]
        yield ModelServer(served.url, version_tag, None, None)
    finally:
        stop(served.container_id, served.volume)


@pytest.fixture(scope="session")
def model_server(trained_home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """`civicsense serve` on a free port, serving models:/civicsense-sentiment@champion from the
    registry the real pipeline run filled; killed (its whole process group) at the end. With
    CIVICSENSE_EXTENSION_TARGET=container (`make test-extension-container`): the serving image."""
    if os.environ.get("CIVICSENSE_EXTENSION_TARGET") == "container":
        yield from _served_from_the_image(trained_home[0])
        return
    port = free_port()
    log = tmp_path_factory.mktemp("model-server") / "serve.log"
    # A credential's feedback refills one per 2 minutes: the 429 test's spent budget stays spent
    # until its click, however slow the machine (test_extension_feedback.py).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CIVICSENSE_FEEDBACK_RATE_PER_MINUTE": "0.5"}
    process, url = start_server([str(CIVICSENSE), "serve", "--port", str(port)], port, env, log)
    try:
        version_tag = _get_json(f"{url}/v2/models/{MODEL}")["versions"][0]
        yield ModelServer(url, version_tag, log, process)
    finally:
        stop_server(process)


@dataclass
class Browser:
    """Chromium with the extension loaded, and helpers to drive it like a user."""

    context: object
    worker: object
    extension_id: str
    pages_url: str
    output: Path

    def url(self, page: str) -> str:
        return f"chrome-extension://{self.extension_id}/{page}"

    def sw(self, script: str, arg=None):
        return self.worker.evaluate(script, arg)

    def reset(self, **settings) -> None:
        """Fresh storage, no saved Authorization header and no feedback credential, then the
        given settings (the options page's own format)."""
        self.sw("""async (settings) => {
            await chrome.storage.local.clear();
            await chrome.storage.session.clear();
            await civicsense.writeAuth("", null);
            await civicsense.writeCredential("", null);
            if (settings) await chrome.storage.local.set({settings});
        }""", settings or None)

    def storage(self, area: str = "local") -> dict:
        return self.sw(f"() => chrome.storage.{area}.get(null)")

    def open_page(self, name: str):
        page = self.context.new_page()
        page.goto(f"{self.pages_url}/{name}")
        page.wait_for_load_state("load")
        return page

    def tab_id(self, page) -> int:
        tab_id = self.sw(
            "async (url) => (await chrome.tabs.query({})).find(t => t.url === url)?.id", page.url)
        assert isinstance(tab_id, int), f"no tab for {page.url}"
        return tab_id

    def popup(self, page):
        """The popup for `page`'s tab, opened as the popped-out panel (popup.html?tab=ID)."""
        popup = self.context.new_page()
        popup.set_viewport_size({"width": 420, "height": 760})
        popup.goto(self.url(f"popup.html?tab={self.tab_id(page)}"))
        popup.wait_for_selector("body[data-ready=true]")
        return popup

    def analyze_page(self, page, expect: str = "done"):
        popup = self.popup(page)
        popup.click("#analyze-page")
        popup.wait_for_selector(f"#page[data-state={expect}]", timeout=60_000)
        return popup

    def shot(self, page, name: str, **kwargs) -> Path:
        path = self.output / f"{name}.png"
        page.screenshot(path=str(path), **kwargs)
        return path


@pytest.fixture(scope="session")
def browser(built_extension, pages_url, output_dir, tmp_path_factory) -> Iterator[Browser]:
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    ext = str(built_extension["dist"])
    args = [f"--disable-extensions-except={ext}", f"--load-extension={ext}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(chromium),
            headless=True, args=args, viewport={"width": 1280, "height": 900})
        try:
            worker = (context.service_workers[0] if context.service_workers
                      else context.wait_for_event("serviceworker", timeout=30_000))
            extension_id = worker.url.split("/")[2]
            yield Browser(context, worker, extension_id, pages_url, output_dir)
        finally:
            context.close()

