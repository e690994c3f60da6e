"""The routes KServe registers that this server answers its own way: the versioned V2 routes
work for the version served and are a 404 naming it for any other, and `:explain` is a clean
501. Each refusal is `{"error": …}` and one log line, never a traceback. Installed before
KServe's routes, so these match first."""

from __future__ import annotations

from fastapi import Request, Response
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from kserve.protocol.rest.v2_endpoints import V2Endpoints
from starlette.responses import JSONResponse

from civicsense.serving.http import log_client_error


class RouteRefused(Exception):
    """A request this server does not serve: the HTTP status and what to do instead."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def served_versions(model) -> tuple[str, ...]:
    """What a versioned route may name: the version tag every response carries
    (`<registered version>+<run id>`) and the registered version alone."""
    loaded = getattr(model, "loaded", None)
    if loaded is None:
        return ()
    if loaded.version == "unregistered":
        return (loaded.version_tag,)
    return (loaded.version_tag, loaded.version)


def check_model(models, model_name: str, model_version: str | None = None):
    """The served model of that name (RouteRefused 404 if none), and with `model_version` only
    if it is the version served (else a 404 that names the served one)."""
    model = models.get_model(model_name)
    if model is None:
        raise RouteRefused(404, f"Model with name {model_name} does not exist.")
    if model_version is not None:
        versions = served_versions(model)
        if model_version not in versions:
            served = versions[0] if versions else "none"
            raise RouteRefused(404, f"model {model_name} has no version {model_version!r}: "
                               f"this server serves version {served} only")
    return model


def _refused(request: Request, error: RouteRefused) -> JSONResponse:
    log_client_error(error.status, request, str(error))
    return JSONResponse({"error": str(error)}, status_code=error.status)


def install_model_routes(app, models, dataplane) -> None:
    """Add the versioned V2 routes (metadata, ready, infer) and V1 `:explain` to KServe's app,
    ahead of KServe's own (which answer a version with a 501 and its traceback). `models` is
    the server's model repository, `dataplane` its data plane."""
    endpoints = V2Endpoints(dataplane)

    async def versioned_metadata(model_name: str, model_version: str, request: Request):
        try:
            check_model(models, model_name, model_version)
        except RouteRefused as error:
            return _refused(request, error)
        return await endpoints.model_metadata(model_name)

    async def versioned_ready(model_name: str, model_version: str, request: Request):
        try:
            check_model(models, model_name, model_version)
        except RouteRefused as error:
            return _refused(request, error)
        return await endpoints.model_ready(model_name)

    # The body's annotation is KServe's own, so FastAPI parses it as on the unversioned route.
    async def versioned_infer(raw_request: Request, raw_response: Response, model_name: str,
                              model_version: str, request_body: InferenceRequest | bytes):
        try:
            check_model(models, model_name, model_version)
        except RouteRefused as error:
            return _refused(raw_request, error)
        return await endpoints.infer(raw_request, raw_response, model_name, request_body)

    async def explain(model_name: str, request: Request):
        try:
            check_model(models, model_name)
            raise RouteRefused(501, f"model {model_name} has no explainer: this server only "
                               f"predicts (POST /v1/models/{model_name}:predict)")
        except RouteRefused as error:
            return _refused(request, error)

    prefix = "/v2/models/{model_name}/versions/{model_version}"
    app.add_api_route(prefix, versioned_metadata, methods=["GET"], include_in_schema=False)
    app.add_api_route(prefix + "/ready", versioned_ready, methods=["GET"],
                      include_in_schema=False)
    app.add_api_route(prefix + "/infer", versioned_infer, methods=["POST"],
                      response_model=None, include_in_schema=False)
    app.add_api_route("/v1/models/{model_name}:explain", explain, methods=["POST"],
                      include_in_schema=False)
