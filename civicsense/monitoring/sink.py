"""The payload-log sink: receives the CloudEvents KServe's `logger` (mode: all) posts for every
request and response of the InferenceService, pairs them by event id, and writes the same
inference records as the local server (civicsense.monitoring.inference_log) under
`CIVICSENSE_INFERENCE_LOG_URI` (gs://…/inference-log on the cluster).

KServe's logger sends binary-mode CloudEvents: the payload is the body, the attributes are
headers (`ce-id`, `ce-type` = org.kubeflow.serving.inference.request|response, `ce-source`,
`ce-inferenceservicename`, …); request and response share `ce-id`. Structured mode
(`application/cloudevents+json`) is accepted too. V1 and V2 bodies are both understood.

Trust and cost: with `CIVICSENSE_SINK_TOKEN` set, an event must carry
`Authorization: Bearer <token>` or be a binary CloudEvent from an InferenceService listed in
`CIVICSENSE_SINK_LOGGER_SOURCES` (KServe's logger sends no headers of its own; a NetworkPolicy
lets only that InferenceService's pods reach the sink: civicsense.monitoring.sink_auth); a token
in the URL (`?token=`) is refused. Else 401, counted, never written. The sink will not start
with the manifests' placeholder token or an empty one. A body
over `sink_body_limit` is a 413 (read no further), one not received within
`sink_body_timeout` a 408; unmatched halves are held within
`sink_pending_bytes`, the oldest dropped and counted beyond it. Every unusable event is a 202
with `{"accepted": false, "error": …}` so the logger does not retry garbage.

Pairing is in memory: run one replica (manifests/base/monitoring/log-sink.yaml), or halves of a pair
may land on different replicas and be counted as `unpaired`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from civicsense import LABELS
from civicsense.monitoring.inference_log import InferenceLogger
from civicsense.monitoring.request_edge import strip_bom
from civicsense.monitoring.sink_auth import (
    bearer_ok,
    check_token,
    from_allowed_logger,
    logger_sources,
    token_in_url,
)
from civicsense.monitoring.sink_feedback import install_sink_feedback
from civicsense.settings import Settings

log = logging.getLogger(__name__)
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
ITEM_OVERHEAD = 64  # bytes a held text or prediction costs beyond its characters


class BadEvent(ValueError):
    """An event the sink cannot turn into records."""


class TooLarge(ValueError):
    """A body over the sink's limit."""


def _strings(items: Any, what: str) -> list[str]:
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise BadEvent(f"{what} is not a list of strings")
    return items


def texts_of_request(body: dict) -> list[str]:
    """V1 {"instances": [...]} or V2 {"inputs": [{"name": "text", "data": [...]}]}."""
    if "instances" in body:
        return _strings(body["instances"], "instances")
    inputs = body.get("inputs")
    if isinstance(inputs, list):
        for tensor in inputs:
            if isinstance(tensor, dict) and tensor.get("name") == "text":
                return _strings(tensor.get("data"), "the 'text' input's data")
    raise BadEvent("request has neither instances nor a 'text' input")


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadEvent(f"probability {value!r} is not a number")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise BadEvent(f"probability {value!r} is not in [0, 1]")
    return float(value)


def predictions_of_response(body: dict) -> tuple[list[str], list[list[float]], str]:
    """Labels, probability rows (LABELS order) and model version of a V1 or V2 response."""
    version = body.get("model_version")
    version = str(version) if isinstance(version, str | int) and version != "" else "unknown"
    if "predictions" in body:
        predictions = body["predictions"]
        if not isinstance(predictions, list):
            raise BadEvent("predictions is not a list")
        labels, rows = [], []
        for item in predictions:
            if not isinstance(item, dict) or not isinstance(item.get("probabilities"), dict):
                raise BadEvent("a prediction lacks label/probabilities")
            labels.extend(_strings([item.get("label")], "a prediction's label"))
            probabilities = item["probabilities"]
            if set(LABELS) - set(probabilities):
                raise BadEvent(f"a prediction's probabilities lack {LABELS}")
            rows.append([_probability(probabilities[label]) for label in LABELS])
        return labels, rows, version
    outputs = body.get("outputs")
    named = ({o.get("name"): o for o in outputs if isinstance(o, dict)}
             if isinstance(outputs, list) else {})
    if not all(isinstance(named.get(n), dict) for n in ("label", "probabilities")):
        raise BadEvent("response has neither predictions nor label/probabilities outputs")
    labels = _strings(named["label"].get("data"), "the label output's data")
    data = named["probabilities"].get("data")
    if not isinstance(data, list):
        raise BadEvent("the probabilities output's data is not a list")
    flat = [x for row in data for x in row] if data and isinstance(data[0], list) else data
    width = len(LABELS)
    if len(flat) != width * len(labels):
        raise BadEvent(f"{len(flat)} probabilities for {len(labels)} labels")
    flat = [_probability(x) for x in flat]
    return labels, [flat[i:i + width] for i in range(0, len(flat), width)], version


