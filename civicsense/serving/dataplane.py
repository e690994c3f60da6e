"""KServe's DataPlane with the model version in the V2 metadata, and malformed bodies (which
KServe's decoders answer with KeyError/TypeError, i.e. 500) turned into 400s."""

from __future__ import annotations

from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER, PredictorProtocol
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError

from civicsense.serving.validation import first_error, parse_json


class VersionedDataPlane(DataPlane):
    """The data plane the server runs: versioned metadata, every malformed body a 400."""

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
                raise InvalidInput(f"invalid V2 request: {first_error(error)}") from None
        try:
            return super().decode(body, headers, *args, **kwargs)
        except InvalidInput:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise InvalidInput(f"malformed request body: {error!r}") from None


def _is_v2(args: tuple, kwargs: dict) -> bool:
    protocol = kwargs.get("protocol_version", args[0] if args else "")
    return str(protocol).lower() == PredictorProtocol.REST_V2.value
