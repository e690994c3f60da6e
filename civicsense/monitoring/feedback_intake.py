"""The feedback route's logic, shared by the model server and the sink: a body checked field by
field (every problem a `FeedbackRejected` with its HTTP status and message), the client id a
record carries, and token-bucket rate limits per client and per peer address. Plain functions
and classes: no HTTP here.

A limiter lives in the memory of the process that serves HTTP: the limits are per server
process (one per model-server pod; the sink runs one replica, so its limits are the
cluster-wide ones). See docs/monitoring.md, "User feedback".
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from civicsense import LABELS
from civicsense.monitoring.feedback_log import (
    CLIENT_ID,
    MAX_VERSION_CHARS,
    BadFeedback,
    make_feedback,
)
from civicsense.monitoring.request_edge import (
    duplicate_key,
    duplicate_key_message,
    is_blank,
    strip_bom,
)
from civicsense.settings import Settings

FIELDS = ("text", "label", "model_version", "predicted_label", "client_id")
# client_id is optional: the model server takes the reader's identity from its credential and
# sends the sink the client id it made of it (credentialed_client).
REQUIRED = ("text", "label", "model_version")
# The client id of verified feedback: the credential's install id and a keyed hash of the peer
# it posted from. The feedback log has one identity column, so both travel in it; the trust
# rule (civicsense.labeling.trust, which keeps its own copy of this pattern) counts each part.
CREDENTIALED_CLIENT = re.compile(r"(?P<install>[0-9a-f]{16})_(?P<peer>[0-9a-f]{12})")
MAX_KEYS = 100_000  # buckets held per limiter; the least recently used go first beyond it


class FeedbackRejected(ValueError):
    """A feedback request refused: `status` is the HTTP status (400, 413, 429 …), the message
    what the client did wrong; `retry_after` (seconds) for a 429."""

    def __init__(self, message: str, status: int = 400, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


@dataclass(frozen=True)
class Feedback:
    """A checked feedback request; `predicted_label` None when the client did not send it."""

    text: str
    label: str
    model_version: str
    predicted_label: str | None
    client_id: str | None

    def record(self, predicted_label: str | None = None, client_id: str | None = None) -> dict:
        """The feedback-log record (civicsense.monitoring.feedback_log) for this request;
        `client_id`, when given (the server's, from the credential), replaces the body's."""
        predicted = predicted_label or self.predicted_label
        if predicted is None:
            raise FeedbackRejected('"predicted_label" is required: the label of the badge')
        client = client_id or self.client_id
        if client is None:
            raise FeedbackRejected('"client_id" is required: the reader the server verified')
        try:
            return make_feedback(self.text, self.label, predicted, self.model_version,
                                 client, max_text_chars=max(len(self.text), 1))
        except BadFeedback as error:  # check_feedback checked every field: not expected
            raise FeedbackRejected(str(error)) from None


def credentialed_client(install_id: str, peer_tag: str) -> str:
    """The client id of feedback sent with a verified credential (CREDENTIALED_CLIENT)."""
    client = f"{install_id}_{peer_tag}"
    if not CREDENTIALED_CLIENT.fullmatch(client):
        raise ValueError(f"not an install id and a peer tag: {install_id!r}, {peer_tag!r}")
    return client


def limit_key(client_id: str) -> str:
    """What the per-client limit counts: a credential's install id whatever peer it posts
    from; any other client id as it is."""
    match = CREDENTIALED_CLIENT.fullmatch(client_id)
    return match["install"] if match else client_id


def feedback_body_limit(max_text_chars: int) -> int:
    """Largest feedback body read (413 above): one text, every character escaped, and room
    for the other fields."""
    return 12 * max_text_chars + 4096


def _label(value: Any, field: str) -> str:
    if not isinstance(value, str) or value not in LABELS:
        raise FeedbackRejected(f'"{field}" must be one of {", ".join(LABELS)}')
    return value


def check_feedback(body: Any, max_text_chars: int) -> Feedback:
    """A JSON object with text, label, model_version and optionally predicted_label and
    client_id, each valid; anything else is a FeedbackRejected (400) saying which field and
    why."""
    if not isinstance(body, dict):
        raise FeedbackRejected('the body must be a JSON object: {"text", "label", '
                               '"model_version", "predicted_label", "client_id"}')
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise FeedbackRejected(f"unknown field(s) {unknown}: send only {', '.join(FIELDS)}")
    missing = [field for field in REQUIRED if field not in body]
    if missing:
        raise FeedbackRejected(f"missing {', '.join(repr(f) for f in missing)}")
    text = body["text"]
    if not isinstance(text, str) or is_blank(text):
        raise FeedbackRejected('"text" must be a non-empty string (not only blanks or '
                               'invisible characters): the post the badge is on')
    if len(text) > max_text_chars:
        raise FeedbackRejected(f'"text" has {len(text)} characters; at most {max_text_chars}')
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates such as "\ud800" in the JSON
        raise FeedbackRejected('"text" is not valid UTF-8 text') from None
    version = body["model_version"]
    if (not isinstance(version, str) or not version.strip()
            or len(version) > MAX_VERSION_CHARS):
        raise FeedbackRejected(f'"model_version" must be a string of 1 to {MAX_VERSION_CHARS} '
                               "characters: the version that made the badge")
    client = body.get("client_id")
    if client is not None and (not isinstance(client, str) or not CLIENT_ID.fullmatch(client)):
        raise FeedbackRejected('"client_id" must be 8 to 64 characters of A-Z a-z 0-9 _ -')
    predicted = body.get("predicted_label")
    return Feedback(text, _label(body["label"], "label"), version,
                    None if predicted is None else _label(predicted, "predicted_label"), client)


def parse_feedback(raw: bytes, max_text_chars: int) -> Feedback:
    """check_feedback of a raw JSON body (a leading UTF-8 BOM ignored, a key sent twice
    refused)."""
    raw = strip_bom(raw)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:  # also raised for invalid UTF-8
        raise FeedbackRejected(f"the body is not valid JSON: {error}") from None
    duplicate = duplicate_key(raw)
    if duplicate is not None:
        raise FeedbackRejected(duplicate_key_message(duplicate))
    return check_feedback(body, max_text_chars)


class RateLimiter:
    """Token buckets by key: each key holds at most `burst` tokens, refilled at
    `rate_per_minute`; a request takes one. Memory-bounded (`max_keys`, least recently used
    evicted: an evicted key starts again with a full bucket). Thread-safe."""

    def __init__(self, rate_per_minute: float, burst: int, max_keys: int = MAX_KEYS,
                 clock=time.monotonic):
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError("rate_per_minute must be > 0 and burst >= 1")
        self.rate, self.burst, self.max_keys = rate_per_minute / 60.0, float(burst), max_keys
        self.clock = clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: tokens, t
        self.lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 if allowed, else the seconds until one is available."""
        now = self.clock()
        with self.lock:
            tokens, then = self.buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.rate
            self.buckets[key] = (tokens, now)
            while len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
            return wait

    def give_back(self, key: str) -> None:
        """Return a token taken for a request that was refused for another reason."""
        with self.lock:
            if key in self.buckets:
                tokens, then = self.buckets[key]
                self.buckets[key] = (min(self.burst, tokens + 1.0), then)


class FeedbackLimits:
    """The two limits a feedback request passes: its peer address (whatever client ids it
    claims; a minute's worth of burst) and its client (limit_key: a credential's install id).
    `admit` raises a 429 FeedbackRejected with Retry-After (whole seconds, at least 1) when
    either is spent; a request refused by one limit spends nothing of the other."""

    def __init__(self, settings: Settings, clock=time.monotonic):
        peer_rate = settings.feedback_peer_rate_per_minute
        self.peers = RateLimiter(peer_rate, max(1, math.ceil(peer_rate)), clock=clock)
        self.clients = RateLimiter(settings.feedback_rate_per_minute, settings.feedback_burst,
                                   clock=clock)

    def admit(self, client_id: str, peer: str) -> None:
        wait = self.peers.take(peer)
        if wait:
            raise FeedbackRejected(f"too much feedback from {peer}: try again in "
                                   f"{math.ceil(wait)} s", 429, max(1, math.ceil(wait)))
        wait = self.clients.take(limit_key(client_id))
        if wait:
            self.peers.give_back(peer)
            raise FeedbackRejected(f"too much feedback from this client: try again in "
                                   f"{math.ceil(wait)} s", 429, max(1, math.ceil(wait)))
