"""The InferenceService as the rollout sees it: get and merge-patch, through kubectl by default
(an injectable `Cluster`), with a timeout that means "unknown", never "failed"."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Protocol

from civicsense.rollout.patches import RolloutError

RESOURCE = "inferenceservice.serving.kserve.io"


class ClusterTimeout(RolloutError):
    """kubectl did not answer in time: the API server may or may not have applied the request."""


class Cluster(Protocol):
    def get(self, name: str, namespace: str) -> dict: ...

    def patch(self, name: str, namespace: str, patch: dict) -> dict: ...


def kubectl_command(name: str, namespace: str, patch: dict, context: str | None = None) -> str:
    """The same patch as one kubectl command line, for operators and for --dry-run."""
    ctx = f" --context {context}" if context else ""
    return (f"kubectl{ctx} -n {namespace} patch {RESOURCE} {name} --type merge "
            f"-p '{json.dumps(patch, separators=(',', ':'))}'")


@dataclass
class KubectlCluster:
    """The InferenceService through kubectl (whatever kubeconfig and context it uses)."""

    context: str | None = None
    kubectl: str = "kubectl"
    timeout: float = 60.0

    def _run(self, *args: str) -> dict:
        command = [self.kubectl, *(["--context", self.context] if self.context else []), *args]
        shown = " ".join(command[:6])
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise ClusterTimeout(f"`{shown} …` did not answer within {self.timeout:g} s") from None
        except OSError as error:
            raise RolloutError(f"could not run {shown} …: {error}") from None
        if done.returncode != 0:
            raise RolloutError(f"kubectl failed ({done.returncode}): {done.stderr.strip()}")
        try:
            return json.loads(done.stdout or "{}")
        except json.JSONDecodeError:
            raise RolloutError(f"kubectl answered something that is not JSON: "
                               f"{done.stdout[:120]!r}") from None

    def get(self, name: str, namespace: str) -> dict:
        return self._run("-n", namespace, "get", RESOURCE, name, "-o", "json")

    def patch(self, name: str, namespace: str, patch: dict) -> dict:
        return self._run("-n", namespace, "patch", RESOURCE, name, "--type", "merge", "-p",
                         json.dumps(patch), "-o", "json")
