"""KServe's DataPlane with the model version in the V2 metadata, no extension advertised that
answers 404, malformed bodies (which KServe's decoders answer with KeyError/TypeError, i.e.
500) turned into 400s, and each request's estimated model time booked to its client's budget
before the model runs."""

from __future__ import annotations

from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER, PredictorProtocol
from kserve.errors import InvalidInput, ServerNotLive
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from civicsense.serving.client_budget import current_reservation
from civicsense.serving.validation import first_error, parse_json


class VersionedDataPlane(DataPlane):
    """The data plane the server runs: versioned metadata, every malformed body a 400, and
    health that is re-checked on every call (a model whose processes all died is not ready and
    not live, so Kubernetes stops routing to the pod and restarts it if it stays so)."""

    def _all_ready(self) -> bool:
        models = self.model_registry.get_models().values()
        return bool(models) and all(getattr(model, "ready", False) for model in models)

    async def live(self) -> dict[str, str]:
        if not self._all_ready():
            raise ServerNotLive("no model process is alive")
        return {"status": "alive"}

    async def ready(self) -> bool:
        return self._all_ready() and await super().ready()

    def metadata(self) -> dict:
        # KServe advertises the model-repository extension, whose routes answer 404 here
        # (RepositoryRoutesOff): advertise only what works.
        return {**super().metadata(), "extensions": []}

    async def model_metadata(self, model_name: str) -> dict:
        metadata = await super().model_metadata(model_name)
        loaded = getattr(self.get_model_from_registry(model_name), "loaded", None)
        if loaded is not None:
            metadata["versions"] = [loaded.version_tag]
            metadata["platform"] = "mlflow"
        return metadata

    async def infer(self, model_name: str, request, headers=None):
        """KServe's infer, with the request's texts estimated and booked to its client's
        budget before any of them runs, and nothing charged when they are refused (400)."""
        reservation = current_reservation()
        if reservation is not None:
            size = request_size(request)
            if size is None:  # raw bytes (no JSON content type) or malformed: as booked
                reservation.estimate = reservation.booked
            else:
                reservation.book_estimate(*size)
        try:
            return await super().infer(model_name, request, headers)
        except InvalidInput:
            if reservation is not None:
                reservation.refund()
            raise

    def decode(self, body, headers, *args, **kwargs):
        if (isinstance(body, bytes) and INFERENCE_CONTENT_LENGTH_HEADER not in (headers or {})
                and _is_v2(args, kwargs)):
            # A V2 JSON body sent without a JSON content type: parse and validate it here.
            try:
                body = InferenceRequest.model_validate(parse_json(body))
            except ValidationError as error:
                raise InvalidInput(f"invalid V2 request: {first_error(error)}") from None
        try:
            decoded, attributes = super().decode(body, headers, *args, **kwargs)
        except InvalidInput:
            raise
        except Exception as error:  # noqa: BLE001 - decoding reads only the client's bytes
            # KServe's binary-extension decoder answers bad lengths, sizes and tensors with
            # KeyError, TypeError, struct.error, OverflowError, …: each is the body's fault.
            raise InvalidInput(f"malformed request body: {type(error).__name__}: "
                               f"{str(error)[:200]}") from None
        request_id = getattr(decoded, "id", None)
        if isinstance(decoded, InferRequest) and not isinstance(request_id, str | None):
            # The binary extension skips the JSON schema: an id of 5 would be a 500 on answer.
            raise InvalidInput('"id" must be a string')
        return decoded, attributes


class RepositoryRoutesOff(ModelRepositoryExtension):
    """KServe's model-repository extension with load and unload refused (404): unauthenticated,
    they let anyone who reaches the port unload the model while the pod stays Ready. The
    server serves the one model it was started with; a new version is a new rollout."""

    async def load(self, model_name: str) -> None:
        raise HTTPException(404, "the model repository endpoints are disabled on this server")

    async def unload(self, model_name: str) -> None:
        raise HTTPException(404, "the model repository endpoints are disabled on this server")


def request_size(request) -> tuple[int, int] | None:
    """(texts, characters in all) of a decoded V1 or V2 request, before it is validated; None
    when its texts are not where a valid request holds them."""
    if isinstance(request, dict):
        items = request.get("instances")
    elif isinstance(request, InferRequest) and request.inputs:
        items = request.inputs[0].data
        items = items.reshape(-1).tolist() if hasattr(items, "reshape") else items
    else:
        return None
    if not isinstance(items, list):
        return None
    flat = [x for item in items for x in (item if isinstance(item, list) else (item,))]
    return len(flat), sum(len(x) for x in flat if isinstance(x, str | bytes))


def _is_v2(args: tuple, kwargs: dict) -> bool:
    protocol = kwargs.get("protocol_version", args[0] if args else "")
    return str(protocol).lower() == PredictorProtocol.REST_V2.value
