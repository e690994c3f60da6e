"""The civicsense-mlflow ClusterServingRuntime as a container: found by kind under manifests/,
its container spec (args, env, port, probe, resources, security) turned into docker-run args."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

RUNTIME_KIND = "ClusterServingRuntime"
RUNTIME_NAME = "civicsense-mlflow"
MODEL_MOUNT = "/mnt/models"
_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class RuntimeSpecError(ValueError):
    """No usable ClusterServingRuntime, or one this launcher cannot honour."""


@dataclass(frozen=True)
class RuntimeContainer:
    """What the runtime's kserve-container declares, in the manifest's own terms."""

    image: str
    args: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    ready_period: int
    limits: dict[str, str] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    run_as_non_root: bool = False
    allow_privilege_escalation: bool = True
    source: str = ""


def find_runtime(root: Path, name: str = RUNTIME_NAME) -> tuple[dict, Path]:
    """The one ClusterServingRuntime called `name` in any YAML under root (wherever the
    manifests keep it); RuntimeSpecError if none or several different ones declare it."""
    import yaml

    found: dict[str, tuple[dict, Path]] = {}
    for path in sorted(root.rglob("*.y*ml")):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue
        for doc in documents:
            if (isinstance(doc, dict) and doc.get("kind") == RUNTIME_KIND
                    and doc.get("metadata", {}).get("name") == name
                    and doc.get("spec", {}).get("containers")):
                found.setdefault(repr(doc["spec"]), (doc, path))
    if len(found) != 1:
        where = ", ".join(str(path) for _, path in found.values()) or f"no YAML under {root}"
        raise RuntimeSpecError(f"expected one {RUNTIME_KIND} {name!r} with containers, "
                               f"found {len(found)} ({where})")
    return next(iter(found.values()))


def runtime_container(doc: dict, model_name: str, source: str = "") -> RuntimeContainer:
    """The kserve-container of a ServingRuntime, `{{.Name}}` filled in as KServe does."""
    containers = doc["spec"]["containers"]
    spec = next((c for c in containers if c.get("name") == "kserve-container"), containers[0])
    probe = spec.get("readinessProbe", {}).get("httpGet")
    if not probe:
        raise RuntimeSpecError("the runtime declares no readinessProbe.httpGet")
    ports = spec.get("ports") or [{"containerPort": 8080}]
    if any("valueFrom" in item for item in spec.get("env", [])):
        raise RuntimeSpecError("env valueFrom needs a cluster: not supported here")
    security = spec.get("securityContext", {})
    return RuntimeContainer(
        image=spec["image"],
        args=[arg.replace("{{.Name}}", model_name) for arg in spec.get("args", [])],
        env={item["name"]: str(item.get("value", "")) for item in spec.get("env", [])},
        port=int(ports[0]["containerPort"]),
        ready_path=probe["path"], ready_period=int(spec["readinessProbe"].get("periodSeconds", 10)),
        limits=dict(spec.get("resources", {}).get("limits", {})),
        requests=dict(spec.get("resources", {}).get("requests", {})),
        run_as_non_root=bool(security.get("runAsNonRoot", False)),
        allow_privilege_escalation=bool(security.get("allowPrivilegeEscalation", True)),
        source=source,
    )


def cpu_quantity(value: str | int | float) -> float:
    """Kubernetes CPU quantity → cores ("2" → 2.0, "500m" → 0.5)."""
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory_quantity(value: str | int) -> int:
    """Kubernetes memory quantity → bytes ("2Gi" → 2147483648, "512M" → 512000000)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?|k)?", str(value))
    if not match:
        raise RuntimeSpecError(f"unsupported memory quantity {value!r}")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""])


def probe_command(port: int, path: str) -> list[str]:
    """The readiness probe's httpGet as a command inside the container (no curl in the image)."""
    return ["CMD", "python", "-c",
            f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', "
            "timeout=2)"]


def docker_run_args(spec: RuntimeContainer, image: str, host_port: int, volume: str,
                    extra_env: dict[str, str] | None = None) -> dict:
    """docker-py `containers.run` arguments giving the container what the pod would get: the
    same args and env, the port published on 127.0.0.1 only, the probe as a healthcheck, CPU
    and memory limits (requests as shares/reservation), the model volume read-only at
    /mnt/models, and no privilege escalation."""
    from docker.types import Mount

    run: dict = {
        "image": image,
        "command": spec.args,
        "environment": {**spec.env, **(extra_env or {})},
        "ports": {f"{spec.port}/tcp": ("127.0.0.1", host_port)},
        "mounts": [Mount(target=MODEL_MOUNT, source=volume, type="volume", read_only=True)],
        "healthcheck": {"test": probe_command(spec.port, spec.ready_path),
                        "interval": spec.ready_period * 10**9, "timeout": 2 * 10**9,
                        "retries": 3},
        "detach": True,
    }
    if "cpu" in spec.limits:
        run["nano_cpus"] = int(cpu_quantity(spec.limits["cpu"]) * 10**9)
    if "memory" in spec.limits:
        run["mem_limit"] = memory_quantity(spec.limits["memory"])
    if "cpu" in spec.requests:
        run["cpu_shares"] = max(2, int(cpu_quantity(spec.requests["cpu"]) * 1024))
    if "memory" in spec.requests:
        run["mem_reservation"] = memory_quantity(spec.requests["memory"])
    if not spec.allow_privilege_escalation:
        run["security_opt"] = ["no-new-privileges"]
    return run


def image_user_is_root(image_attrs: dict) -> bool:
    """Whether an image (docker inspect attrs) runs as root: no USER, "root" or uid 0."""
    user = (image_attrs.get("Config", {}).get("User") or "").split(":")[0]
    return user in {"", "root", "0"}
