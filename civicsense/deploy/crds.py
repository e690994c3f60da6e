"""KServe's released CRDs: found beside the project (../shared/k8s) or downloaded at the pinned
tag, checked against the pinned sha256, and turned into strict JSON Schemas (unknown fields
rejected, as kubectl's strict field validation does)."""

from __future__ import annotations

import copy
import hashlib
import urllib.request
from functools import cache
from pathlib import Path

import yaml

from civicsense.deploy.versions import KSERVE_CRD_BASE_URL, KSERVE_CRD_SHA256, KSERVE_VERSION
from civicsense.settings import PROJECT_ROOT

SHARED_CRDS = PROJECT_ROOT.parent / "shared" / "k8s" / f"kserve-{KSERVE_VERSION}"


class CrdError(RuntimeError):
    """A CRD that could not be found, fetched or trusted."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_crds(cache_dir: Path, shared: Path = SHARED_CRDS,
               base_url: str = KSERVE_CRD_BASE_URL) -> dict[str, Path]:
    """Each pinned CRD file: from `shared` if it is there, else downloaded into `cache_dir`.
    Every file, wherever it came from, must have its pinned sha256."""
    found = {}
    for name, digest in KSERVE_CRD_SHA256.items():
        path = shared / name
        if not path.is_file():
            path = cache_dir / KSERVE_VERSION / name
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                url = f"{base_url}/{name}"
                try:
                    with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310
                        data = answer.read()
                except OSError as error:
                    raise CrdError(f"cannot download {url}: {error} (put KServe "
                                   f"{KSERVE_VERSION}'s CRDs in {shared})") from None
                if sha256_of(data) != digest:
                    raise CrdError(f"{url}: sha256 {sha256_of(data)}, pinned {digest}")
                path.write_bytes(data)
        actual = sha256_of(path.read_bytes())
        if actual != digest:
            raise CrdError(f"{path}: sha256 {actual}, pinned {digest}: not KServe "
                           f"{KSERVE_VERSION}'s released CRD")
        found[name] = path
    return found


def strict_schema(node: object) -> object:
    """An openAPIV3Schema as a JSON Schema with the API server's structural rules: objects
    with declared properties reject unknown fields (unless x-kubernetes-preserve-unknown-fields),
    int-or-string accepts either, nullable accepts null."""
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: strict_schema(value) for key, value in node.items()
              if key not in ("description", "x-kubernetes-preserve-unknown-fields",
                             "x-kubernetes-int-or-string", "nullable")}
    if node.get("x-kubernetes-int-or-string"):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in node:
        schema["additionalProperties"] = False
        schema.setdefault("properties", {})
    if node.get("nullable") and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def _versions(path: Path) -> dict[tuple[str, str], dict]:
    # libyaml's loader when present: the InferenceService CRD is 2 MB (7 s in pure Python).
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    return {(f"{group}/{v['name']}", kind): v["schema"]["openAPIV3Schema"]
            for v in crd["spec"]["versions"] if v.get("served")}


def kserve_schemas(cache_dir: Path) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) → strict JSON Schema of the object, for every served version of
    every pinned CRD. `metadata` is left to the caller (ObjectMeta's own schema)."""
    return _schemas(tuple(sorted(fetch_crds(cache_dir).values())))


@cache
def _schemas(paths: tuple[Path, ...]) -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in paths:
        for key, openapi in _versions(path).items():
            schema = strict_schema(copy.deepcopy(openapi))
            schema["properties"]["apiVersion"] = {"const": key[0]}
            schema["properties"]["kind"] = {"const": key[1]}
            schema["required"] = sorted({"apiVersion", "kind", "metadata",
                                         *schema.get("required", [])})
            schemas[key] = schema
    return schemas