def parse_event(headers, raw: bytes) -> tuple[str, str, Any, int]:
    """(event id, "request"/"response", its extracted content, bytes it costs to hold) from a
    binary or structured event. Any malformation is a BadEvent, whatever its kind."""
    try:
        return _parse_event(headers, raw)
    except BadEvent:
        raise
    except Exception as error:  # noqa: BLE001 - untrusted input: every failure is "unusable"
        raise BadEvent(f"malformed event ({type(error).__name__}: {error})") from None


def _parse_event(headers, raw: bytes) -> tuple[str, str, Any, int]:
    raw = strip_bom(raw)  # the model server accepts a body with one: so its logged copy too
    try:
        body: Any = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as error:
        raise BadEvent(f"body is not JSON: {error}") from None
    if headers.get("content-type", "").startswith("application/cloudevents+json"):
        if not isinstance(body, dict):
            raise BadEvent("structured event is not a JSON object")
        event_id, event_type = body.get("id"), body.get("type")
        if "data_base64" in body:
            encoded = body["data_base64"]
            if not isinstance(encoded, str):
                raise BadEvent("data_base64 is not a string")
            body = orjson.loads(base64.b64decode(encoded, validate=True))
        else:
            body = body.get("data")
    else:
        event_id, event_type = headers.get("ce-id"), headers.get("ce-type")
    if not isinstance(event_id, str | int) or isinstance(event_id, bool) or event_id == "":
        raise BadEvent("no CloudEvent id (ce-id header)")
    if not isinstance(body, dict):
        raise BadEvent("payload is not a JSON object")
    event_type = event_type if isinstance(event_type, str) else ""
    if event_type.endswith(".request"):
        texts = texts_of_request(body)
        return str(event_id), "request", texts, len(raw) + ITEM_OVERHEAD * len(texts)
    if event_type.endswith(".response"):
        labels, rows, version = predictions_of_response(body)
        return (str(event_id), "response", (labels, rows, version),
                len(raw) + ITEM_OVERHEAD * 4 * len(labels))
    raise BadEvent(f"unknown event type {event_type!r}")


class Pairing:
    """Request and response halves by event id, within a memory budget (`max_bytes`, counted
    as the halves' body sizes) and a time to live; the oldest halves go first."""

    def __init__(self, max_bytes: int = 64 << 20, ttl: float = 300.0,
                 max_pending: int = 10_000):
        self.pending: OrderedDict[str, tuple[float, dict, int]] = OrderedDict()
        self.max_bytes, self.ttl, self.max_pending = max_bytes, ttl, max_pending
        self.bytes = 0
        self.lock = threading.Lock()
        self.unpaired = 0  # halves dropped: expired, over budget, or too large to hold

    def _drop_oldest(self) -> None:
        _, (_, halves, size) = self.pending.popitem(last=False)
        self.bytes -= size
        self.unpaired += len(halves)

    def add(self, event_id: str, kind: str, content: Any, size: int) -> dict | None:
        """Store a half; when both halves are in, return {"request": …, "response": …}."""
        now = time.monotonic()
        with self.lock:
            while self.pending and now - next(iter(self.pending.values()))[0] > self.ttl:
                self._drop_oldest()
            stamp, halves, held = self.pending.pop(event_id, (now, {}, 0))
            self.bytes -= held
            if kind in halves:
                self.unpaired += 1  # a repeated half replaces the one held
            halves[kind] = content
            if "request" in halves and "response" in halves:
                return halves
            held += size
            while self.pending and (self.bytes + held > self.max_bytes
                                    or len(self.pending) >= self.max_pending):
                self._drop_oldest()
            if held > self.max_bytes:
                self.unpaired += len(halves)
                return None
            self.pending[event_id] = (stamp, halves, held)
            self.bytes += held
            return None


