"""The HTTP edge of the server: one `{"error": …}` shape for every client error, logged as one
line; 503 + Retry-After when a request is out of time or no model process is alive; a
request-body size limit; strict JSON bodies; and KServe's logging minus its per-request lines
and 4xx tracebacks."""

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

from civicsense.monitoring.request_edge import (
    BOM,
    duplicate_key,
    duplicate_key_message,
    strip_bom,
)
from civicsense.serving.budget import RETRY_AFTER_SECONDS, RequestTimedOut
from civicsense.serving.model_processes import ModelProcessDied
from civicsense.serving.validation import first_error

# What KServe's own handlers answer with a 4xx, a 501 or a 503 that is no server fault: they
# log each with a full traceback; OneLineClientErrors makes that one line.
CLIENT_ERRORS = (InvalidInput, ModelNotFound, ModelNotReady, UnsupportedProtocol,
                 ServerNotLive, ServerNotReady, NotImplementedError)
BINARY_HEADER = b"inference-header-content-length"  # V2 binary extension: JSON part's length
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


class StrictJsonBodies:
    """ASGI middleware for POST bodies, before any route reads them: a leading UTF-8 BOM is
    dropped (V1 and the feedback route parse with orjson, which refuses one; V2 with Python's
    json, which skips it: both now accept it alike), and a JSON object holding a key twice is a
    400 `{"error": …}` (the JSON part of a V2 binary-extension body too). A body that is no
    JSON goes on untouched: the route's own parser says what is wrong. Install it inside
    BodySizeLimit, which bounds what this buffers."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        try:
            messages, body = await self._read(receive)
        except StarletteHTTPException as error:  # BodySizeLimit's 413, raised from receive
            return await self._refuse(scope, receive, send, error.status_code, str(error.detail))
        if messages[-1]["type"] == "http.request":  # else gone: the route sees the disconnect
            json_length = dict(scope["headers"]).get(BINARY_HEADER, b"").decode("latin-1")
            json_length = json_length.strip()
            if body.startswith(BOM):
                body = strip_bom(body)
                scope = {**scope, "headers": _without_bom(scope["headers"])}
                if json_length.isdigit():
                    json_length = str(max(int(json_length) - len(BOM), 0))
            messages = [{"type": "http.request", "body": body, "more_body": False}]
            json_part = body[:int(json_length)] if json_length.isdigit() else body
            duplicate = duplicate_key(json_part) if json_part else None
            if duplicate is not None:
                return await self._refuse(scope, receive, send, 400,
                                          duplicate_key_message(duplicate))

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _read(receive) -> tuple[list[dict], bytes]:
        """Every message of the body (a disconnect too, for the route to see), and the body."""
        messages, chunks = [], []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return messages, b"".join(chunks)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, message: str):
        logger.warning("%d %s %s: %s", status, scope.get("method"), scope.get("path"),
                       _one_line(message))
        response = JSONResponse({"error": message}, status_code=status)
        return await response(scope, receive, send)


def _without_bom(headers: list) -> list:
    """Request headers for the body without its BOM: Content-Length, and the binary
    extension's JSON length (the BOM was part of the JSON), shorter by the BOM."""
    changed = []
    for name, value in headers:
        if name in (b"content-length", BINARY_HEADER) and value.strip().isdigit():
            value = str(max(int(value) - len(BOM), 0)).encode()
        changed.append((name, value))
    return changed


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
