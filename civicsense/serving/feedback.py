"""The model server's feedback route, `POST /v1/models/<name>/feedback`: a thin shell over
civicsense.monitoring.feedback_intake (checks, rate limits) that takes feedback only with a
reader's credential (civicsense.serving.credentials, whose issuing route it installs too) and
appends the record to the feedback log, or on the cluster forwards it to the sink, which writes
the log to GCS. The record's client id is the credential's install id and the peer's tag,
never anything the body says.

It runs in the one HTTP process (the model processes only score), so its rate limits are per
server: per pod on the cluster, where the sink applies the cluster-wide ones again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse

from civicsense import LABELS
from civicsense.monitoring.feedback_intake import (
    Feedback,
    FeedbackLimits,
    FeedbackRejected,
    credentialed_client,
    feedback_body_limit,
    parse_feedback,
)
from civicsense.monitoring.feedback_log import write_feedback
from civicsense.monitoring.request_edge import client_address
from civicsense.monitoring.sink_auth import check_token
from civicsense.serving.credentials import (
    HEADER,
    Credential,
    CredentialIssuer,
    CredentialRefused,
    credential_keys,
    install_credential_route,
    peer_tag,
)
from civicsense.serving.http import log_client_error
from civicsense.settings import Settings

PEER_HEADER = "X-CivicSense-Peer"  # the address the server saw, trusted by the sink with its token


class FeedbackWriter:
    """Where accepted feedback goes: the feedback log (one append at a time, off the event
    loop), or with `settings.feedback_forward_url` the sink's /feedback route."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock: asyncio.Lock | None = None
        self._client: Any = None

    async def write(self, record: dict, peer: str) -> None:
        """Write or forward one record; FeedbackRejected with the sink's status if it refuses,
        a 503 if the log or the sink cannot take it now."""
        if self.settings.feedback_forward_url:
            return await self._forward(record, peer)
        self._lock = self._lock or asyncio.Lock()
        try:
            async with self._lock:
                await asyncio.get_running_loop().run_in_executor(
                    None, write_feedback, [record], self.settings.feedback_log, self.settings)
        except Exception as error:  # noqa: BLE001 - I/O: OSError, GCS errors
            raise FeedbackRejected("the feedback log cannot be written now: "
                                   f"{type(error).__name__}", 503, 30) from None

    async def _forward(self, record: dict, peer: str) -> None:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.feedback_forward_timeout)
        headers = {"Content-Type": "application/json", PEER_HEADER: peer}
        if self.settings.sink_token:
            headers["Authorization"] = f"Bearer {self.settings.sink_token.get_secret_value()}"
        body = {key: record[key] for key in ("text", "label", "model_version",
                                             "predicted_label", "client_id")}
        try:
            answer = await self._client.post(self.settings.feedback_forward_url,
                                             content=orjson.dumps(body), headers=headers)
        except httpx.HTTPError as error:
            raise FeedbackRejected(f"the feedback sink is unreachable: {type(error).__name__}",
                                   503, 30) from None
        if answer.status_code < 300:
            return
        try:
            message = str(answer.json().get("error", answer.text))
        except ValueError:
            message = answer.text[:300]
        if answer.status_code >= 500 or answer.status_code == 401:  # 401: our token is wrong
            raise FeedbackRejected(f"the feedback sink answered {answer.status_code}: {message}",
                                   503, 30)
        retry = answer.headers.get("Retry-After", "")
        raise FeedbackRejected(message, answer.status_code,
                               int(retry) if retry.isdigit() else None)


def install_feedback_route(app, models, settings: Settings) -> None:
    """Add `POST /v1/models/{name}/feedback` and `POST /v1/credentials` to KServe's app;
    `models` is the server's model repository (404 for a name it does not serve). Forwarding to
    the sink with the manifests' placeholder token (or an empty one) stops the server at start
    (SinkConfigError), and so does a placeholder credential secret (CredentialConfigError)."""
    if settings.feedback_forward_url and settings.sink_token is not None:
        check_token(settings.sink_token.get_secret_value())
    issuer = CredentialIssuer(settings, credential_keys(settings))
    install_credential_route(app, issuer, settings)
    limits = FeedbackLimits(settings)
    writer = FeedbackWriter(settings)
    body_limit = feedback_body_limit(settings.max_text_chars)

    def refuse(request: Request, error: FeedbackRejected) -> JSONResponse:
        log_client_error(error.status, request, str(error))
        headers = error.headers()
        if error.status == 401:
            headers["WWW-Authenticate"] = f'{HEADER} realm="feedback"'
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=headers)

    def verified(request: Request) -> Credential:
        """The reader's credential, checked before the body is read; else a 401."""
        try:
            return issuer.verify(request.headers.get(HEADER))
        except CredentialRefused as error:
            raise FeedbackRejected(str(error), 401) from None

    def check_version(model, feedback: Feedback) -> None:
        """Feedback is on a badge this server drew: a server serves one version for its life
        (a new version is a new rollout), so any other is refused, naming the served one."""
        loaded = getattr(model, "loaded", None)
        served = loaded.version_tag if loaded is not None else None
        if feedback.model_version != served:
            raise FeedbackRejected(f'"model_version" must be the version this server serves, '
                                   f"{served}: the one its predictions carry")

    async def predicted_label(model, feedback: Feedback) -> str | None:
        """The badge's label when the client did not send it, from the version served."""
        if feedback.predicted_label is not None:
            return None
        probabilities, _ = await model._score_within_budget([feedback.text])
        return LABELS[int(probabilities[0].argmax())]

    async def feedback_route(model_name: str, request: Request):
        model = models.get_model(model_name)
        if model is None:
            message = f"Model with name {model_name} does not exist."
            log_client_error(404, request, message)
            return JSONResponse({"error": message}, status_code=404)
        try:
            credential = verified(request)
            raw = await request.body()
            if len(raw) > body_limit:
                raise FeedbackRejected(f"the feedback body is {len(raw)} bytes; at most "
                                       f"{body_limit}", 413)
            feedback = parse_feedback(raw, settings.max_text_chars)
            check_version(model, feedback)
            # Forwarded headers count only from Settings.trusted_proxies: uvicorn is set alike
            # (server.py), so a spoofed X-Forwarded-For never picks the bucket.
            peer = client_address(request.client.host if request.client else None,
                                  request.headers, settings.trusted_proxies)
            limits.admit(credential.install_id, peer)
            client = credentialed_client(credential.install_id, peer_tag(issuer.keys, peer))
            record = feedback.record(await predicted_label(model, feedback), client)
            await writer.write(record, peer)
        except FeedbackRejected as error:
            return refuse(request, error)
        return {"accepted": True, "post_key": record["post_key"], "label": record["label"],
                "model_version": record["model_version"]}

    app.add_api_route("/v1/models/{model_name}/feedback", feedback_route, methods=["POST"],
                      name="civicsense_feedback")
