"""The CivicSense model server: a `kserve.Model` over the registered MLflow model, V1 and V2.

Everything a client can get wrong is checked up front by the plain functions below and answered
with `kserve.errors.InvalidInput` (HTTP 400, `{"error": …}`): after a 500 KServe drops the
keep-alive connection, so no client mistake may reach the model as an exception.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER, PredictorProtocol
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from civicsense import LABELS, MODEL_NAME
from civicsense.featurize import DESCRIPTOR_NAMES
from civicsense.inference_log import log_prediction
from civicsense.model_processes import ModelProcesses
from civicsense.settings import Settings
from kserve import Model

INPUT_NAME = "text"


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 2000
    max_batch: int = 256


# ---------------------------------------------------------------- validation (plain functions)


def check_texts(items: Any, limits: Limits, where: str = "instances") -> list[str]:
    """A non-empty list of at most max_batch non-blank strings of at most max_text_chars."""
    if not isinstance(items, list):
        raise InvalidInput(f'"{where}" must be a list of strings')
    if not items:
        raise InvalidInput(f'"{where}" is empty: send at least one text')
    if len(items) > limits.max_batch:
        raise InvalidInput(f'"{where}" holds {len(items)} texts; at most {limits.max_batch} '
                           "per request")
    texts = []
    for i, item in enumerate(items):
        if isinstance(item, bytes | bytearray):  # V2 binary tensors arrive as bytes
            try:
                item = bytes(item).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f'"{where}"[{i}] is not valid UTF-8') from None
        if not isinstance(item, str):
            raise InvalidInput(f'"{where}"[{i}] must be a string, not {type(item).__name__}')
        if not item.strip():
            raise InvalidInput(f'"{where}"[{i}] is an empty text')
        if len(item) > limits.max_text_chars:
            raise InvalidInput(f'"{where}"[{i}] has {len(item)} characters; at most '
                               f"{limits.max_text_chars}")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates such as "\ud800" in the JSON
            raise InvalidInput(f'"{where}"[{i}] is not valid UTF-8 text') from None
        texts.append(item)
    return texts


def parse_json(body: bytes | str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:  # also raised for invalid UTF-8
        raise InvalidInput(f"the body is not valid JSON: {error}") from None


def texts_from_v1(payload: Any, limits: Limits) -> list[str]:
    """`{"instances": ["text", …]}` → the texts. KServe hands over the raw bytes when the
    content type is not JSON (e.g. `curl -d`): parse those here."""
    if isinstance(payload, bytes | str):
        payload = parse_json(payload)
    if not isinstance(payload, dict):
        raise InvalidInput('the body must be a JSON object: {"instances": ["text", …]}')
    if "instances" not in payload:
        raise InvalidInput('missing "instances": send {"instances": ["text", …]}')
    return check_texts(payload["instances"], limits)


def texts_from_v2(request: InferRequest, limits: Limits) -> list[str]:
    """One BYTES input named `text`, shape [n] (or [n, 1]) agreeing with its n strings."""
    inputs = request.inputs or []
    if len(inputs) != 1:
        raise InvalidInput(f'expected exactly one input named "{INPUT_NAME}", got {len(inputs)}')
    tensor = inputs[0]
    if tensor.name != INPUT_NAME:
        raise InvalidInput(f'unknown input "{tensor.name}": the input must be named '
                           f'"{INPUT_NAME}"')
    if tensor.datatype != "BYTES":
        raise InvalidInput(f'input "{INPUT_NAME}" must have datatype BYTES, not '
                           f"{tensor.datatype}")
    data = tensor.data
    if isinstance(data, np.ndarray):
        data = data.reshape(-1).tolist()
    shape = tensor.shape
    if (not isinstance(shape, list | tuple) or not shape or len(shape) > 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or (len(shape) == 2 and shape[1] != 1)):
        raise InvalidInput(f'input "{INPUT_NAME}" must have shape [n] or [n, 1], not {shape}')
    if not isinstance(data, list):
        raise InvalidInput(f'input "{INPUT_NAME}" data must be a list of strings')
    if len(shape) == 2 and data and all(isinstance(row, list) for row in data):
        data = [item for row in data for item in row]  # row-major nested form of [n, 1]
    if math.prod(shape) != len(data):
        raise InvalidInput(f'input "{INPUT_NAME}" has shape {list(shape)} but {len(data)} '
                           "items of data")
    return check_texts(data, limits, where=INPUT_NAME)


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedModel:
    predictor: Any  # civicsense.model.SentimentPredictor; None when only resolved
    uri: str
    version: str  # MLflow registered version, or "unregistered"
    run_id: str
    location: str = ""  # where the model directory was read from

    @property
    def version_tag(self) -> str:
        """What every response and the metadata carry: `<registered version>+<run id>`."""
        return f"{self.version}+{self.run_id}"


def resolve_model(uri: str, settings: Settings) -> LoadedModel:
    """Pin a registered model (`models:/name@alias`, `models:/name/version`) or an MLflow model
    directory to one version and location, without loading it: an alias is resolved once, so
    what is loaded is what is reported."""
    import mlflow.artifacts
    from mlflow.models import Model as MLmodel

    version = settings.model_version or "unregistered"
    location = uri
    if uri.startswith("models:/"):
        from mlflow import MlflowClient

        # An explicit client, no global MLflow state: the registry is the configured one.
        client = MlflowClient(tracking_uri=settings.tracking_uri,
                              registry_uri=settings.tracking_uri)
        name, _, ref = uri.removeprefix("models:/").partition("@")
        if ref:  # an alias
            found = client.get_model_version_by_alias(name, ref)
        else:
            name, _, number = name.partition("/")
            found = client.get_model_version(name, number)
        version, uri = str(found.version), f"models:/{name}/{found.version}"
        location = client.get_model_version_download_uri(name, found.version)
    elif "://" not in uri:
        uri = location = str(Path(uri).expanduser().resolve())
    # The MLmodel file alone (Model.load rejects file:// directory URIs as of MLflow 3).
    mlmodel = mlflow.artifacts.download_artifacts(artifact_uri=f"{location.rstrip('/')}/MLmodel")
    return LoadedModel(None, uri, version, str(MLmodel.load(mlmodel).run_id or "none"), location)


def load_resolved(model: LoadedModel, settings: Settings) -> LoadedModel:
    """Load the pyfunc of a resolved model (its code_paths join sys.path) and its predictor."""
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(model.location)
    predictor = pyfunc.unwrap_python_model().predictor
    # One OpenMP thread per process: with several model processes on few cores, more thrash.
    predictor.booster.set_param({"nthread": settings.serve_threads})
    return dataclasses.replace(model, predictor=predictor,
                               run_id=str(pyfunc.metadata.run_id or "none"))


def load_model(uri: str, settings: Settings) -> LoadedModel:
    """Resolve and load: the model as one process serves it."""
    return load_resolved(resolve_model(uri, settings), settings)


def score(predictor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Featurize the texts once; return their class probabilities (float32, [n, 3]) and
    descriptors ([n, len(DESCRIPTOR_NAMES)], for the payload log)."""
    features = predictor.featurizer.transform(texts)
    probabilities = predictor.predict_features(features).astype(np.float32)
    return probabilities, features[list(DESCRIPTOR_NAMES)].to_numpy()


