"""The Kubeflow Pipelines documents, strictly: the compiled pipeline through KFP's protobuf
messages (an unknown field is an error), the recurring run through the KFP API models with
unknown fields rejected at every level, its cron checked and its parameters matched against
the compiled pipeline's inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from civicsense.orchestration.schedule import validate_cron
from civicsense.rollout.manifests import known_fields

PARAMETER_TYPES = {"STRING": (str,), "NUMBER_INTEGER": (int,), "NUMBER_DOUBLE": (int, float),
                   "BOOLEAN": (bool,), "LIST": (list,), "STRUCT": (dict,)}


class KfpSpecError(ValueError):
    """A pipeline or recurring-run document KFP would refuse."""


def parse_pipeline(path: Path):
    """(PipelineSpec, PlatformSpec | None) of a compiled pipeline YAML, by strict ParseDict."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    if not docs:
        raise KfpSpecError(f"{path}: empty")
    try:
        spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
        platform = (json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
                    if len(docs) > 1 else None)
    except json_format.ParseError as error:
        raise KfpSpecError(f"{path}: {error}") from None
    return spec, platform


def _strict_api(data: object, klass: str, where: str) -> None:
    """Every key a field of the KFP API model (kfp_server_api drops unknown ones silently)."""
    import kfp_server_api

    if data is None:
        return
    if klass.startswith("list["):
        if not isinstance(data, list):
            raise KfpSpecError(f"{where}: expected a list")
        for index, item in enumerate(data):
            _strict_api(item, klass[5:-1], f"{where}[{index}]")
        return
    if klass.startswith("dict(") or klass == "object":
        if klass != "object" and not isinstance(data, dict):
            raise KfpSpecError(f"{where}: expected a mapping")
        return
    # int64 fields are `str` in the API models; protobuf's JSON takes a number or a string.
    primitive = {"str": (str, int), "int": int, "float": (int, float), "bool": bool,
                 "datetime": str}.get(klass)
    if primitive:
        if not isinstance(data, primitive) or (klass != "bool" and isinstance(data, bool)):
            raise KfpSpecError(f"{where}: expected {klass}, got {json.dumps(data)}")
        return
    cls = getattr(kfp_server_api, klass, None)
    if cls is None:
        raise KfpSpecError(f"{where}: no KFP API model {klass}")
    if getattr(cls, "allowable_values", None):   # an enum
        if data not in cls.allowable_values:
            raise KfpSpecError(f"{where}: {json.dumps(data)} is not one of "
                               f"{sorted(cls.allowable_values)}")
        return
    by_json = known_fields(data, cls, klass, where, KfpSpecError)
    for key, value in data.items():
        _strict_api(value, cls.openapi_types[by_json[key]], f"{where}.{key}")


def check_recurring_run(body: dict, pipeline_spec) -> None:
    """A v2beta1 RecurringRun body: strict fields, a six-field cron, and runtime parameters the
    compiled pipeline declares, of its types, with every required one present."""
    import kfp_server_api
    from kfp.pipeline_spec.pipeline_spec_pb2 import ParameterType

    _strict_api(body, "V2beta1RecurringRun", "recurring_run")
    kfp_server_api.ApiClient()._ApiClient__deserialize(body, "V2beta1RecurringRun")
    cron = ((body.get("trigger") or {}).get("cron_schedule") or {}).get("cron")
    if not cron:
        raise KfpSpecError("recurring_run.trigger.cron_schedule.cron: Required value")
    try:
        validate_cron(cron)
    except ValueError as error:
        raise KfpSpecError(f"recurring_run.trigger.cron_schedule.cron: {error}") from None
    if body.get("mode") not in ("ENABLE", "DISABLE"):
        raise KfpSpecError(f"recurring_run.mode: {body.get('mode')!r} is not ENABLE/DISABLE")
    declared = pipeline_spec.root.input_definitions.parameters
    given = (body.get("runtime_config") or {}).get("parameters") or {}
    for name, value in given.items():
        if name not in declared:
            raise KfpSpecError(f"recurring_run.runtime_config.parameters.{name}: the pipeline "
                               f"has no such input (it has {sorted(declared)})")
        kind = ParameterType.ParameterTypeEnum.Name(declared[name].parameter_type)
        allowed = PARAMETER_TYPES.get(kind, (object,))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise KfpSpecError(f"recurring_run.runtime_config.parameters.{name}: "
                               f"{json.dumps(value)} is not {kind}")
    missing = sorted(n for n, p in declared.items() if not p.is_optional and n not in given)
    if missing and not body.get("pipeline_spec"):
        raise KfpSpecError(f"recurring_run.runtime_config.parameters: {missing} Required value")


def placeholders(body: dict) -> list[str]:
    """The REPLACE_WITH_… values the bring-up fills in (experiment and pipeline ids)."""
    return sorted(set(re.findall(r"REPLACE_WITH_[A-Z_]+", json.dumps(body))))