def refused(request: Request, token: str | None, sources) -> str | None:
    """Why an event is refused (None: accepted): a token in its URL, or neither the Bearer
    token nor an allowed logger's CloudEvent attributes."""
    if token_in_url(request):
        return "the sink token never goes in a URL: send Authorization: Bearer"
    if bearer_ok(request, token) or from_allowed_logger(request.headers, sources):
        return None
    return "missing or wrong sink token"


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read no further than `limit` bytes (TooLarge beyond it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {declared} bytes is over the sink's limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body is over the sink's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings, writer: InferenceLogger | None = None):
    """The ASGI app: POST /events (KServe logger target), POST /feedback (readers' feedback,
    forwarded by the model servers), GET /healthz, GET /stats."""
    app = FastAPI(title="CivicSense inference-log sink")
    writer = writer or InferenceLogger(settings.inference_log, settings, source="sink")
    pairing = Pairing(settings.sink_pending_bytes)
    token = (settings.sink_token.get_secret_value() if settings.sink_token is not None
             else None)
    check_token(token)  # never the manifests' placeholder, never empty
    sources = logger_sources(settings.sink_logger_sources)
    limit = settings.sink_body_limit
    counts = {"events": 0, "pairs": 0, "records": 0, "bad": 0, "unauthorized": 0,
              "too_large": 0, "slow": 0}
    app.state.writer, app.state.pairing, app.state.counts = writer, pairing, counts

    def unusable(reason: str) -> JSONResponse:
        counts["bad"] += 1
        log.warning("sink: unusable event: %s", reason[:300])
        return JSONResponse({"accepted": False, "error": reason}, status_code=202)

    @app.post("/events", status_code=202)
    @app.post("/", status_code=202, include_in_schema=False)
    async def events(request: Request):
        counts["events"] += 1
        reason = refused(request, token, sources)
        if reason:
            counts["unauthorized"] += 1
            log.warning("sink: event from %s dropped: %s",
                        request.client.host if request.client else "?", reason)
            return JSONResponse({"error": reason}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            async with asyncio.timeout(settings.sink_body_timeout):
                raw = await read_body(request, limit)
        except TimeoutError:
            counts["slow"] += 1
            return JSONResponse({"error": f"body not received within "
                                 f"{settings.sink_body_timeout:g} s"}, status_code=408,
                                headers={"Connection": "close"})
        except TooLarge as error:
            counts["too_large"] += 1
            return JSONResponse({"error": str(error)}, status_code=413,
                                headers={"Connection": "close"})
        except ClientDisconnect:
            return JSONResponse({"error": "client disconnected"}, status_code=400)
        try:
            event_id, kind, content, size = parse_event(request.headers, raw)
        except BadEvent as error:  # answer 202 anyway: the logger must not retry garbage
            return unusable(str(error))
        halves = pairing.add(event_id, kind, content, size)
        if halves:
            texts, (labels, rows, version) = halves["request"], halves["response"]
            if len(texts) != len(labels):
                return unusable(f"{len(texts)} texts but {len(labels)} predictions")
            writer.log(texts, labels, rows, version, request_id=event_id)
            counts["pairs"] += 1
            counts["records"] += len(texts)
        return {"accepted": True}

    # POST /feedback: what the model servers forward of readers' "Wrong?" (sink_feedback.py).
    install_sink_feedback(app, settings,
                          lambda request: not token_in_url(request) and bearer_ok(request, token),
                          read_body, TooLarge)

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    @app.get("/stats")
    async def stats():
        return {**counts, "unpaired": pairing.unpaired, "pending": len(pairing.pending),
                "pending_bytes": pairing.bytes, "auth": token is not None,
                "logger_sources": len(sources),
                "logged": writer.stats.logged, "failed": writer.stats.failed,
                "dropped": writer.stats.dropped, **app.state.feedback_counts}

    return app