# ---------------------------------------------------------------- the KServe model


class SentimentKServeModel(Model):
    """Texts in, label and class probabilities out, whole batches at once, V1 and V2."""

    def __init__(self, name: str, model_uri: str, settings: Settings, processes: int = 1):
        super().__init__(name)
        self.model_uri = model_uri
        self.settings = settings
        self.limits = Limits(settings.max_text_chars, settings.max_batch)
        self.processes = processes
        self.loaded: LoadedModel | None = None
        self.pool: ModelProcesses | None = None

    def load(self) -> bool:
        """Load the model here, or with processes > 1 resolve it here and load it in that many
        model processes, which then do the predicting."""
        if self.processes > 1:
            # Never the pyfunc here: its code_paths would join sys.path, and the processes
            # spawned from here would import civicsense from the model's copy of it.
            self.loaded = resolve_model(self.model_uri, self.settings)
            self.pool = ModelProcesses(functools.partial(load_resolved, self.loaded,
                                                         self.settings),
                                       score, self.processes, self.loaded.version_tag)
            self.pool.start()
        else:
            self.loaded = load_model(self.model_uri, self.settings)
        self.ready = True
        return self.ready

    def stop(self) -> None:
        super().stop()
        if self.pool is not None:
            self.pool.stop()

    def get_input_types(self) -> list[dict]:
        return [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(LABELS)]}]

    async def predict(self, payload, headers=None, response_headers=None):
        assert self.loaded is not None
        v2 = isinstance(payload, InferRequest)
        texts = texts_from_v2(payload, self.limits) if v2 else texts_from_v1(payload,
                                                                            self.limits)
        if self.pool is None:
            probabilities, descriptors = score(self.loaded.predictor, texts)
        else:
            probabilities, descriptors = await self.pool.score(texts)
        labels = [LABELS[i] for i in probabilities.argmax(axis=1)]
        # Payload log (docs/monitoring.md): queued for a background writer; never raises. The
        # descriptors come from the features just computed: the text is featurized once.
        log_prediction(self.settings, texts, labels, probabilities, self.loaded.version_tag,
                       descriptors=descriptors)
        if not v2:
            rows = probabilities.tolist()
            return {"predictions": [{"label": label, "probabilities": dict(zip(LABELS, row,
                                                                               strict=True))}
                                    for label, row in zip(labels, rows, strict=True)],
                    "model_version": self.loaded.version_tag}
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()), model_name=self.name,
            model_version=self.loaded.version_tag,
            infer_outputs=[
                InferOutput("label", [len(labels)], "BYTES", labels),
                InferOutput("probabilities", list(probabilities.shape), "FP32",
                            probabilities.reshape(-1).tolist()),
            ],
            parameters={"run_id": self.loaded.run_id, "registered_version":
                        self.loaded.version},
        )


