"""The stand-in `kubectl` the rollout tests put on PATH (no cluster here): it keeps the
InferenceService in a JSON file, answers `get` and `patch --type merge` as the API server does,
and injects faults on the next spec patch (a timeout after or before applying it, a signal to
its caller, an unreachable registry). Plus the tests of KubectlCluster against it."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from civicsense.rollout.verbs import ClusterTimeout, KubectlCluster, RolloutError

NAME, NAMESPACE = "civicsense-sentiment", "civicsense"

STANDIN = '''
import json, os, shutil, signal, sys, time
from pathlib import Path

state, faults, log = (Path(os.environ[k]) for k in
                      ("STANDIN_STATE", "STANDIN_FAULTS", "STANDIN_LOG"))
args = sys.argv[1:]
with log.open("a") as out:
    out.write(json.dumps(args) + "\\n")

def merge(target, patch):  # RFC 7386, as the API server applies --type merge
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result

def next_fault():
    pending = json.loads(faults.read_text()) if faults.exists() else []
    if not pending:
        return None
    faults.write_text(json.dumps(pending[1:]))
    return pending[0]

if "get" in args:
    print(state.read_text())
    sys.exit(0)
if "patch" not in args:
    print("error: the stand-in only knows get and patch", file=sys.stderr)
    sys.exit(1)
patch = json.loads(args[args.index("-p") + 1])
fault = next_fault() if "spec" in patch else None
if fault and fault["do"] == "hang-before":
    time.sleep(fault["seconds"])
isvc = json.loads(state.read_text())
after = merge(isvc, patch)
if after.get("spec") != isvc.get("spec"):
    after["metadata"]["generation"] = isvc["metadata"].get("generation", 1) + 1
tmp = state.with_suffix(".tmp")
tmp.write_text(json.dumps(after))
os.replace(tmp, state)
if fault and fault["do"] == "hang-after":
    time.sleep(fault["seconds"])
if fault and fault["do"] == "signal":
    os.kill(os.getppid(), getattr(signal, fault["signal"]))
    time.sleep(2)
if fault and fault["do"] == "break-registry":
    db = Path(fault["db"])
    shutil.copyfile(db, fault["backup"])
    with db.open("r+b") as broken:  # in place: open connections see it too
        broken.write(b"not a database, the registry is down" * 4)
print(json.dumps(after))
'''


@dataclass
class StandIn:
    """The stand-in's files: the InferenceService it holds, its pending faults, its call log."""

    folder: Path

    @property
    def kubectl(self) -> Path:
        return self.folder / "kubectl"

    @property
    def env(self) -> dict[str, str]:
        return {"STANDIN_STATE": str(self.folder / "isvc.json"),
                "STANDIN_FAULTS": str(self.folder / "faults.json"),
                "STANDIN_LOG": str(self.folder / "calls.jsonl"),
                "PATH": f"{self.folder}{os.pathsep}{os.environ['PATH']}"}

    def isvc(self) -> dict:
        return json.loads((self.folder / "isvc.json").read_text())

    def set_isvc(self, isvc: dict) -> None:
        (self.folder / "isvc.json").write_text(json.dumps(isvc))

    def fail_next_spec_patch(self, **fault) -> None:
        (self.folder / "faults.json").write_text(json.dumps([fault]))

    def calls(self) -> list[list[str]]:
        path = self.folder / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def patches(self) -> list[dict]:
        return [json.loads(c[c.index("-p") + 1]) for c in self.calls() if "patch" in c]


def make_standin(folder: Path, isvc: dict, monkeypatch: pytest.MonkeyPatch | None = None
                 ) -> StandIn:
    """Write the stand-in kubectl into `folder` holding `isvc` (and, given monkeypatch, put it
    on PATH with its env for this test)."""
    folder.mkdir(parents=True, exist_ok=True)
    standin = StandIn(folder)
    standin.kubectl.write_text(f"#!{sys.executable}\n{STANDIN}")
    standin.kubectl.chmod(standin.kubectl.stat().st_mode | stat.S_IEXEC)
    standin.set_isvc(isvc)
    if monkeypatch is not None:
        for key, value in standin.env.items():
            monkeypatch.setenv(key, value)
    return standin


