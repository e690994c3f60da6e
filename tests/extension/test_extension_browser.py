"""The extension in a real Chromium (Debian's, driven by Playwright) against the real model
server on a really registered model, on the local test pages in tests/extension/pages/."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from ext_support import ROOT

from tests_support import free_port

CLASSES = ("negative", "neutral", "positive")
TOPICS = ("abortion", "climate", "feminism", "religion", "elections")


@pytest.fixture
def ext(browser, model_server):
    """The browser with fresh storage, pointed at the model server's real port."""
    browser.reset(endpoint=model_server.url)
    yield browser
    for page in browser.context.pages[1:]:
        page.close()


def badges(page) -> list[dict]:
    """Every badge on the page: its label (from the shadow root's text), its topics, and the
    page's own annotations of the post it belongs to."""
    return page.evaluate("""() => [...document.querySelectorAll('civicsense-badge')].map(b => {
        const post = b.parentElement.closest('[data-topics]');
        return {
          label: b.shadowRoot.querySelector('.label').textContent,
          title: b.shadowRoot.querySelector('.badge').title,
          note: b.shadowRoot.querySelector('.note')?.textContent ?? '',
          topics: (b.dataset.topics || '').split(' ').filter(Boolean),
          expected: post?.dataset.expected ?? null,
          annotated: post ? post.dataset.topics.split(' ').filter(Boolean) : null,
          visible: b.getBoundingClientRect().width > 10 && b.getBoundingClientRect().height > 8,
        };
    })""")


def popup_counts(popup) -> dict:
    """What the insights panel shows: the page's split and each topic's split."""
    def counts(root) -> dict:
        return {c: int(root.locator(f".count-{c}").inner_text()) for c in CLASSES}

    shown = {"_all": counts(popup.locator("#page-counts"))}
    for topic in TOPICS:
        row = popup.locator(f"#page-topics .topic[data-topic={topic}]")
        shown[topic] = (counts(row) if int(row.get_attribute("data-total"))
                        else dict.fromkeys(CLASSES, 0))
    return shown


def expected_counts(found: list[dict], key: str) -> dict:
    out = {"_all": Counter(b["label"] for b in found)}
    for topic in TOPICS:
        out[topic] = Counter(b["label"] for b in found if topic in b[key])
    return {k: {c: v[c] for c in CLASSES} for k, v in out.items()}


def test_feed_badges_labels_and_insights(ext, model_server):
    page = ext.open_page("feed.html")
    popup = ext.analyze_page(page)
    found = badges(page)
    assert len(found) == 14, "one badge per post of the X-like feed (the adapter)"
    assert all(b["label"] in CLASSES for b in found)
    clear = [b for b in found if b["expected"]]
    assert len(clear) >= 8
    assert [b["label"] for b in clear] == [b["expected"] for b in clear]
    # Topics: what the extension matched is what the page's author annotated.
    assert [sorted(b["topics"]) for b in found] == [sorted(b["annotated"]) for b in found]
    # The page's hostile CSS (display:none !important on the text's children) can't hide them.
    assert all(b["visible"] for b in found)
    # The insights panel's numbers are the badges' numbers.
    assert popup_counts(popup) == expected_counts(found, "topics")
    assert int(popup.locator("#page-total").inner_text()) == 14
    ext.shot(page, "feed-badges", full_page=True)
    ext.shot(popup, "feed-insights", full_page=True)


def test_badges_match_the_server(ext, model_server):
    """Every badge says what the server says for that post's text."""
    page = ext.open_page("feed.html")
    ext.analyze_page(page)
    texts = page.evaluate("""() => [...document.querySelectorAll('[data-testid=tweetText]')]
        .map(el => [...el.childNodes].filter(n => n.nodeName !== 'CIVICSENSE-BADGE')
        .map(n => n.textContent).join('').replace(/\\s+/g, ' ').trim())""")
    assert [b["label"] for b in badges(page)] == model_server.infer(texts)


