"""The extension's trust boundary in a real Chromium: what a content script (the context a
hostile page can take over) may ask the service worker, where the Authorization header lives,
and where it may be sent. Every server here listens on 127.0.0.1."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests_support import send_json

CLASSES = ("negative", "neutral", "positive")
# What a remote host looks like to the extension: not loopback by name, so plain http:// to it
# must never carry the header (nothing resolves it: a request would fail, none is made).
REMOTE = "http://civicsense-remote.test"


@dataclass
class Recorder:
    """An HTTP server on 127.0.0.1 that records every request and answers like a model server
    (V2 metadata for GET, one V1 prediction for POST)."""

    url: str
    requests: list[dict] = field(default_factory=list)


class _RecordingHandler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.recorder.requests.append({"method": self.command, "path": self.path,
                                              "authorization": self.headers.get("Authorization")})
        body = ({"name": "civicsense-sentiment", "versions": ["9+recorded"], "ready": True}
                if self.command == "GET" else
                {"model_version": "9+recorded", "predictions": [
                    {"label": "neutral", "probabilities": {c: 1 / 3 for c in CLASSES}}]})
        send_json(self, body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
    server.recorder = Recorder(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.recorder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ext(browser, model_server):
    browser.reset(endpoint=model_server.url)
    yield browser
    browser.reset()
    for page in browser.context.pages[1:]:
        page.close()


def in_content_script(ext, page, func: str, arg=None):
    """Run `func` (JS source of an async function of one argument) in the page's top frame, in
    the extension's isolated world: the context content.js runs in, with the same
    chrome.runtime and chrome.storage a content script has."""
    return ext.sw(f"""async ([tabId, arg]) => {{
        const [frame] = await chrome.scripting.executeScript({{target: {{tabId}},
            world: "ISOLATED", args: [arg], func: {func}}});
        return frame.result;
    }}""", [ext.tab_id(page), arg])


SEND_ALL = """async (messages) => {
    const answers = [];
    for (const message of messages) {
        try { answers.push(await chrome.runtime.sendMessage(message)); }
        catch (e) { answers.push({ok: false, error: {kind: "threw", message: String(e)}}); }
    }
    return answers;
}"""


def send_from_content_script(ext, page, *messages: dict) -> list[dict]:
    return in_content_script(ext, page, SEND_ALL, list(messages))


def open_options(ext):
    options = ext.context.new_page()
    options.goto(ext.url("options.html"))
    options.wait_for_selector("body[data-ready=true]")
    return options


def save_header(ext, header: str) -> None:
    options = open_options(ext)
    options.fill("#authHeader", header)
    options.click("#save")
    options.wait_for_selector("#save-result.ok")
    options.close()


def test_content_script_cannot_use_privileged_handlers(ext, model_server, recorder):
    page = ext.open_page("article.html")
    chosen = {"endpoint": recorder.url, "protocol": "v2", "authHeader": "Bearer chosen"}
    tab_id = ext.tab_id(page)
    answers = send_from_content_script(
        ext, page,
        {"type": "test-connection", "settings": chosen},
        {"type": "test-connection"},
        {"type": "save-settings", "settings": chosen},
        {"type": "get-settings"},
        {"type": "analyze-page", "tabId": tab_id},
        {"type": "analyze-selection", "tabId": tab_id})
    assert [a["ok"] for a in answers] == [False] * 6
    assert [a["error"]["kind"] for a in answers] == ["forbidden"] * 6, answers
    assert all("is not for a content-script" in a["error"]["message"] for a in answers)
    assert recorder.requests == [], "no request went to the endpoint the page chose"
    assert ext.storage()["settings"]["endpoint"] == model_server.url, "settings unchanged"
    assert page.locator("civicsense-panel, civicsense-badge").count() == 0, "no analysis started"
    # The page's own scripts (the main world) have no extension messaging at all.
    assert page.evaluate("() => typeof globalThis.chrome?.runtime?.sendMessage") == "undefined"
    # The same request from the options page (an extension page) is served, and its header
    # goes over plain http:// to 127.0.0.1 (loopback): so the refusal above is the sender check.
    options = open_options(ext)
    answer = options.evaluate("(settings) => chrome.runtime.sendMessage({type: 'test-connection', "
                              "settings})", chosen)
    assert answer["ok"] and answer["versionTag"] == "9+recorded", answer
    assert recorder.requests == [{"method": "GET", "path": "/v2/models/civicsense-sentiment",
                                  "authorization": "Bearer chosen"}]


def test_content_script_classifies_only_inside_the_users_analysis(ext, model_server, recorder):
    page = ext.open_page("article.html")
    tab_id = ext.tab_id(page)
    text = "So happy and proud of everyone who volunteered today, what a wonderful result"
    outside = send_from_content_script(ext, page, {"type": "classify", "texts": [text]},
                                       {"type": "page-done", "done": 1, "total": 1},
                                       {"type": "page-progress", "done": 1, "total": 1})
    assert [a["error"]["kind"] for a in outside] == ["forbidden"] * 3
    assert "no analysis of this tab is running" in outside[0]["error"]["message"]
    # The worker's record of a user-started analysis, with two texts left in its budget.
    ext.sw("""async (tabId) => chrome.storage.session.set({[`run:${tabId}`]:
        {remaining: 2, counts: {_all: {negative: 0, neutral: 0, positive: 0}}}})""", tab_id)
    answers = send_from_content_script(
        ext, page,
        {"type": "classify", "texts": ["x"] * 257},
        {"type": "classify", "texts": [text, 42]},
        {"type": "classify", "texts": ["y" * 100_001]},
        {"type": "classify", "texts": [text, text, text]},
        # The saved settings are used: a page can't choose the endpoint, nor the header.
        {"type": "classify", "texts": [text], "settings": {"endpoint": recorder.url},
         "authHeader": "Bearer chosen"},
        # A page can't forge the counts that go into the history either.
        {"type": "page-done", "done": 1, "total": 1,
         "counts": {"_all": {"negative": 999, "neutral": 0, "positive": 0}}})
    assert [a["ok"] for a in answers] == [False, False, False, False, True, True], answers
    assert "at most 256 texts" in answers[0]["error"]["message"]
    assert "text 1 is not a string" in answers[1]["error"]["message"]
    assert "text 0 is not a string of at most 100000" in answers[2]["error"]["message"]
    assert "at most 2000 texts" in answers[3]["error"]["message"]
    label = answers[4]["results"][0]["label"]
    assert label == model_server.infer([text])[0]
    assert recorder.requests == []
    (day, counts), = ext.storage()["history"]["days"].items()
    assert counts == {"_all": {c: int(c == label) for c in CLASSES}}
    # The analysis is over: its budget is gone.
    after, = send_from_content_script(ext, page, {"type": "classify", "texts": [text]})
    assert after["error"]["kind"] == "forbidden"


def test_the_header_is_out_of_a_content_scripts_reach(ext, model_server):
    secret = f"Bearer secret-{secrets.token_hex(8)}"
    save_header(ext, secret)
    auth = ext.sw("() => civicsense.readAuth()")
    assert auth == {"header": secret, "origin": model_server.url}
    assert secret not in json.dumps(ext.storage("local"))
    page = ext.open_page("feed.html")
    seen = in_content_script(ext, page, """async () => {
        const out = {local: await chrome.storage.local.get(null)};
        try { out.session = await chrome.storage.session.get(null); }
        catch (e) { out.sessionError = String(e); }
        try { out.sync = await chrome.storage.sync.get(null); }
        catch (e) { out.syncError = String(e); }
        out.databases = (await indexedDB.databases()).map(d => d.name);
        return out;
    }""")
    assert secret not in json.dumps(seen) and "secret-" not in json.dumps(seen)
    assert "session" not in seen and "access" in seen["sessionError"].lower()
    assert "civicsense-secrets" not in seen["databases"]
    assert "civicsense-secrets" not in page.evaluate(
        "async () => (await indexedDB.databases()).map(d => d.name)")
    # The worker still sends it: the page is analyzed with the saved settings.
    ext.analyze_page(page)
    assert page.locator("civicsense-badge").count() == 14


def test_the_header_stays_with_the_endpoint_it_was_saved_for(ext, model_server, recorder):
    """A content script can rewrite chrome.storage.local: pointing the endpoint elsewhere
    does not take the header along."""
    save_header(ext, "Bearer bound-token")
    page = ext.open_page("feed.html")
    in_content_script(ext, page, """async (url) => {
        const {settings} = await chrome.storage.local.get("settings");
        await chrome.storage.local.set({settings: {...settings, endpoint: url}});
    }""", recorder.url)
    popup = ext.popup(page)
    popup.click("#analyze-page")
    alert = popup.locator("#message[role=alert]")
    alert.wait_for()
    assert "was saved for " + model_server.url in alert.inner_text()
    assert recorder.requests == []
    options = open_options(ext)
    assert options.locator("#authHeader").input_value() == ""
    assert "saved for " + model_server.url in options.locator("#save-result").inner_text()


def test_an_old_header_in_local_storage_moves_to_the_secret_store(ext, model_server):
    ext.sw("""async (url) => chrome.storage.local.set({settings: {endpoint: url,
        authHeader: 'Bearer from-0.1'}})""", model_server.url)
    ext.sw("() => civicsense.migrateAuthHeader()")
    assert "authHeader" not in ext.storage()["settings"]
    assert ext.sw("() => civicsense.readAuth()") == {"header": "Bearer from-0.1",
                                                     "origin": model_server.url}


def test_the_header_is_refused_over_http_to_a_remote_host(ext, model_server, recorder):
    options = open_options(ext)
    options.fill("#endpoint", f"{REMOTE}:8080")
    options.fill("#authHeader", "Bearer remote-token")
    options.click("#test")
    options.wait_for_selector("#test-result.error")
    why = options.locator("#test-result").inner_text()
    assert "won't send the Authorization header to http://civicsense-remote.test:8080" in why
    assert "plain http://" in why and "https://" in why
    options.click("#save")
    options.wait_for_selector("#save-result.error")
    assert "won't send the Authorization header" in options.locator("#save-result").inner_text()
    assert ext.storage()["settings"]["endpoint"] == model_server.url, "nothing saved"
    assert ext.sw("() => civicsense.readAuth()")["header"] == ""
    # The worker refuses it too, before anything else; without the header, the next check
    # (no host permission for that origin) is what stops the request.
    refusal = """async (settings) => {
        try { await civicsense.classifyTexts(['A text'], settings); return null; }
        catch (e) { return {kind: e.kind, message: e.message}; } }"""
    base = {"endpoint": f"{REMOTE}:8080", "protocol": "v1", "modelName": "civicsense-sentiment",
            "batchSize": 8, "maxChars": 500, "topics": []}
    assert ext.sw(refusal, {**base, "authHeader": "Bearer remote-token"})["kind"] == "insecure"
    assert ext.sw(refusal, {**base, "authHeader": ""})["kind"] == "permission"
    # To 127.0.0.1 over plain http:// the header is sent, by the worker's own request.
    answer = ext.sw("""async (settings) => civicsense.classifyTexts(['A text'], settings)""",
                    {**base, "endpoint": recorder.url, "authHeader": "Bearer local-token"})
    assert answer["results"][0]["label"] == "neutral"
    assert recorder.requests == [{"method": "POST",
                                  "path": "/v1/models/civicsense-sentiment:predict",
                                  "authorization": "Bearer local-token"}]
