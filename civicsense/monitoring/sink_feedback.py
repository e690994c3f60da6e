"""The sink's `POST /feedback`: on the cluster the model server forwards each feedback it
accepted here (with the sink token as `Authorization: Bearer`, never in the URL), and the sink
writes the feedback log to GCS. Same checks and limits as the server's route
(civicsense.monitoring.feedback_intake); one replica, so its limits are cluster-wide.

The server verified the reader's credential: the body's `client_id` is the one it made of it
(credential's install id and peer tag, `credentialed_client`), required here and written as
is, like the reader's address in X-CivicSense-Peer. A sink with a token takes /feedback only
from its holders; `civicsense sink` without one binds only loopback unless told otherwise.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from civicsense.monitoring.feedback_intake import (
    FeedbackLimits,
    FeedbackRejected,
    feedback_body_limit,
    parse_feedback,
)
from civicsense.monitoring.feedback_log import write_feedback
from civicsense.monitoring.request_edge import client_address
from civicsense.settings import Settings

log = logging.getLogger(__name__)
PEER_HEADER = "x-civicsense-peer"  # set by the model server; trusted only with the token


def install_sink_feedback(app, settings: Settings, authorized, read_body, TooLarge) -> None:
    """Add POST /feedback to the sink's app. `authorized(request)` is the sink's token check
    (None token: open); `read_body(request, limit)` and `TooLarge` its bounded body reader."""
    limits = FeedbackLimits(settings)
    body_limit = feedback_body_limit(settings.max_text_chars)
    has_token = settings.sink_token is not None
    counts = {"feedback": 0, "feedback_refused": 0}
    app.state.feedback_counts = counts
    lock = asyncio.Lock()

    def refuse(error: FeedbackRejected) -> JSONResponse:
        counts["feedback_refused"] += 1
        log.warning("sink: feedback refused (%d): %s", error.status, str(error)[:300])
        return JSONResponse({"error": str(error)}, status_code=error.status,
                            headers=error.headers())

    @app.post("/feedback")
    async def feedback(request: Request):
        if not authorized(request):
            return refuse(FeedbackRejected("missing or wrong sink token", 401))
        try:
            async with asyncio.timeout(settings.sink_body_timeout):
                raw = await read_body(request, body_limit)
            parsed = parse_feedback(raw, settings.max_text_chars)
            tcp_peer = request.client.host if request.client else None
            # The server's word for the reader's address counts only from a holder of the token.
            forwarded = request.headers.get(PEER_HEADER) if has_token else None
            peer = forwarded or client_address(tcp_peer, request.headers,
                                               settings.trusted_proxies)
            record = parsed.record()  # a 400 without the server's client id
            limits.admit(record["client_id"], peer)
        except TimeoutError:
            return refuse(FeedbackRejected("body not received in time", 408))
        except TooLarge as error:
            return refuse(FeedbackRejected(str(error), 413))
        except ClientDisconnect:
            return refuse(FeedbackRejected("client disconnected"))
        except FeedbackRejected as error:
            return refuse(error)
        try:
            async with lock:
                await asyncio.to_thread(write_feedback, [record], settings.feedback_log,
                                        settings)
        except Exception as error:  # noqa: BLE001 - I/O: OSError, GCS errors
            return refuse(FeedbackRejected("the feedback log cannot be written now: "
                                           f"{type(error).__name__}", 503, 30))
        counts["feedback"] += 1
        return {"accepted": True, "post_key": record["post_key"], "label": record["label"],
                "model_version": record["model_version"]}
