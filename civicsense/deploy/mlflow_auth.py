"""MLflow behind its basic-auth app on the cluster: the credentials file the bring-up makes, the
Secrets rendered from it, and the checks that the server runs with auth and that every MLflow
client (pod, pipeline step) gets the credentials from the Secret, never a literal."""

from __future__ import annotations

import configparser
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from civicsense.deploy.netpol import configured_env, pods
from civicsense.deploy.policy import pod_specs

AUTH_SECRET = "civicsense-mlflow-auth"
TRACKING_URI = "MLFLOW_TRACKING_URI"
# What MLflow's Python client reads (mlflow/environment_variables.py: MLFLOW_TRACKING_USERNAME,
# _PASSWORD) ← the Secret's keys.
CLIENT_KEYS = {"MLFLOW_TRACKING_USERNAME": "username", "MLFLOW_TRACKING_PASSWORD": "password"}
# What the auth app reads at start (mlflow/server/auth/config.py and __init__.py, MLflow 3.17.2):
# the admin it creates on an empty user store, and the static key of its CSRF protection.
SERVER_KEYS = {"MLFLOW_AUTH_ADMIN_USERNAME": "username", "MLFLOW_AUTH_ADMIN_PASSWORD": "password",
               "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret-key"}
CONFIG_ENV = "MLFLOW_AUTH_CONFIG_PATH"
PLACEHOLDER = "REPLACE_WITH_"   # the example Secret's values; the server's guard refuses them
MIN_PASSWORD = 12   # MLflow's own rule (mlflow/utils/validation.py, _validate_password)
# The auth app imports flask_wtf (mlflow[auth]); the component image runs the server.
AUTH_PACKAGE = "flask-wtf"


class AuthFileError(ValueError):
    """A credentials file that is missing a value, or holds a placeholder or a short password."""


@dataclass(frozen=True)
class MlflowAuth:
    """The one MLflow account every client uses (the admin the server creates), and the key of
    the server's CSRF protection."""

    username: str
    password: str
    flask_secret_key: str

    @classmethod
    def generate(cls, username: str = "civicsense") -> MlflowAuth:
        return cls(username, secrets.token_hex(32), secrets.token_hex(32))

    def values(self) -> dict[str, str]:
        """The Secret's keys and values."""
        return {"username": self.username, "password": self.password,
                "flask-secret-key": self.flask_secret_key}

    def client_env(self) -> dict[str, str]:
        """What a client on the host needs (the bring-up's rollout and alias steps)."""
        return {env: self.values()[key] for env, key in CLIENT_KEYS.items()}


@dataclass(frozen=True)
class MlflowCredentials:
    """A bring-up step: create the credentials file at `path` (random password and CSRF key)
    unless it exists."""

    title: str
    path: Path


def write_auth(path: Path, auth: MlflowAuth) -> None:
    """`key=value` lines, mode 600 (it holds the password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in auth.values().items()))
    path.chmod(0o600)


def read_auth(path: Path) -> MlflowAuth:
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    values = {k.strip(): v.strip() for k, v in values.items()}
    auth = MlflowAuth(values.get("username", ""), values.get("password", ""),
                      values.get("flask-secret-key", ""))
    wrong = [k for k, v in auth.values().items() if not v or PLACEHOLDER in v]
    if wrong or len(auth.password) < MIN_PASSWORD:
        raise AuthFileError(f"{path}: needs username, password ({MIN_PASSWORD}+ characters) and "
                            f"flask-secret-key as key=value lines, no placeholders "
                            f"({', '.join(wrong) or 'password too short'})")
    return auth


def _server_namespaces(objects: list[dict]) -> set[str]:
    return {o["metadata"].get("namespace", "default") for o in objects
            for _, spec in pod_specs(o) for c in spec.get("containers") or [] if _runs_server(c)}


def secret_objects(objects: list[dict], auth: MlflowAuth) -> list[dict]:
    """The Secret in every namespace with an MLflow client or the server (the CSRF key only
    where the server runs): `civicsense` and the pipeline's `kubeflow`."""
    servers = _server_namespaces(objects)
    clients = {p.namespace for p in pods(objects) if TRACKING_URI in p.env} | servers
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": AUTH_SECRET, "namespace": namespace,
                          "labels": {"app.kubernetes.io/part-of": "civicsense"}},
             "stringData": {k: v for k, v in auth.values().items()
                            if namespace in servers or k in CLIENT_KEYS.values()}}
            for namespace in sorted(clients)]


def _command(container: dict) -> list[str]:
    return [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]


def _runs_server(container: dict) -> bool:
    words = _command(container)
    return any(a == "mlflow" and b == "server" for a, b in zip(words, words[1:], strict=False))


def _from_secret(container: dict, wanted: dict[str, str]) -> list[str]:
    """Each env name in `wanted` not read from AUTH_SECRET's matching key."""
    env = {e.get("name"): e for e in container.get("env") or []}
    return [f"{name} must come from Secret {AUTH_SECRET} key {key}" for name, key in wanted.items()
            if ((env.get(name) or {}).get("valueFrom") or {}).get("secretKeyRef")
            != {"name": AUTH_SECRET, "key": key}]


