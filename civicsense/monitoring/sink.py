"""The payload-log sink: receives the CloudEvents KServe's `logger` (mode: all) posts for every
request and response of the InferenceService, pairs them by event id, and writes the same
inference records as the local server (civicsense.monitoring.inference_log) under
`CIVICSENSE_INFERENCE_LOG_URI` (gs://…/inference-log on the cluster).

KServe's logger sends binary-mode CloudEvents: the payload is the body, the attributes are
headers (`ce-id`, `ce-type` = org.kubeflow.serving.inference.request|response, `ce-source`,
`ce-inferenceservicename`, …); request and response share `ce-id`. Structured mode
(`application/cloudevents+json`) is accepted too. V1 and V2 bodies are both understood.

Pairing is in memory: run one replica (manifests/monitoring/log-sink.yaml), or halves of a pair
may land on different replicas and be counted as `unpaired`.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from civicsense import LABELS
from civicsense.monitoring.inference_log import InferenceLogger
from civicsense.settings import Settings

log = logging.getLogger(__name__)
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


class BadEvent(ValueError):
    """An event the sink cannot turn into records."""


def texts_of_request(body: dict) -> list[str]:
    """V1 {"instances": [...]} or V2 {"inputs": [{"name": "text", "data": [...]}]}."""
    if isinstance(body.get("instances"), list):
        return [str(t) for t in body["instances"]]
    for tensor in body.get("inputs") or []:
        if tensor.get("name") == "text":
            return [str(t) for t in tensor.get("data") or []]
    raise BadEvent("request has neither instances nor a 'text' input")


def predictions_of_response(body: dict) -> tuple[list[str], list[list[float]], str]:
    """Labels, probability rows (LABELS order) and model version of a V1 or V2 response."""
    version = str(body.get("model_version") or "unknown")
    if isinstance(body.get("predictions"), list):
        labels, rows = [], []
        for item in body["predictions"]:
            labels.append(str(item["label"]))
            rows.append([float(item["probabilities"][label]) for label in LABELS])
        return labels, rows, version
    outputs = {o.get("name"): o for o in body.get("outputs") or []}
    if "label" not in outputs or "probabilities" not in outputs:
        raise BadEvent("response has neither predictions nor label/probabilities outputs")
    labels = [str(x) for x in outputs["label"]["data"]]
    flat = [float(x) for x in outputs["probabilities"]["data"]]
    width = len(LABELS)
    return labels, [flat[i:i + width] for i in range(0, len(flat), width)], version


class Pairing:
    """Request and response halves by event id; bounded, oldest halves expire."""

    def __init__(self, max_pending: int = 10_000, ttl: float = 300.0):
        self.pending: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self.max_pending, self.ttl = max_pending, ttl
        self.lock = threading.Lock()
        self.unpaired = 0

    def add(self, event_id: str, kind: str, body: dict) -> dict | None:
        """Store a half; when both halves are in, return {"request": …, "response": …}."""
        now = time.monotonic()
        with self.lock:
            while self.pending and (len(self.pending) >= self.max_pending
                                    or now - next(iter(self.pending.values()))[0] > self.ttl):
                self.pending.popitem(last=False)
                self.unpaired += 1
            _, halves = self.pending.pop(event_id, (now, {}))
            halves[kind] = body
            if "request" in halves and "response" in halves:
                return halves
            self.pending[event_id] = (now, halves)
            return None


def create_app(settings: Settings, writer: InferenceLogger | None = None):
    """The ASGI app: POST /events (KServe logger target), GET /healthz, GET /stats."""
    app = FastAPI(title="CivicSense inference-log sink")
    writer = writer or InferenceLogger(settings.inference_log, settings, source="sink")
    pairing = Pairing()
    counts = {"events": 0, "pairs": 0, "records": 0, "bad": 0}
    app.state.writer, app.state.pairing, app.state.counts = writer, pairing, counts

    @app.post("/events", status_code=202)
    @app.post("/", status_code=202, include_in_schema=False)
    async def events(request: Request):
        counts["events"] += 1
        try:
            event_id, kind, body = _parse_event(request.headers, await request.body())
            halves = pairing.add(event_id, kind, body) if kind else None
            if halves:
                texts = texts_of_request(halves["request"])
                labels, rows, version = predictions_of_response(halves["response"])
                if not len(texts) == len(labels) == len(rows):
                    raise BadEvent(f"{len(texts)} texts but {len(labels)} predictions")
                writer.log(texts, labels, rows, version, request_id=event_id)
                counts["pairs"] += 1
                counts["records"] += len(texts)
        except BadEvent as error:  # answer 202 anyway: the logger must not retry garbage
            counts["bad"] += 1
            log.warning("sink: unusable event: %s", error)
            return JSONResponse({"accepted": False, "error": str(error)}, status_code=202)
        return {"accepted": True}

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    @app.get("/stats")
    async def stats():
        return {**counts, "unpaired": pairing.unpaired, "pending": len(pairing.pending),
                "logged": writer.stats.logged, "failed": writer.stats.failed,
                "dropped": writer.stats.dropped}

    return app


def _parse_event(headers, raw: bytes) -> tuple[str, str | None, dict]:
    """(event id, "request"/"response"/None, JSON payload) from a binary or structured event."""
    try:
        body: Any = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as error:
        raise BadEvent(f"body is not JSON: {error}") from None
    content_type = headers.get("content-type", "")
    if content_type.startswith("application/cloudevents+json"):
        event_id, event_type = body.get("id"), body.get("type", "")
        if "data_base64" in body:
            body = orjson.loads(base64.b64decode(body["data_base64"]))
        else:
            body = body.get("data")
    else:
        event_id, event_type = headers.get("ce-id"), headers.get("ce-type", "")
    if not event_id:
        raise BadEvent("no CloudEvent id (ce-id header)")
    if not isinstance(body, dict):
        raise BadEvent("payload is not a JSON object")
    kind = ("request" if event_type.endswith(".request") else
            "response" if event_type.endswith(".response") else None)
    if kind is None:
        raise BadEvent(f"unknown event type {event_type!r}")
    return str(event_id), kind, body
