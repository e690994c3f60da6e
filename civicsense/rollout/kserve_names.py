"""The names of the Kubernetes Services KServe v0.20.0 creates for an InferenceService, derived
the way its controller derives them, so the bring-up and the docs use names that will exist.

Source: github.com/kserve/kserve at tag v0.20.0.
- pkg/constants/constants.go:799-804 `PredictorServiceName(name, predictorName...)`:
  `{isvc}-{predictor.name}-predictor` when the predictor has a name, else `{isvc}-predictor`.
- pkg/apis/serving/v1beta1/predictor.go:33-38: `spec.predictor.name` "optionally identifies this
  predictor variant. When set, the Deployment and Service are named {isvc}-{name}-predictor".
- pkg/controller/v1beta1/inferenceservice/components/predictor.go:159,172: the main predictor's
  object meta (Deployment and Service, Standard mode; the Knative Service, Knative mode) takes
  that name; :914,921 the same for each `spec.canary[].predictor.name` (Standard mode only).
- pkg/controller/v1beta1/inferenceservice/reconcilers/service/service_reconciler.go:104-182: in
  Standard mode the Service listens on port 80 (`CommonDefaultHttpPort`, constants.go:397) and
  selects only its own Deployment's pods (`app: isvc.<service name>`, constants.go:755-757).
"""

from __future__ import annotations

PREDICTOR = "predictor"   # constants.Predictor (the component's name)
SERVICE_PORT = 80         # constants.CommonDefaultHttpPort, constants.go:397


def predictor_service_name(isvc_name: str, predictor_name: str | None = None) -> str:
    """constants.go:799-804, PredictorServiceName."""
    if predictor_name:
        return f"{isvc_name}-{predictor_name}-{PREDICTOR}"
    return f"{isvc_name}-{PREDICTOR}"


def main_service(isvc: dict) -> str:
    """The Service (Standard mode) or Knative Service (Knative mode) of the main predictor: what
    the ingress sends the InferenceService's traffic to."""
    spec = isvc.get("spec") or {}
    return predictor_service_name(isvc["metadata"]["name"],
                                  (spec.get("predictor") or {}).get("name"))


def canary_services(isvc: dict) -> list[str]:
    """One Service per `spec.canary[]` entry (Standard mode), in order."""
    spec = isvc.get("spec") or {}
    return [predictor_service_name(isvc["metadata"]["name"], (c.get("predictor") or {}).get("name"))
            for c in spec.get("canary") or []]


def predictor_services(isvc: dict) -> dict[str, str]:
    """Role → Service name of every predictor Service KServe makes for this object:
    `main`, then `canary <name>` for each Standard-mode canary."""
    names = {"main": main_service(isvc)}
    for entry, service in zip((isvc.get("spec") or {}).get("canary") or [],
                              canary_services(isvc), strict=True):
        names[f"canary {(entry.get('predictor') or {}).get('name')}"] = service
    return names