def base_isvc(mode: str = "Standard") -> dict:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": NAME, "namespace": NAMESPACE,
                         "annotations": {"serving.kserve.io/deploymentMode": mode}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "mlflow"}}}}}


def test_kubectl_cluster_gets_and_patches_the_held_object(tmp_path, monkeypatch):
    standin = make_standin(tmp_path / "k", base_isvc(), monkeypatch)
    cluster = KubectlCluster(context="prod", kubectl=str(standin.kubectl))
    patched = cluster.patch(NAME, NAMESPACE, {"spec": {"canary": [{"trafficPercent": 5}]}})
    assert patched["spec"]["canary"] == [{"trafficPercent": 5}]
    assert cluster.get(NAME, NAMESPACE) == patched == standin.isvc()
    assert patched["metadata"]["generation"] == 2
    patch_call = standin.calls()[0]
    assert patch_call[:8] == ["--context", "prod", "-n", NAMESPACE, "patch",
                              "inferenceservice.serving.kserve.io", NAME, "--type"]
    assert patch_call[8] == "merge"


def test_a_kubectl_timeout_is_unknown_not_failed(tmp_path, monkeypatch):
    standin = make_standin(tmp_path / "k", base_isvc(), monkeypatch)
    standin.fail_next_spec_patch(do="hang-after", seconds=30)
    cluster = KubectlCluster(kubectl=str(standin.kubectl), timeout=1)
    with pytest.raises(ClusterTimeout, match="did not answer within 1 s") as caught:
        cluster.patch(NAME, NAMESPACE, {"spec": {"canary": [{"trafficPercent": 5}]}})
    assert "failed" not in str(caught.value)
    # The server applied it although the client gave up: only reading back tells.
    assert standin.isvc()["spec"]["canary"] == [{"trafficPercent": 5}]


def test_kubectl_errors_are_rollout_errors(tmp_path):
    failing = tmp_path / "kubectl-fails"
    failing.write_text("#!/bin/sh\necho 'error: the server could not find it' >&2\nexit 1\n")
    failing.chmod(failing.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(RolloutError, match="could not find"):
        KubectlCluster(kubectl=str(failing)).get(NAME, NAMESPACE)
    with pytest.raises(RolloutError, match="could not run"):
        KubectlCluster(kubectl=str(tmp_path / "absent")).get(NAME, NAMESPACE)


URI = {"1": "gs://civicsense-mlflow/artifacts/1/models/m-one/artifacts",
       "2": "gs://civicsense-mlflow/artifacts/1/models/m-two/artifacts",
       "3": "gs://civicsense-mlflow/artifacts/1/models/m-three/artifacts"}


def make_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real SQLite registry under a fresh CIVICSENSE_HOME: versions 1-3 on gs://, version 1
    `champion`, version 2 `challenger`. (settings, client)"""
    from mlflow import MlflowClient

    from civicsense.settings import Settings
    from civicsense.training.registry import CHALLENGER, CHAMPION

    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings()
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    client.create_registered_model(NAME)
    for number in ("1", "2", "3"):
        assert client.create_model_version(NAME, URI[number]).version == int(number)
    client.set_registered_model_alias(NAME, CHAMPION, "1")
    client.set_registered_model_alias(NAME, CHALLENGER, "2")
    return settings, client


def serving_isvc(mode: str, version: str = "1") -> dict:
    """The InferenceService as deployed: the predictor on `version`, in `mode` (the annotation
    as KServe's defaulter leaves it: Standard or Knative). No predictor name and no model name,
    as in manifests/base (KServe's webhook refuses a model name in spec.predictor)."""
    isvc = base_isvc("Standard" if mode == "standard" else "Knative")
    predictor = isvc["spec"]["predictor"]
    predictor.update(serviceAccountName="civicsense-serving", minReplicas=1, maxReplicas=4)
    predictor["model"].update(runtime="civicsense-mlflow", storageUri=URI[version], env=[
        {"name": "CIVICSENSE_MODEL_VERSION", "value": version},
        {"name": "CIVICSENSE_MODEL_RUN_ID", "value": "none"}])
    return isvc
