""""Wrong?" on a badge in a real Chromium against the real model server: the first click gets
the install's credential from the server, the click sends the reader's label with the badge's
model version and that credential, the record lands in the server's feedback log under the
credential's install id, the badge confirms it; a refused credential is replaced once; errors
(429, server down) are shown; nothing is kept, nothing is sent without a real click, and no page
can send feedback for a text CivicSense did not badge."""

from __future__ import annotations

import json
import os

import pytest
import requests

from civicsense.monitoring.feedback_log import read_feedback
from tests_support import free_port

CLASSES = ("negative", "neutral", "positive")
FIRST_TEXT = """() => { const el = document.querySelector('[data-testid=tweetText]');
    return [...el.childNodes].filter(n => n.nodeName !== 'CIVICSENSE-BADGE')
        .map(n => n.textContent).join('').replace(/\\s+/g, ' ').trim(); }"""


@pytest.fixture
def ext(browser, model_server):
    browser.reset(endpoint=model_server.url)
    yield browser
    for page in browser.context.pages[1:]:
        page.close()


@pytest.fixture
def feedback_log(trained_home):
    """The served model's feedback log (the server runs on the session's home)."""
    if os.environ.get("CIVICSENSE_EXTENSION_TARGET") == "container":
        pytest.skip("the serving container keeps its feedback log inside the container")
    settings, _ = trained_home
    return lambda: read_feedback(settings.feedback_log, settings)


def install_id(ext) -> str | None:
    """The install id of the extension's saved credential (None before the first Wrong?)."""
    credential = ext.sw("async () => (await civicsense.readCredential()).credential")
    return credential.split(".")[2] if credential else None


def of(frame, install: str):
    """The feedback records sent with that install's credential."""
    return frame[frame.client_id.str.startswith(f"{install}_")]


def first_badge(page):
    return page.locator("civicsense-badge").first


def choose(badge, label: str) -> None:
    badge.locator("button.wrong").click()
    badge.locator(f"button.choice-{label}").click()


def test_wrong_sends_the_readers_label_with_the_badges_version(ext, model_server,
                                                                feedback_log):
    page = ext.open_page("feed.html")
    ext.analyze_page(page)
    badge = first_badge(page)
    predicted = badge.get_attribute("data-label")
    label = next(c for c in CLASSES if c != predicted)
    assert install_id(ext) is None, "no credential, no request, before the reader clicks"
    choose(badge, label)
    status = badge.locator(".fb-status.ok")
    status.wait_for(timeout=30_000)
    assert status.inner_text() == f"Thanks: sent as {label}"
    assert badge.get_attribute("data-feedback") == f"sent:{label}"
    assert badge.locator("button.wrong").is_hidden()
    ext.shot(page, "feedback-sent", clip={"x": 0, "y": 0, "width": 1280, "height": 400})
    me = install_id(ext)
    assert me, "the first Wrong? got the install's credential"
    mine = of(feedback_log(), me)
    assert len(mine) == 1
    row = mine.iloc[0]
    assert row.text == page.evaluate(FIRST_TEXT)
    assert (row.label, row.predicted_label, row.model_version) == (
        label, predicted, model_server.version_tag)
    # The extension keeps no post text: not in its storage, not in its session storage.
    stored = json.dumps([ext.storage("local"), ext.storage("session")])
    assert row.text not in stored and row.text[:40] not in stored


def test_a_refused_credential_is_replaced_once(ext, model_server, feedback_log):
    """A credential the server no longer takes (expired, revoked, another server's): the
    worker gets a new one and the feedback goes through."""
    ext.sw("async (origin) => civicsense.writeCredential("
           "'cs1.1.0123456789abcdef.1800000000.' + 'A'.repeat(43), origin)",
           model_server.url)
    page = ext.open_page("feed.html")
    ext.analyze_page(page)
    badge = first_badge(page)
    choose(badge, next(c for c in CLASSES if c != badge.get_attribute("data-label")))
    badge.locator(".fb-status.ok").wait_for(timeout=30_000)
    me = install_id(ext)
    assert me and me != "0123456789abcdef"
    assert len(of(feedback_log(), me)) == 1


def test_a_page_script_cannot_click_for_the_reader(ext, feedback_log):
    page = ext.open_page("feed.html")
    ext.analyze_page(page)
    sent_before = len(feedback_log())
    page.evaluate("""() => { const root = document.querySelector('civicsense-badge').shadowRoot;
        root.querySelector('button.wrong').click();
        root.querySelector('button.choice-negative').click(); }""")
    page.wait_for_timeout(500)
    badge = first_badge(page)
    assert badge.locator(".fb-status").inner_text() == ""
    assert badge.locator(".choices").is_hidden()
    assert len(feedback_log()) == sent_before


def test_no_feedback_for_a_text_that_was_not_badged(ext):
    """A content script (what a hostile page may take over) asking for feedback on any other
    text is refused by the service worker before any request."""
    page = ext.open_page("feed.html")
    ext.analyze_page(page)
    answer = ext.sw("""async (tabId) => {
        const [frame] = await chrome.scripting.executeScript({target: {tabId}, world: "ISOLATED",
            func: () => chrome.runtime.sendMessage({type: "feedback", label: "positive",
                text: "A text no badge was drawn for, made up by the page"})});
        return frame.result; }""", ext.tab_id(page))
    assert answer["ok"] is False and answer["error"]["kind"] == "forbidden"
    assert "badge CivicSense drew in this tab" in answer["error"]["message"]


def test_the_server_being_down_is_shown_on_the_badge(ext):
    page = ext.open_page("feed.html")
    ext.analyze_page(page)
    ext.sw("""async (url) => { const {settings} = await chrome.storage.local.get('settings');
        await chrome.storage.local.set({settings: {...settings, endpoint: url}}); }""",
           f"http://127.0.0.1:{free_port()}")  # nothing listens there
    badge = first_badge(page)
    choose(badge, "neutral")
    alert = badge.locator(".fb-status.error[role=alert]")
    alert.wait_for(timeout=30_000)
    assert "Can't reach the CivicSense server" in alert.inner_text()
    assert badge.get_attribute("data-feedback") == "error"
    assert badge.locator("button.choice-neutral").is_enabled(), "the reader may try again"


def test_too_much_feedback_is_a_429_shown_on_the_badge(ext, model_server, feedback_log):
    """Last in this module: it spends the feedback budget of the extension's credential."""
    page = ext.open_page("feed.html")
    ext.analyze_page(page)
    issued = requests.post(f"{model_server.url}/v1/credentials", timeout=10)
    assert issued.status_code == 200, issued.text
    credential = issued.json()["credential"]
    ext.sw("async ([credential, origin]) => civicsense.writeCredential(credential, origin)",
           [credential, model_server.url])
    url = f"{model_server.url}/v1/models/civicsense-sentiment/feedback"
    body = {"text": "Spending the budget of this credential", "label": "neutral",
            "predicted_label": "positive", "model_version": model_server.version_tag}
    for _ in range(50):
        if requests.post(url, json=body, headers={"X-CivicSense-Credential": credential},
                         timeout=10).status_code == 429:
            break
    else:
        pytest.fail("the server never rate-limited the credential")
    badge = first_badge(page)
    choose(badge, "negative")
    alert = badge.locator(".fb-status.error[role=alert]")
    alert.wait_for(timeout=30_000)
    text = alert.inner_text()
    assert text.startswith("Not sent (429): too much feedback from this client: try again in")
    ext.shot(page, "feedback-429", clip={"x": 0, "y": 0, "width": 1280, "height": 400})