def test_comment_thread_generic_fallback(ext):
    """A comment thread in plain markup: the generic adapter finds the article's paragraphs
    and each comment (nested replies too), not the byline, menus, or footer."""
    page = ext.open_page("comments.html")
    popup = ext.analyze_page(page)
    found = badges(page)
    assert len(found) == 2 + 8  # two article paragraphs, eight comments
    clear = [b for b in found if b["expected"]]
    assert len(clear) == 5
    assert [b["label"] for b in clear] == [b["expected"] for b in clear]
    assert [sorted(b["topics"]) for b in found] == [sorted(b["annotated"]) for b in found]
    assert popup_counts(popup) == expected_counts(found, "topics")
    assert page.locator("header civicsense-badge, footer civicsense-badge, .meta civicsense-badge"
                        ).count() == 0
    ext.shot(page, "comments-badges", full_page=True)


def test_article_paragraphs_and_topics(ext):
    page = ext.open_page("article.html")
    popup = ext.analyze_page(page)
    found = badges(page)
    assert len(found) == 8  # standfirst, four paragraphs… and two quotes; not nav/aside/footer
    assert [b["label"] for b in found if b["expected"]] == ["positive", "negative"]
    assert [sorted(b["topics"]) for b in found] == [sorted(b["annotated"]) for b in found]
    assert popup_counts(popup) == expected_counts(found, "annotated")
    assert page.locator("aside civicsense-badge, nav civicsense-badge").count() == 0


def test_context_menu_analyze_this_page(ext):
    """Right-click "CivicSense: analyze this page" (its handler, as Chromium calls it)."""
    page = ext.open_page("article.html")
    ext.sw("""async (tabId) => civicsense.onContextMenu(
        {menuItemId: 'civicsense-analyze-page'}, {id: tabId})""", ext.tab_id(page))
    status = page.locator("civicsense-panel .status")
    status.filter(has_text="Analyzed").wait_for()
    assert status.inner_text().startswith("Analyzed 8 posts")
    assert len(badges(page)) == 8


def test_recovers_from_a_stale_content_script(ext):
    """A page still holding the guard of an earlier copy of the extension (reloaded or
    updated) but no listener gets a fresh content script."""
    page = ext.open_page("article.html")
    ext.sw("""(tabId) => chrome.scripting.executeScript({target: {tabId}, args: [chrome.runtime.id],
        func: (id) => { globalThis.__civicsense = {runtimeId: id}; }})""", ext.tab_id(page))
    ext.analyze_page(page)
    assert len(badges(page)) == 8


def test_selection_popup_and_context_menu(ext, model_server):
    page = ext.open_page("article.html")
    quote = page.locator("blockquote").first
    text = quote.inner_text()
    page.evaluate("""() => { const r = document.createRange();
        r.selectNodeContents(document.querySelector('blockquote'));
        getSelection().removeAllRanges(); getSelection().addRange(r); }""")
    popup = ext.popup(page)
    popup.click("#analyze-selection")
    popup.wait_for_selector("#selection:not([hidden])")
    label = popup.locator("#selection-label").inner_text().strip().lower()
    assert label == model_server.infer([text])[0] == "positive"
    values = [popup.locator(f".prob-row[data-cls={c}] .prob-value").inner_text() for c in CLASSES]
    assert all(re.fullmatch(r"\d{1,3}%", v) for v in values)
    assert abs(sum(int(v[:-1]) for v in values) - 100) <= 2
    assert "Abortion" in popup.locator("#selection-meta").inner_text()
    ext.shot(popup, "selection-popup")
    # Right-click "CivicSense: analyze" (Playwright can't click browser menus: call the
    # menu's own handler as Chromium does) shows the result in a card on the page.
    ext.sw("""async ([tabId, text]) => civicsense.onContextMenu(
        {menuItemId: 'civicsense-analyze-selection', selectionText: text}, {id: tabId})""",
           [ext.tab_id(page), text])
    card = page.locator("civicsense-card .result")
    card.wait_for()
    assert card.inner_text().strip().lower() == "positive"
    assert page.locator("civicsense-card .row").count() == 3
    ext.shot(page, "selection-card")


