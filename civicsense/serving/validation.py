"""Request validation: everything a client can get wrong, checked up front as plain functions.

Every problem is a `kserve.errors.InvalidInput` (HTTP 400, `{"error": …}`): after a 500 KServe
drops the keep-alive connection, so no client mistake may reach the model as an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from civicsense.monitoring.request_edge import is_blank

INPUT_NAME = "text"


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 2000
    max_batch: int = 256
    max_request_chars: int = 64_000


def check_texts(items: Any, limits: Limits, where: str = "instances") -> list[str]:
    """A non-empty list of at most max_batch non-blank strings (something visible in each) of
    at most max_text_chars, and at most max_request_chars in all."""
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
        if is_blank(item):
            raise InvalidInput(f'"{where}"[{i}] is an empty text (only blanks or invisible '
                               "characters)")
        if len(item) > limits.max_text_chars:
            raise InvalidInput(f'"{where}"[{i}] has {len(item)} characters; at most '
                               f"{limits.max_text_chars}")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates such as "\ud800" in the JSON
            raise InvalidInput(f'"{where}"[{i}] is not valid UTF-8 text') from None
        texts.append(item)
    total = sum(map(len, texts))
    if total > limits.max_request_chars:
        raise InvalidInput(f'"{where}" holds {total} characters in all; at most '
                           f"{limits.max_request_chars} per request: send fewer texts at once")
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


def first_error(error) -> str:
    """The first problem of a pydantic / FastAPI validation error, with where it is."""
    first = (error.errors() or [{}])[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return f"{first.get('msg', 'malformed body')}" + (f" at {where}" if where else "")
