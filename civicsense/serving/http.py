"""The HTTP edge of the server: one `{"error": …}` shape for every client error, logged as one
line; 503 + Retry-After when a request is out of time or no model process is alive; a
request-body size limit; and KServe's logging minus its per-request lines and 4xx tracebacks."""

from __future__ import annotations

import copy
import logging

from fastapi.exceptions import RequestValidationError
from kserve.errors import (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotLive,
    ServerNotReady,
    UnsupportedProtocol,
)
from kserve.logging import logger
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from civicsense.serving.budget import RETRY_AFTER_SECONDS, RequestTimedOut
from civicsense.serving.model_processes import ModelProcessDied
from civicsense.serving.validation import first_error

# What KServe's own handlers answer with a 4xx (or a 503 that is no server fault): they log
# each with a full traceback; OneLineClientErrors makes that one line.
CLIENT_ERRORS = (InvalidInput, ModelNotFound, ModelNotReady, UnsupportedProtocol,
                 ServerNotLive, ServerNotReady)
MAX_LOGGED_CHARS = 300


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_LOGGED_CHARS else text[:MAX_LOGGED_CHARS] + "…"


def log_client_error(status: int, request, message: str) -> None:
    """One log line per client error: status, method, path, the error."""
    method = getattr(request, "method", "") or ""
    path = getattr(getattr(request, "url", None), "path", "") or ""
    logger.warning("%d %s %s: %s", status, method, path, _one_line(message))


class OneLineClientErrors(logging.Filter):
    """Logging filter: KServe's handlers log every client error with its traceback (≈30
    lines); keep one line, the exception's type and message."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, CLIENT_ERRORS):
            record.msg, record.args = "client error %s: %s", (type(error).__name__,
                                                              _one_line(str(error)))
            record.exc_info, record.exc_text, record.levelno = None, None, logging.WARNING
            record.levelname = "WARNING"
        return True


def install_error_handlers(app) -> None:
    """FastAPI answers a V2 body it cannot parse with 422 `{"detail": …}` (or 400 `{"detail":
    …}` for bytes it cannot decode); make them the same `{"error": …}` 400 as every other client
    error. Idempotent."""

    async def bad_request(request, exc: RequestValidationError):
        message = f"invalid request: {first_error(exc)}"
        log_client_error(400, request, message)
        return JSONResponse(status_code=400, content={"error": message})

    async def http_error(request, exc: StarletteHTTPException):  # e.g. a body it cannot read
        if exc.status_code < 500:
            log_client_error(exc.status_code, request, str(exc.detail))
        return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)},
                            headers=getattr(exc, "headers", None))

    async def unavailable(request, exc: Exception):  # out of time, or no model process alive
        logger.warning("503 %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=503, content={"error": str(exc)},
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    async def client_gone(request, exc: ClientDisconnect):
        logger.info("client went away during %s %s", request.method, request.url.path)
        return JSONResponse(status_code=400, content={"error": "the client disconnected"})

    if not getattr(app.state, "civicsense_errors", False):
        app.add_exception_handler(RequestValidationError, bad_request)
        app.add_exception_handler(StarletteHTTPException, http_error)
        app.add_exception_handler(RequestTimedOut, unavailable)
        app.add_exception_handler(ModelProcessDied, unavailable)
        app.add_exception_handler(ClientDisconnect, client_gone)
        app.state.civicsense_errors = True


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` is a 413 `{"error": …}` before anything reads it
    whole (by its Content-Length up front, or as a chunked body arrives)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self, size: str) -> str:
        return (f"the request body is {size} bytes; at most {self.max_bytes} (send fewer or "
                "shorter texts per request)")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            message = self._message(declared.decode())
            logger.warning("413 %s %s: %s", scope.get("method"), scope.get("path"), message)
            response = JSONResponse({"error": message}, status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise StarletteHTTPException(413, self._message(f"over {received}"))
            return message

        await self.app(scope, counted_receive, send)


def log_config(access_log: bool) -> dict:
    """KServe's logging setup, minus the per-request lines: its timing middleware logs two
    `kserve.trace` lines per request (the same figures are on /metrics) and uvicorn one access
    line; at a few ms per request that logging is a real share of the cost."""
    from kserve.logging import KSERVE_LOG_CONFIG

    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    config["loggers"]["kserve.trace"]["level"] = "WARNING"
    config.setdefault("filters", {})["one_line_client_errors"] = {
        "()": "civicsense.serving.http.OneLineClientErrors"}
    config["handlers"]["kserve"].setdefault("filters", []).append("one_line_client_errors")
    if not access_log:
        config["loggers"]["uvicorn.access"]["level"] = "WARNING"
    return config