# ---------------------------------------------------------------- the server around it


class VersionedDataPlane(DataPlane):
    """KServe's DataPlane with the model version in the V2 metadata, and malformed bodies
    (which KServe's decoders answer with KeyError/TypeError, i.e. 500) turned into 400s.
    Module-level so that worker processes can unpickle it."""

    async def model_metadata(self, model_name: str) -> dict:
        metadata = await super().model_metadata(model_name)
        loaded = getattr(self.get_model_from_registry(model_name), "loaded", None)
        if loaded is not None:
            metadata["versions"] = [loaded.version_tag]
            metadata["platform"] = "mlflow"
        return metadata

    def decode(self, body, headers, *args, **kwargs):
        if (isinstance(body, bytes) and INFERENCE_CONTENT_LENGTH_HEADER not in (headers or {})
                and _is_v2(args, kwargs)):
            # A V2 JSON body sent without a JSON content type: parse and validate it here.
            try:
                body = InferenceRequest.model_validate(parse_json(body))
            except ValidationError as error:
                raise InvalidInput(f"invalid V2 request: {_first_error(error)}") from None
        try:
            return super().decode(body, headers, *args, **kwargs)
        except InvalidInput:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise InvalidInput(f"malformed request body: {error!r}") from None


def _is_v2(args: tuple, kwargs: dict) -> bool:
    protocol = kwargs.get("protocol_version", args[0] if args else "")
    return str(protocol).lower() == PredictorProtocol.REST_V2.value


def _first_error(error) -> str:
    first = (error.errors() or [{}])[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return f"{first.get('msg', 'malformed body')}" + (f" at {where}" if where else "")


def install_error_handlers(app) -> None:
    """FastAPI answers a V2 body it cannot parse with 422 `{"detail": …}` (or 400 `{"detail":
    …}` for bytes it cannot decode); make them the same `{"error": …}` 400 as every other client
    error. Idempotent."""
    from fastapi.exceptions import RequestValidationError

    async def bad_request(_, exc: RequestValidationError):
        return JSONResponse(status_code=400,
                            content={"error": f"invalid request: {_first_error(exc)}"})

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


def _install_on_kserve_app() -> None:
    # Runs at import, so the app KServe builds from kserve.model_server.app has the handlers
    # whoever starts the server.
    from fastapi.exceptions import FastAPIDeprecationWarning

    from kserve import model_server

    install_error_handlers(model_server.app)
    # KServe 0.21 still answers with ORJSONResponse: FastAPI warns on every request.
    warnings.filterwarnings("ignore", category=FastAPIDeprecationWarning)


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


def _configure_logging(settings: Settings) -> None:
    """Point KServe at our log config, through the file path its ModelServer reads from
    kserve.model_server.args."""
    from kserve import model_server

    path = settings.home_dir / "serve-logging.json"
    path.write_text(json.dumps(log_config(settings.serve_access_log)))
    model_server.args.log_config_file = str(path)


_install_on_kserve_app()


def serve(settings: Settings, model_uri: str | None = None, model_name: str = MODEL_NAME,
          port: int | None = None, workers: int | None = None) -> None:
    """Load the model and serve it on 0.0.0.0:port (KServe hard-codes the host) until stopped:
    one HTTP process, and with workers > 1 that many model processes behind it."""
    from kserve import ModelServer

    workers = workers or settings.serve_workers
    # Set before any model process starts: they inherit it and size their OpenMP pools.
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.serve_threads))
    model = SentimentKServeModel(model_name, model_uri or settings.serve_model_uri, settings,
                                 processes=workers)
    model.load()
    _configure_logging(settings)
    from kserve.model_server import app

    app.add_middleware(BodySizeLimit, max_bytes=settings.body_limit)
    # One uvicorn process: the model processes spread requests, not uvicorn workers (see
    # ModelProcesses for why).
    server = ModelServer(http_port=port or settings.serve_port, workers=1,
                         enable_grpc=False, enable_latency_logging=False)
    server.dataplane = VersionedDataPlane(model_registry=server.registered_models)
    server.start([model])


def main(argv: list[str] | None = None) -> None:
    """The container entry point (kserve/model_server.py): KServe-style flags."""
    import argparse

    parser = argparse.ArgumentParser(description="CivicSense KServe model server")
    parser.add_argument("--model_name", default=MODEL_NAME)
    parser.add_argument("--model_dir", default=None, help="MLflow model directory or URI "
                        "[default: CIVICSENSE_SERVE_MODEL_URI]")
    parser.add_argument("--http_port", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    args, _ = parser.parse_known_args(argv)
    serve(Settings(), args.model_dir, args.model_name, args.http_port, args.workers)
