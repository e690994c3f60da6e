"""Validate one Kubernetes object offline as a kube-apiserver with strict field validation
would: core kinds against kubernetes-validate's strict schemas for the pinned Kubernetes
version, KServe kinds against the openAPIV3Schema of KServe's released CRDs; messages name the
field the way kubectl does (`spec.canary[0].predictor.model.name: Required value`)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

from civicsense.deploy.crds import kserve_schemas
from civicsense.deploy.versions import KUBERNETES_VERSION

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class InvalidObject(ValueError):
    """An object the API server would reject; `problems` holds one line per field."""

    def __init__(self, name: str, problems: list[str]):
        self.name, self.problems = name, problems
        super().__init__(f"{name}: " + "; ".join(problems))


def _list_map_keys(validator, keys, instance, schema):
    """Server-side apply merges associative lists by their keys: every item needs all of them
    (a Service port without `protocol` is rejected)."""
    if not validator.is_type(instance, "array"):
        return
    for index, item in enumerate(instance):
        if isinstance(item, dict):
            for key in keys:
                if key not in item:
                    yield jsonschema.ValidationError(
                        f"Required value (server-side apply merges by {keys})",
                        path=[index, key], validator="listMapKeys")


Validator = jsonschema.validators.extend(
    jsonschema.validators.Draft202012Validator, {"x-kubernetes-list-map-keys": _list_map_keys})


def _schema_dir(version: str) -> Path:
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    matches = sorted(root.glob(f"v{version}.*-local-strict"))
    if not matches:
        raise ValueError(f"kubernetes-validate has no strict schemas for Kubernetes {version}")
    return matches[-1]


@cache
def _kubernetes(version: str) -> tuple[Path, Registry]:
    folder = _schema_dir(version)
    definitions = json.loads((folder / "_definitions.json").read_text())
    return folder, Resource.from_contents(definitions) @ Registry()


def _core_schema(api_version: str, kind: str, version: str) -> dict | None:
    folder, _ = _kubernetes(version)
    group = api_version.split("/")[0].split(".")[0] + "-" if "/" in api_version else ""
    path = folder / f"{kind.lower()}-{group}{api_version.split('/')[-1]}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def field_path(parts) -> str:
    """`spec.canary[0].predictor` from jsonschema's deque of keys and indices."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe(error: jsonschema.ValidationError) -> str:
    """One error in kubectl's words: Required value, unknown field, Invalid value."""
    where = field_path(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return f"{where + '.' if where else ''}{missing}: Required value"
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - known)
        return "; ".join(f'unknown field "{where + "." if where else ""}{name}"'
                         for name in unknown)
    if error.validator == "type":
        expected = error.validator_value
        expected = [t for t in expected if t != "null"] if isinstance(expected, list) else expected
        return (f"{where}: Invalid value: {json.dumps(error.instance)}: {where} in body must "
                f"be of type {'/'.join(expected) if isinstance(expected, list) else expected}")
    if error.validator == "enum":
        return (f"{where}: Unsupported value: {json.dumps(error.instance)}: supported values: "
                + ", ".join(json.dumps(v) for v in error.validator_value))
    return f"{where}: {error.message}"


def _errors(validator, obj: dict) -> list[str]:
    ordered = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return [describe(e) for e in ordered]


def object_name(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{where}{meta.get('name')}"


def validate_object(obj: dict, crd_cache: Path, version: str = KUBERNETES_VERSION) -> str:
    """Raise InvalidObject with every problem; return which schema it passed ("kubernetes 1.33"
    or "kserve CRD"). An apiVersion/kind with neither schema is an error, never a skip."""
    if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
        raise InvalidObject(str(obj)[:60], ["not a Kubernetes object (apiVersion, kind)"])
    key = (obj["apiVersion"], obj["kind"])
    _, registry = _kubernetes(version)
    crd = kserve_schemas(crd_cache).get(key)
    if crd is not None:
        meta_ref = {"$ref": f"https://kubernetes.io/api/_definitions.json#/$defs/{OBJECT_META}"}
        schema = {**crd, "properties": {**crd["properties"], "metadata": meta_ref}}
        source = "kserve CRD"
    else:
        schema = _core_schema(*key, version)
        source = f"kubernetes {version}"
    if schema is None:
        raise InvalidObject(object_name(obj), [f"no schema for {key[0]} {key[1]} (neither "
                                               f"Kubernetes {version} nor KServe's CRDs)"])
    problems = _errors(Validator(schema, registry=registry), obj)
    if not (obj.get("metadata") or {}).get("name"):
        problems.append("metadata.name: Required value")
    if problems:
        raise InvalidObject(object_name(obj), problems)
    return source
