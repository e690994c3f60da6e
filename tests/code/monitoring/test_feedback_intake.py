"""The feedback route's checks and rate limits, as plain functions: every bad field a 400 that
names it, token buckets that refill at their rate, a peer limit whatever ids it claims."""

from __future__ import annotations

import json

import pytest

from civicsense.monitoring.feedback_intake import (
    FeedbackLimits,
    FeedbackRejected,
    RateLimiter,
    check_feedback,
    credentialed_client,
    feedback_body_limit,
    limit_key,
    parse_feedback,
)
from civicsense.monitoring.feedback_log import FEEDBACK_COLUMNS, post_key
from civicsense.settings import Settings

GOOD = {"text": "The pension reform is a disaster", "label": "negative",
        "model_version": "3+abc123", "predicted_label": "positive", "client_id": "client-0001"}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_good_body_becomes_a_log_record():
    feedback = parse_feedback(json.dumps(GOOD).encode(), max_text_chars=2000)
    record = feedback.record()
    assert tuple(record) == FEEDBACK_COLUMNS
    assert record["post_key"] == post_key(GOOD["text"])
    assert {k: record[k] for k in GOOD} == GOOD


def test_predicted_label_is_optional_in_the_body_but_required_in_the_record():
    body = {k: v for k, v in GOOD.items() if k != "predicted_label"}
    feedback = check_feedback(body, 2000)
    assert feedback.predicted_label is None
    with pytest.raises(FeedbackRejected, match="predicted_label"):
        feedback.record()
    assert feedback.record("neutral")["predicted_label"] == "neutral"


def test_the_client_id_is_the_servers_not_the_bodys():
    """The model server passes the client id it made of the reader's credential; a body's own
    client_id (optional) is only what the sink writes, from the server."""
    body = {k: v for k, v in GOOD.items() if k != "client_id"}
    feedback = check_feedback(body, 2000)
    with pytest.raises(FeedbackRejected, match="client_id"):
        feedback.record()
    client = credentialed_client("0123456789abcdef", "a1b2c3d4e5f6")
    assert client == "0123456789abcdef_a1b2c3d4e5f6"
    assert check_feedback(GOOD, 2000).record(client_id=client)["client_id"] == client
    with pytest.raises(ValueError, match="install id"):
        credentialed_client("sockpuppet_0000", "a1b2c3d4e5f6")


def test_the_client_limit_counts_an_install_whatever_peer_it_posts_from():
    assert limit_key("0123456789abcdef_a1b2c3d4e5f6") == "0123456789abcdef"
    assert limit_key("0123456789abcdef") == limit_key("0123456789abcdef_ffffffffffff")
    assert limit_key("reader-0001") == "reader-0001"
    limits = FeedbackLimits(Settings(feedback_burst=1, feedback_peer_rate_per_minute=100),
                            clock=Clock())
    limits.admit("0123456789abcdef_a1b2c3d4e5f6", "10.0.0.1")
    with pytest.raises(FeedbackRejected, match="this client"):
        limits.admit("0123456789abcdef_ffffffffffff", "10.0.0.2")


@pytest.mark.parametrize(("change", "message"), [
    ({"label": "angry"}, '"label" must be one of'),
    ({"label": None}, '"label" must be one of'),
    ({"predicted_label": "NEGATIVE"}, '"predicted_label" must be one of'),
    ({"text": "   "}, '"text" must be a non-empty string'),
    ({"text": "\u200b\u202e"}, '"text" must be a non-empty string'),
    ({"text": "\ufeff\u2060"}, '"text" must be a non-empty string'),
    ({"text": 5}, '"text" must be a non-empty string'),
    ({"text": "x" * 101}, '"text" has 101 characters; at most 100'),
    ({"text": "bad \ud800 text"}, "not valid UTF-8"),
    ({"model_version": ""}, '"model_version" must be a string'),
    ({"model_version": 3}, '"model_version" must be a string'),
    ({"model_version": "v" * 201}, '"model_version" must be a string'),
    ({"client_id": "short"}, '"client_id" must be 8 to 64'),
    ({"client_id": "has space in it"}, '"client_id" must be 8 to 64'),
    ({"client_id": "x" * 65}, '"client_id" must be 8 to 64'),
    ({"extra": 1}, "unknown field"),
])
def test_every_bad_field_is_a_400_naming_it(change, message):
    with pytest.raises(FeedbackRejected, match=message) as caught:
        check_feedback({**GOOD, **change}, max_text_chars=100)
    assert caught.value.status == 400 and caught.value.headers() == {}


