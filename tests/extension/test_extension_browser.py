"""The extension in a real Chromium (Debian's, driven by Playwright) against the real model
server on a really registered model, on the local test pages in tests/extension/pages/."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

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
    from conftest import free_port

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
    popup.click("#analyze-page")
    # Progress shows while batches come back (the page's own panel, and the popup).
    popup.wait_for_selector("#page[data-state=running] #page-progress:not([hidden])")
    popup.wait_for_selector("#page[data-state=done]", timeout=120_000)
    found = badges(page)
    assert len(found) == 241
    assert page.locator("civicsense-panel .status").inner_text().startswith("Analyzed 241 posts")
    long = page.evaluate("""() => document.querySelector('#very-long civicsense-badge')
        .shadowRoot.querySelector('.note')?.textContent""")
    assert long and "truncated" in long
    assert "1 long posts were cut" in popup.locator("#page-state").inner_text()
    assert sum(1 for b in found if b["note"]) == 1
    # The page stayed responsive: it still runs its own script and scrolls.
    assert page.evaluate("() => new Promise(r => setTimeout(() => r(1 + 1), 0))") == 2
    ext.shot(popup, "long-page-insights", full_page=True)


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
