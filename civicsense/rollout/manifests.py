"""Strict offline parsing of the manifests into the KServe / Kubernetes SDK models: an unknown
field, a wrong type or a missing required field is an error naming where it is."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


class ManifestError(ValueError):
    """A manifest the SDK models reject."""


def _model_class(name: str):
    import kserve.models as ks
    import kubernetes.client.models as k8s

    for module in (ks, k8s):
        if hasattr(module, name):
            return getattr(module, name)
    raise ManifestError(f"no SDK model named {name}")


_PRIMITIVES: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "object": lambda v: True,
    "ResourceQuantity": lambda v: isinstance(v, str | int | float) and not isinstance(v, bool),
    "datetime": lambda v: isinstance(v, str),
    "date": lambda v: isinstance(v, str),
}


def known_fields(data: Any, model: type, klass: str, path: str,
                 error: type[ValueError] = ManifestError) -> dict[str, str]:
    """{JSON key: attribute} of a generated OpenAPI model class (`klass` names it), once `data`
    is a mapping whose every key is one of its fields; else raises `error` naming `path` (the
    generated deserializers drop unknown keys silently). Also deploy.kfp_specs' check."""
    if not isinstance(data, dict):
        raise error(f"{path}: expected a {klass} mapping")
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json))
    if unknown:
        raise error(f"{path}: unknown field(s) {unknown} for {klass}")
    return by_json


def to_model(data: Any, klass: str, path: str = "$") -> Any:
    """Deserialize a manifest into the KServe / Kubernetes SDK models, strictly: an unknown
    field, a wrong type or a missing required field is an error naming where it is (the SDKs'
    own deserializers silently drop unknown fields)."""
    if data is None:
        return None
    if klass.startswith("list["):
        if not isinstance(data, list):
            raise ManifestError(f"{path}: expected a list")
        inner = klass[5:-1]
        return [to_model(item, inner, f"{path}[{i}]") for i, item in enumerate(data)]
    if klass.startswith("dict("):
        if not isinstance(data, dict):
            raise ManifestError(f"{path}: expected a mapping")
        inner = re.match(r"dict\(([^,]*), (.*)\)", klass).group(2)
        return {k: to_model(v, inner, f"{path}.{k}") for k, v in data.items()}
    if klass in _PRIMITIVES:
        if not _PRIMITIVES[klass](data):
            raise ManifestError(f"{path}: expected {klass}, got {type(data).__name__} {data!r}")
        return data
    cls = _model_class(klass)
    by_json = known_fields(data, cls, klass, path)
    kwargs = {by_json[key]: to_model(value, cls.openapi_types[by_json[key]], f"{path}.{key}")
              for key, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        raise ManifestError(f"{path}: invalid {klass}: {error}") from None


KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("v1", "Secret"): "V1Secret",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("batch/v1", "CronJob"): "V1CronJob",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("v1", "Namespace"): "V1Namespace",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}


def parse_manifest(doc: dict) -> Any:
    """One manifest document into its SDK model, by apiVersion and kind."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in KINDS:
        raise ManifestError(f"unsupported manifest kind {key}")
    return to_model(doc, KINDS[key], f"{key[1]}")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what `kubectl patch --type merge` does), for offline checks."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