@pytest.mark.parametrize(("raw", "message"), [
    (b"not json", "not valid JSON"), (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"), (b'{"text": "x"}', "missing 'label'"),
])
def test_malformed_bodies_are_400s(raw, message):
    with pytest.raises(FeedbackRejected, match=message):
        parse_feedback(raw, 2000)


def test_a_leading_bom_is_ignored_and_a_key_sent_twice_refused():
    raw = json.dumps(GOOD).encode()
    assert parse_feedback(b"\xef\xbb\xbf" + raw, 2000) == parse_feedback(raw, 2000)
    twice = raw[:-1] + b', "label": "positive"}'  # parsers would silently keep "positive"
    with pytest.raises(FeedbackRejected, match='key "label" twice') as caught:
        parse_feedback(twice, 2000)
    assert caught.value.status == 400


def test_the_body_limit_fits_the_longest_text_fully_escaped():
    body = json.dumps({**GOOD, "text": "\u2028" * 2000}).encode()  # 6 bytes per char escaped
    assert len(body) < feedback_body_limit(2000) < 12 * 2000 + 10_000


def test_a_bucket_allows_its_burst_then_its_rate():
    clock = Clock()
    limiter = RateLimiter(rate_per_minute=6, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(10.0)  # one token per 10 s
    assert limiter.take("b") == 0.0  # another key has its own bucket
    clock.now += 5
    assert limiter.take("a") == pytest.approx(5.0)
    clock.now += 5
    assert limiter.take("a") == 0.0
    clock.now += 3600  # refills to the burst, no further
    assert [limiter.take("a") for _ in range(4)][-1] > 0


def test_a_refused_request_costs_no_token_and_give_back_returns_one():
    clock = Clock()
    limiter = RateLimiter(rate_per_minute=60, burst=1, clock=clock)
    assert limiter.take("a") == 0.0
    for _ in range(5):
        assert limiter.take("a") > 0
    clock.now += 1
    assert limiter.take("a") == 0.0
    limiter.give_back("a")
    assert limiter.take("a") == 0.0


def test_the_limiter_holds_at_most_max_keys():
    limiter = RateLimiter(rate_per_minute=1, burst=1, max_keys=100)
    for i in range(1000):
        limiter.take(f"client-{i}")
    assert len(limiter.buckets) == 100 and "client-999" in limiter.buckets


def test_limits_per_client_and_per_peer_with_retry_after():
    clock = Clock()
    settings = Settings(feedback_rate_per_minute=6, feedback_burst=2,
                        feedback_peer_rate_per_minute=5)
    limits = FeedbackLimits(settings, clock=clock)
    limits.admit("client-aaaa", "10.0.0.1")
    limits.admit("client-aaaa", "10.0.0.1")
    with pytest.raises(FeedbackRejected, match="this client") as caught:
        limits.admit("client-aaaa", "10.0.0.1")
    assert caught.value.status == 429 and caught.value.headers() == {"Retry-After": "10"}
    # A flood under fresh client ids from one address stops at the peer's limit (5 a minute;
    # the client's refusal above gave its peer token back).
    limits.admit("client-bbbb", "10.0.0.1")
    limits.admit("client-cccc", "10.0.0.1")
    limits.admit("client-dddd", "10.0.0.1")
    with pytest.raises(FeedbackRejected, match="from 10.0.0.1") as caught:
        limits.admit("client-eeee", "10.0.0.1")
    assert caught.value.status == 429 and int(caught.value.headers()["Retry-After"]) >= 1
    limits.admit("client-eeee", "10.0.0.2")  # the peer refusal spent nothing of the client's