def _auth_database(container: dict, spec: dict, namespace: str,
                   objects: list[dict]) -> list[str]:
    """The auth app's config file is mounted from a ConfigMap, and its user store lives on a
    PersistentVolumeClaim (the root filesystem is read-only; users must survive a restart)."""
    env = {e.get("name"): e.get("value") for e in container.get("env") or []}
    path, mounts = env.get(CONFIG_ENV), container.get("volumeMounts") or []
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    mount = next((m for m in mounts if path and path.startswith(m["mountPath"].rstrip("/") + "/")),
                 None)
    source = (volumes.get(mount["name"], {}) if mount else {}).get("configMap") or {}
    config = next((o for o in objects if o.get("kind") == "ConfigMap" and o["metadata"].get(
        "namespace") == namespace and o["metadata"]["name"] == source.get("name")), None)
    if not config or path is None:
        return [f"{CONFIG_ENV} must name a file of a mounted ConfigMap"]
    parser = configparser.ConfigParser()
    parser.read_string((config.get("data") or {}).get(Path(path).name, ""))
    database = parser.get("mlflow", "database_uri", fallback="")
    file = re.fullmatch(r"sqlite:///(/.+)", database)
    claims = [m["mountPath"] for m in mounts
              if "persistentVolumeClaim" in volumes.get(m["name"], {})]
    on_claim = file and any(file[1].startswith(c.rstrip("/") + "/") for c in claims)
    if database == "" or (database.startswith("sqlite:") and not on_claim):
        return [f"the auth app's database_uri ({database or 'unset'}) must be on a "
                "PersistentVolumeClaim"]
    return []


def server_problems(objects: list[dict]) -> list[str]:
    """Every container running `mlflow server` runs the basic-auth app with its admin and CSRF
    key from the Secret and its user store on a volume; there must be one."""
    problems, found = [], 0
    for obj in objects:
        for where, spec in pod_specs(obj):
            for index, container in enumerate(spec.get("containers") or []):
                if not _runs_server(container):
                    continue
                found += 1
                words = _command(container)
                at = f"{obj['kind']} {obj['metadata']['name']}: {where}.containers[{index}]"
                if "--app-name=basic-auth" not in words and not any(
                        a == "--app-name" and b == "basic-auth" for a, b in zip(
                            words, words[1:], strict=False)):
                    problems.append(f"{at}: mlflow server without --app-name=basic-auth")
                problems += [f"{at}: {p}" for p in _from_secret(container, SERVER_KEYS)]
                problems += [f"{at}: {p}" for p in _auth_database(
                    container, spec, obj["metadata"].get("namespace", "default"), objects)]
    return problems + ([] if found else ["no container runs `mlflow server`"])


def client_problems(objects: list[dict]) -> list[str]:
    """Every container configured with MLFLOW_TRACKING_URI (env, ConfigMap) reads both
    credentials from the Secret. The pipeline's steps: pipeline_problems."""
    maps = {(o["metadata"].get("namespace", "default"), o["metadata"]["name"]): o.get("data") or {}
            for o in objects if o.get("kind") == "ConfigMap"}
    problems = []
    for obj in objects:
        namespace = obj["metadata"].get("namespace", "default")
        containers = [(where, c) for where, spec in pod_specs(obj)
                      for c in spec.get("containers") or []]
        if obj.get("kind") == "InferenceService":
            model = ((obj.get("spec") or {}).get("predictor") or {}).get("model") or {}
            containers = [("spec.predictor.model", model)]
        for where, container in containers:
            configured = configured_env([container], namespace, maps)
            if TRACKING_URI in configured and not _runs_server(container):
                problems += [f"{obj['kind']} {obj['metadata']['name']}: {where}: {p}"
                             for p in _from_secret(container, CLIENT_KEYS)]
    return problems


def pipeline_problems(path: Path) -> list[str]:
    """Every executor of a compiled pipeline that maps MLFLOW_TRACKING_URI from a ConfigMap
    also maps both credentials from the Secret (kfp-kubernetes' use_secret_as_env)."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    platform = next((d["platforms"] for d in docs if "platforms" in d), {})
    executors = ((platform.get("kubernetes") or {}).get("deploymentSpec") or {}).get(
        "executors") or {}
    problems = []
    for name, spec in sorted(executors.items()):
        maps = {m["envVar"] for c in spec.get("configMapAsEnv") or [] for m in c.get("keyToEnv")
                or []}
        if TRACKING_URI not in maps:
            continue
        given = {(s.get("secretName"), m.get("secretKey"), m.get("envVar"))
                 for s in spec.get("secretAsEnv") or [] for m in s.get("keyToEnv") or []}
        problems += [f"{path.name}: {name}: {env} not from Secret {AUTH_SECRET} key {key}"
                     for env, key in CLIENT_KEYS.items() if (AUTH_SECRET, key, env) not in given]
    return problems


def package_problems(lock: Path) -> list[str]:
    """The lock the MLflow server's image installs pins the auth app's package."""
    pinned = re.search(rf"^{AUTH_PACKAGE}==", lock.read_text(), re.IGNORECASE | re.MULTILINE)
    return [] if pinned else [f"{lock.name}: no {AUTH_PACKAGE} pin: `mlflow server --app-name "
                              "basic-auth` fails to import flask_wtf (mlflow[auth])"]


def auth_problems(objects: list[dict]) -> list[str]:
    """The server and the client pods of a rendered overlay."""
    return [*server_problems(objects), *client_problems(objects)]