def test_nothing_selected(ext):
    page = ext.open_page("article.html")
    page.evaluate("() => getSelection().removeAllRanges()")
    popup = ext.popup(page)
    popup.click("#analyze-selection")
    message = popup.locator("#message[role=alert]")
    message.wait_for()
    assert "Nothing selected" in message.inner_text()
    assert popup.locator("#selection").is_hidden()


def test_page_without_posts(ext):
    page = ext.open_page("empty.html")
    popup = ext.analyze_page(page, expect="empty")
    assert "No posts found" in popup.locator("#page-state").inner_text()
    assert "No posts found" in page.locator("civicsense-panel .status").inner_text()
    assert page.locator("civicsense-badge").count() == 0


def test_endpoint_down(ext, model_server):
    ext.reset(endpoint=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    page = ext.open_page("feed.html")
    popup = ext.analyze_page(page, expect="error")
    alert = popup.locator("#page-state[role=alert]").inner_text()
    assert "Can't reach the CivicSense server" in alert
    assert "Can't reach" in page.locator("civicsense-panel .status").inner_text()
    labels = {b["label"] for b in badges(page)}
    assert labels == {"!"}, "every post is marked as not analyzed"
    ext.shot(popup, "endpoint-down-popup")
    ext.shot(page, "endpoint-down-page")
    # The options page's "Test connection" says the same.
    options = ext.context.new_page()
    options.goto(ext.url("options.html"))
    options.wait_for_selector("body[data-ready=true]")
    options.click("#test")
    options.wait_for_selector("#test-result.error")
    assert "Can't reach" in options.locator("#test-result").inner_text()


def test_server_4xx_message_is_shown(ext, model_server):
    ext.reset(endpoint=model_server.url, modelName="no-such-model")
    page = ext.open_page("feed.html")
    popup = ext.analyze_page(page, expect="error")
    alert = popup.locator("#page-state").inner_text()
    assert "The server answered 404" in alert
    assert "no-such-model" in alert, "the server's own message is shown"


def test_v1_protocol_gives_the_same_labels(ext, model_server):
    page = ext.open_page("feed.html")
    ext.analyze_page(page)
    v2 = [b["label"] for b in badges(page)]
    ext.reset(endpoint=model_server.url, protocol="v1")
    page.reload()
    ext.analyze_page(page)
    assert [b["label"] for b in badges(page)] == v2


def test_long_page_progress_and_truncation(ext, model_server):
    ext.reset(endpoint=model_server.url, batchSize=16, maxChars=500)
    page = ext.open_page("long.html")
    popup = ext.popup(page)
    # Record every state the page goes through (storage change events are never merged).
    popup.evaluate("""() => { window.seen = [];
        chrome.storage.onChanged.addListener((changes, area) => {
            for (const [key, change] of Object.entries(changes))
                if (area === 'session' && key.startsWith('page:') && change.newValue)
                    window.seen.push([change.newValue.state, change.newValue.done,
                                      change.newValue.total]);
        }); }""")
    popup.click("#analyze-page")
    popup.wait_for_selector("#page[data-state=done]", timeout=120_000)
    seen = popup.evaluate("() => window.seen")
    running = [done for state, done, total in seen if state == "running" and total == 241]
    assert running == list(range(0, 241, 16)) + [241], "progress after every batch of 16"
    assert seen[-1] == ["done", 241, 241]
    found = badges(page)
    assert len(found) == 241
    assert page.locator("civicsense-panel .status").inner_text().startswith("Analyzed 241 posts")
    long = page.evaluate("""() => document.querySelector('#very-long civicsense-badge')
        .shadowRoot.querySelector('.note')?.textContent""")
    assert long and "truncated" in long
    assert "1 long posts were cut" in popup.locator("#page-state").inner_text()
    assert sum(1 for b in found if b["note"]) == 1
    ext.shot(popup, "long-page-insights", full_page=True)
    # How the popup draws a page in progress.
    ext.sw("([key, value]) => chrome.storage.session.set({[key]: value})",
           [f"page:{ext.tab_id(page)}", {"state": "running", "done": 48, "total": 241}])
    popup.wait_for_selector("#page[data-state=running] #page-progress:not([hidden])")
    assert popup.locator("#page-state").inner_text() == "Analyzing 48 / 241 posts…"
    assert popup.locator("#page-progress").evaluate("p => [p.value, p.max]") == [48, 241]


def test_options_persist_and_test_connection(ext, model_server):
    options = ext.context.new_page()
    options.goto(ext.url("options.html"))
    options.wait_for_selector("body[data-ready=true]")
    assert options.locator("#endpoint").input_value() == model_server.url
    options.check("#protocol-v1")
    options.fill("#authHeader", "Bearer test-token-123")
    options.fill("#batchSize", "8")
    # Edit the topics: rename one, add one with a prefix keyword.
    options.locator(".topic-name").first.fill("Abortion law")
    options.click("#add-topic")
    options.locator(".topic-name").last.fill("Immigration")
    options.locator(".topic-keywords").last.fill("immigra*, asylum, border wall")
    options.click("#save")
    options.wait_for_selector("#save-result.ok")
    options.reload()
    options.wait_for_selector("body[data-ready=true]")
    assert options.locator("#endpoint").input_value() == model_server.url
    assert options.locator("#protocol-v1").is_checked()
    assert options.locator("#authHeader").input_value() == "Bearer test-token-123"
    assert options.locator("#batchSize").input_value() == "8"
    assert options.locator(".topic-name").first.input_value() == "Abortion law"
    assert options.locator(".topic-name").last.input_value() == "Immigration"
    assert options.locator(".topic-keywords").last.input_value() == "immigra*, asylum, border wall"
    stored = ext.storage()["settings"]
    assert stored["protocol"] == "v1" and stored["batchSize"] == 8
    assert stored["topics"][-1] == {"id": "immigration", "name": "Immigration",
                                    "keywords": ["immigra*", "asylum", "border wall"]}
    # "Test connection" shows the version of the model the server really loaded (V1 too).
    options.click("#test")
    options.wait_for_selector("#test-result.ok")
    version, run_id = model_server.version_tag.split("+")
    result = options.locator("#test-result").inner_text()
    assert f"version {version}" in result and run_id[:8] in result and "V1" in result
    ext.shot(options, "options", full_page=True)
    # An invalid endpoint is refused, and nothing is saved.
    options.fill("#endpoint", "ftp://example.org")
    options.click("#save")
    options.wait_for_selector("#save-result.error")
    assert ext.storage()["settings"]["endpoint"] == model_server.url


def test_endpoint_without_permission_is_refused(ext):
    """An endpoint the user has not granted is never contacted: the worker refuses first."""
    ext.reset(endpoint="https://civicsense.example.org")
    error = ext.sw("""async () => {
        try { await civicsense.classifyTexts(['A text']); return null; }
        catch (e) { return {kind: e.kind, message: e.message}; } }""")
    assert error["kind"] == "permission"
    assert "https://civicsense.example.org" in error["message"]


def test_history_counts_per_topic_and_day_without_texts(ext):
    feed = ext.open_page("feed.html")
    ext.analyze_page(feed)
    ext.analyze_page(feed)  # the same page again the same day replaces, not adds
    comments = ext.open_page("comments.html")
    popup = ext.analyze_page(comments)
    expected = expected_counts(badges(feed), "topics")
    for topic, counts in expected_counts(badges(comments), "topics").items():
        for c in CLASSES:
            expected[topic][c] += counts[c]
    stored = ext.storage()
    (day, counts), = stored["history"]["days"].items()
    assert counts == {k: v for k, v in expected.items() if sum(v.values())}
    rows = {r.get_attribute("data-topic"): int(r.get_attribute("data-total"))
            for r in popup.locator("#history-topics .trend").all()}
    assert rows == {k: sum(v.values()) for k, v in expected.items()}
    # Only counts are kept: no text of any post, no address, in the persistent storage.
    dump = json.dumps(stored)
    for text in ["So happy and proud today", "Fantastic news", "127.0.0.1:" + ext.pages_url[-5:]]:
        assert text not in dump
    assert "feed.html" not in dump and "comments.html" not in dump


def _seed_history(ext) -> None:
    """Thirteen earlier days of counts (what weeks of browsing leave behind): climate warming
    up, abortion cooling down, so that the trends have something to show."""
    ext.sw("""async () => {
        const days = {};
        for (let i = 13; i >= 1; i -= 1) {
            const d = new Date(); d.setDate(d.getDate() - i);
            const key = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-` +
                String(d.getDate()).padStart(2, '0');
            if (i % 3 === 2) continue;  // days without browsing leave gaps
            const t = 13 - i;
            days[key] = {
                _all: {negative: 20 - t, neutral: 15, positive: 8 + t},
                climate: {negative: 6 - Math.floor(t / 3), neutral: 3, positive: 2 + t},
                abortion: {negative: 2 + Math.floor(t / 2), neutral: 2,
                           positive: 6 - Math.floor(t / 3)},
                elections: {negative: 4, neutral: 5, positive: 4},
            };
        }
        await chrome.storage.local.set({history: {version: 1, days}});
    }""")


def test_insights_panel_trends_and_readme_screenshot(ext, output_dir):
    _seed_history(ext)
    page = ext.open_page("feed.html")
    page.set_viewport_size({"width": 1180, "height": 760})
    popup = ext.analyze_page(page)
    trends = {r.get_attribute("data-topic"): r.get_attribute("data-direction")
              for r in popup.locator("#history-topics .trend").all()}
    assert trends["climate"] == "up" and trends["abortion"] == "down"
    assert trends["feminism"] == "none"  # one day of posts: no trend yet
    assert popup.locator("#history-topics .trend[data-topic=climate] polyline").count() >= 1
    page.locator("civicsense-panel").evaluate("el => el.remove()")
    page.mouse.move(0, 0)
    shot_page = ext.shot(page, "insights-page")
    shot_popup = output_dir / "insights-popup.png"
    popup.locator("body").screenshot(path=str(shot_popup))
    composite = output_dir / "insights-panel.png"
    _compose(shot_page, shot_popup, composite)
    if os.environ.get("CIVICSENSE_UPDATE_DOCS") == "1":
        target = ROOT / "docs" / "img" / "insights-panel.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(composite, target)


def _compose(page_png: Path, popup_png: Path, out: Path) -> None:
    """The popup drawn over the page's top right corner, as Chromium shows it: one small PNG
    for the README (palette-quantised)."""
    from PIL import Image, ImageFilter

    page = Image.open(page_png).convert("RGB")
    popup = Image.open(popup_png).convert("RGB")
    x, y = page.width - popup.width - 24, 12
    shadow = Image.new("RGBA", (popup.width + 24, popup.height + 24), (0, 0, 0, 0))
    shadow.paste((0, 0, 0, 90), (12, 14, popup.width + 12, popup.height + 14))
    shadow = shadow.filter(ImageFilter.GaussianBlur(6))
    canvas = page.convert("RGBA")
    canvas.alpha_composite(shadow, (x - 12, y - 12))
    canvas = canvas.convert("RGB")
    canvas.paste(popup, (x, y))
    canvas = canvas.crop((0, 0, page.width, max(page.height, y + popup.height + 16)))
    canvas.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
