"""The HTTP edge of the server: one `{"error": …}` shape for every client error, a request-body
size limit, and KServe's logging minus its per-request lines."""

from __future__ import annotations

import copy

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from civicsense.serving.validation import first_error


def install_error_handlers(app) -> None:
    """FastAPI answers a V2 body it cannot parse with 422 `{"detail": …}` (or 400 `{"detail":
    …}` for bytes it cannot decode); make them the same `{"error": …}` 400 as every other client
    error. Idempotent."""

    async def bad_request(_, exc: RequestValidationError):
        return JSONResponse(status_code=400,
                            content={"error": f"invalid request: {first_error(exc)}"})

    async def http_error(_, exc: StarletteHTTPException):  # e.g. a body FastAPI cannot read
        return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)},
                            headers=getattr(exc, "headers", None))

    if not getattr(app.state, "civicsense_errors", False):
        app.add_exception_handler(RequestValidationError, bad_request)
        app.add_exception_handler(StarletteHTTPException, http_error)
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
            response = JSONResponse({"error": self._message(declared.decode())}, status_code=413)
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
    if not access_log:
        config["loggers"]["uvicorn.access"]["level"] = "WARNING"
    return config
