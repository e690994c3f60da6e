"""The model server: KServe's ModelServer around the registered model on one HTTP port (V1 + V2),
started by `civicsense serve` or, on the cluster, by the runtime's entry point with KServe's own
flags (`kserve/model_server.py`)."""

from __future__ import annotations

import argparse
import os
import time
import warnings

from civicsense.monitoring.request_edge import is_blank, proxy_options
from civicsense.serving.client_budget import ClientBudgets
from civicsense.serving.connections import guarded_protocol
from civicsense.serving.dataplane import RepositoryRoutesOff, VersionedDataPlane
from civicsense.serving.fair_share import FairShare
from civicsense.serving.feedback import install_feedback_route
from civicsense.serving.http import (
    BodySizeLimit,
    StrictJsonBodies,
    install_error_handlers,
    log_config,
)
from civicsense.serving.predictor import SentimentKServeModel
from civicsense.serving.routes import install_model_routes
from civicsense.settings import Settings


def serve(settings: Settings, model_uri: str | None = None, model_name: str | None = None,
          port: int | None = None, workers: int | None = None,
          server_options: dict | None = None, log_config_file: str | None = None) -> None:
    """Load the model and serve it on 0.0.0.0:port (KServe hard-codes the host) until stopped:
    one HTTP process, and with workers > 1 that many model processes behind it.
    `server_options` are further kserve.ModelServer keyword arguments (from its flags);
    `log_config_file` replaces the default logging setup (KServe's flag of that name)."""
    import kserve.logging
    from fastapi.exceptions import FastAPIDeprecationWarning
    from kserve import model_server

    workers = workers or settings.serve_workers
    # The model processes start from this environment and size their OpenMP pools from it.
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.serve_threads))
    # KServe 0.21 still answers with ORJSONResponse: FastAPI warns on every request.
    warnings.filterwarnings("ignore", category=FastAPIDeprecationWarning)
    kserve.logging.configure_logging(log_config_file or log_config(settings.serve_access_log))
    started = time.monotonic()
    model = SentimentKServeModel(model_name or settings.model_name,
                                 model_uri or settings.model_uri, settings,
                                 processes=workers)
    kserve.logging.logger.info("loading model %s …", model.model_uri)
    model.load()
    is_blank("warm")  # builds its table of invisible characters now, not on a first request
    # One uvicorn process: the model processes spread requests, not uvicorn workers (see
    # civicsense.serving.model_processes for why).
    options = {"enable_grpc": False, "enable_latency_logging": False, **(server_options or {})}
    server = _model_server_class()(http_port=port or settings.serve_port, workers=1, **options)
    server.dataplane = VersionedDataPlane(model_registry=server.registered_models)
    # KServe serves the app object of kserve.model_server: ours go on it before its own routes.
    install_app(model_server.app, server.registered_models, server.dataplane, settings)
    server.model_repository_extension = RepositoryRoutesOff(server.registered_models)
    server.settings = settings
    server.ready_message = (
        "ready in %.1f s (version %s, %d model process%s)",
        started, model.loaded.version_tag, workers, "" if workers == 1 else "es")
    server.start([model])


def install_app(app, models, dataplane, settings: Settings) -> None:
    """Everything this server adds to KServe's FastAPI `app`, before KServe registers its own
    routes and handlers on it at start: the error handlers, strict JSON bodies inside the body
    limit, each client's budget of model time outside both (a refusal reads no body), the
    feedback route (in this, the HTTP, process: rate limits per server), and the versioned V2
    routes and `:explain` answered our way. `models` is the server's model repository,
    `dataplane` its data plane."""
    install_error_handlers(app)
    app.add_middleware(StrictJsonBodies)  # added first: inside the limit, which bounds it
    app.add_middleware(BodySizeLimit, max_bytes=settings.body_limit)
    app.add_middleware(FairShare, budgets=ClientBudgets.from_settings(settings),
                       trusted_proxies=settings.trusted_proxies, max_batch=settings.max_batch,
                       max_request_chars=settings.max_request_chars)
    install_feedback_route(app, models, settings)
    install_model_routes(app, models, dataplane)


def configure_uvicorn(config, settings: Settings) -> None:
    """What this server changes in the uvicorn config KServe builds: uvicorn's h11 protocol
    with read deadlines (civicsense.serving.connections), and forwarded headers honoured only
    from `settings.trusted_proxies` (uvicorn's default trusts X-Forwarded-For from 127.0.0.1
    and rewrites the client address before any route reads it)."""
    config.http = guarded_protocol(settings.serve_read_timeout_seconds)
    for name, value in proxy_options(settings.trusted_proxies).items():
        setattr(config, name, value)


def _model_server_class():
    """kserve.ModelServer with two additions at the moment it starts serving: its uvicorn
    configured by configure_uvicorn, and the "ready in" line."""
    from kserve import ModelServer
    from kserve.logging import logger

    class CivicSenseModelServer(ModelServer):
        settings: Settings | None = None
        ready_message: tuple = ()

        async def _serve(self):
            # start() has built the REST server; uvicorn reads its config when it serves.
            rest = getattr(self, "_rest_server", None)
            if rest is not None:
                configure_uvicorn(rest.config, self.settings)  # serve() sets them
            for model in self.registered_models.get_models().values():
                pool = getattr(model, "pool", None)
                if pool is not None:
                    pool.watch()  # a process that dies before any request is replaced too
            if self.ready_message:
                text, started, *rest_args = self.ready_message
                logger.info(text, time.monotonic() - started, *rest_args)
            await super()._serve()

    return CivicSenseModelServer


def argument_parser() -> argparse.ArgumentParser:
    """KServe's own model-server flags (as its sklearnserver reuses them), plus --model_dir;
    unset flags fall back on Settings (CIVICSENSE_* env)."""
    from kserve import model_server

    parser = argparse.ArgumentParser(description="CivicSense KServe model server",
                                     parents=[model_server.parser])
    parser.add_argument("--model_dir", default=None, help="MLflow model directory or URI "
                        "[default: CIVICSENSE_SERVE_MODEL_URI]")
    # None: take the value from Settings (model name, port, model processes); the rest of
    # KServe's defaults are tuned for this server (no gRPC, no per-request latency lines).
    parser.set_defaults(model_name=None, http_port=None, workers=None, enable_grpc=False,
                        enable_latency_logging=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    """The container entry point (kserve/model_server.py): KServe-style flags."""
    args, _ = argument_parser().parse_known_args(argv)
    options = {"enable_grpc": args.enable_grpc, "grpc_port": args.grpc_port,
               "enable_latency_logging": args.enable_latency_logging,
               "timeout_keep_alive": args.timeout_keep_alive, "event_loop": args.event_loop,
               "max_asyncio_workers": args.max_asyncio_workers}
    serve(Settings(), args.model_dir, args.model_name, args.http_port, args.workers, options,
          args.log_config_file)
