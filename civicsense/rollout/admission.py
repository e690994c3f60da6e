"""KServe v0.20.0's admission webhooks for an InferenceService, ported for the fields this project
uses: the mutating defaulter's deploymentMode normalisation, then the validating webhook's
refusals, with the webhook's own messages (schema validation catches none of these).

Source: github.com/kserve/kserve at tag v0.20.0, every path below under pkg/. "validation.go" is
apis/serving/v1beta1/inference_service_validation.go, "component.go" and "predictor.go" are in
apis/serving/v1beta1/. The webhook stops at its first refusal; `admission_problems` lists every
one it finds, in the webhook's order. Not ported (this project sets none of them): transformer,
explainer, workerSpec, storageUris, confidential serving, the autoscaler-class annotation, HPA /
KEDA metrics and custom predictor containers beyond counting them.
"""

from __future__ import annotations

import copy
import re

MODE_ANNOTATION = "serving.kserve.io/deploymentMode"   # constants.go:115
# constants.go:561-567 (DeploymentModeType): the names, the deprecated ones, the default.
KNATIVE, STANDARD, MODELMESH = "Knative", "Standard", "ModelMesh"
LEGACY = {"Serverless": KNATIVE, "RawDeployment": STANDARD}   # constants.go:562,564
# validation.go:46,55 (IsvcNameFmt, IsvcRegexp)
ISVC_NAME_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
# predictor.go:40-61: the one-of implementations of a PredictorSpec (JSON names), in
# GetImplementations' order (predictor.go:168-181).
IMPLEMENTATIONS = ("xgboost", "pytorch", "triton", "sklearn", "tensorflow", "onnx", "pmml",
                   "lightgbm", "paddle", "huggingface", "model")
# component.go:441-452 (ExactlyOneErrorFor) names PredictorSpec's Go fields but the last.
PREDICTOR_FIELDS = ("Name, SKLearn, XGBoost, Tensorflow, PyTorch, Triton, ONNX, HuggingFace, "
                    "PMML, LightGBM, Paddle, Model, StorageUris, StorageContainerName, "
                    "WorkerSpec, PodSpec")
BLOCKED_ENV = ("PYTHONPATH",)   # validation/env_policy.go:25-27
KPA_METRICS = ("concurrency", "rps")   # constants.go:290-294
CANARY_FIXED_REPLICAS = ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling")


def parse_deployment_mode(mode: str | None) -> str:
    """constants.go:571-587, ParseDeploymentMode: empty → the default (Standard), the
    deprecated names → the current ones."""
    if not mode:
        return STANDARD
    return LEGACY.get(mode, mode)


def defaulted(isvc: dict) -> dict:
    """The object after the mutating webhook (`inferenceservice.kserve-webhook-server.defaulter`,
    CREATE and UPDATE: config/webhook/manifests.yaml:14-24), as far as validation depends on it:
    inference_service_defaults.go:164-176 rewrites a deprecated deploymentMode annotation."""
    obj = copy.deepcopy(isvc)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if annotations.get(MODE_ANNOTATION) in LEGACY:
        annotations[MODE_ANNOTATION] = LEGACY[annotations[MODE_ANNOTATION]]
    return obj


def _implementations(predictor: dict) -> int:
    """predictor.go:168-196, GetImplementations: the framework specs and `model`, plus one for
    custom containers."""
    frameworks = sum(1 for key in IMPLEMENTATIONS if predictor.get(key))
    return frameworks + bool(predictor.get("containers"))


def _implementation(predictor: dict) -> dict:
    return next((predictor[k] for k in IMPLEMENTATIONS if predictor.get(k)), {})


def _extension_problems(spec: dict, mode: str) -> list[str]:
    """component.go:341-347 (ComponentExtensionSpec.Validate) and validation.go:446-466
    (validateAutoScalingCompExtension, Knative's KPA branch: :645-668)."""
    problems = []
    if (spec.get("containerConcurrency") or 0) < 0:                        # component.go:390-398
        problems.append("parallelism cannot be less than 0")                # component.go:39
    low = spec.get("minReplicas", 1)   # component.go:374-388 (nil: DefaultMinReplicas,
    high = spec.get("maxReplicas", 0)  # constants.go:223)
    if low < 0:
        problems.append("'MinReplicas' cannot be less than 0")              # component.go:37
    if high < 0:
        problems.append("'MaxReplicas' cannot be less than 0")              # component.go:38
    if high != 0 and low > high:
        problems.append("'MinReplicas' cannot be greater than MaxReplicas")  # component.go:36
    logger = spec.get("logger")
    if logger is not None and logger.get("mode") not in ("all", "request", "response"):
        problems.append("invalid logger type")          # component.go:400-404, :42 (mode "")
    if mode != STANDARD:                                  # validation.go:459-463 (KPA)
        if spec.get("deploymentStrategy") is not None:    # validation.go:646-648
            problems.append("customizing deploymentStrategy is only supported for raw "
                            "deployment mode")
        metric = spec.get("scaleMetric") or "concurrency"  # validation.go:649-657
        if metric not in KPA_METRICS:
            problems.append(f"[{metric}] is not a supported metric")   # validation.go:642
    return problems


def _canary_problems(isvc: dict, mode: str) -> list[str]:
    """validation.go:183-266, validateCanarySpecs (spec.canary, Standard mode only)."""
    spec = isvc.get("spec") or {}
    canaries = spec.get("canary") or []
    if not canaries:
        return []
    if mode != STANDARD:                                           # validation.go:188-191
        return ["canary is only supported in Standard deployment mode"]
    stable = spec.get("predictor") or {}
    problems = []
    if not _implementation(stable).get("storageUri") and not stable.get("model"):   # :193-195
        problems.append("canary requires a stable predictor with a model (multi-model serving "
                        "is not supported with canary)")
    names, total = set(), 0
    for index, canary in enumerate(canaries):
        predictor = canary.get("predictor") or {}
        name, percent = predictor.get("name") or "", canary.get("trafficPercent", 0)
        if not name:                                                         # :203-205
            problems.append(f"canary[{index}] predictor.name is required")
            continue
        if name in names:                                                    # :207-210
            problems.append(f'canary predictor.name "{name}" is duplicated')
        names.add(name)
        if name == (stable.get("name") or ""):                               # :212-214
            problems.append(f'canary predictor.name "{name}" conflicts with stable predictor '
                            "name")
        if not 0 <= percent <= 100:                                          # :216-218
            problems.append(f'canary "{name}" trafficPercent must be between 0 and 100, got '
                            f"{percent}")
        total += percent
        if _implementations(predictor) != 1:                                 # :221-223
            problems.append(f'canary "{name}" predictor: exactly one of [{PREDICTOR_FIELDS}] '
                            "must be specified in PredictorSpec")
        problems += [f'canary "{name}" predictor: {p}'                       # :224-229
                     for p in _extension_problems(predictor, STANDARD)]
        if predictor.get("workerSpec") is not None:                          # :231-233
            problems.append(f'canary "{name}" must not set workerSpec (multi-node is not yet '
                            "supported for canary)")
        for field in CANARY_FIXED_REPLICAS:                                  # :235-247
            value = predictor.get(field)
            given = (value or 0) > 0 if field == "maxReplicas" else value is not None
            if given:
                problems.append(f'canary "{name}" must not set {field} (canary uses fixed '
                                "replicas)")
        low = predictor.get("minReplicas")                                   # :249-258
        if low is not None and low > stable.get("minReplicas", 1):
            problems.append(f'canary "{name}" minReplicas ({low}) must not exceed stable '
                            f"predictor minReplicas ({stable.get('minReplicas', 1)})")
    if total > 100:                                                          # :261-263
        problems.append(f"sum of canary trafficPercent values ({total}) must be <= 100")
    return problems


def _create_problems(isvc: dict) -> list[str]:
    """validation.go:119-181, validateInferenceService, for the fields this project uses."""
    meta = isvc.get("metadata") or {}
    name = meta.get("name") or ""
    mode = parse_deployment_mode((meta.get("annotations") or {}).get(MODE_ANNOTATION))
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    problems = []
    if not re.fullmatch(ISVC_NAME_FMT, name):                    # :123-125, :469-474
        problems.append(f'the InferenceService "{name}" is invalid: a InferenceService name must '
                        "consist of lower case alphanumeric characters or '-', and must start "
                        'with alphabetical character. (e.g. "my-name" or "abc-123", regex used '
                        f"for validation is '{ISVC_NAME_FMT}')")   # component.go:44
    container = _implementation(predictor)                         # :131, :302-315
    for env in container.get("env") or []:
        if env.get("name") in BLOCKED_ENV:                         # env_policy.go:35-41
            problems.append(f'the InferenceService "{name}" is invalid: setting {env["name"]} '
                            f'in container "{container.get("name", "")}" is not allowed for '
                            "security reasons")
    # validation.go:143, :268-300 (validatePredictor): no framework spec nor `model` of the
    # main predictor may carry `name` (the CRD requires it in spec.canary[].predictor.model).
    if any((predictor.get(key) or {}).get("name") for key in IMPLEMENTATIONS):
        problems.append("the 'name' field is not allowed in standard predictor")
    if _implementations(predictor) != 1:                           # :157-165, component.go:415
        problems.append(f"exactly one of [{PREDICTOR_FIELDS}] must be specified in "
                        "PredictorSpec")
    problems += _extension_problems(predictor, mode)               # :166-172
    return problems + _canary_problems(isvc, mode)                 # :176-178


def _update_problems(new: dict, old: dict) -> list[str]:
    """validation.go:83-106, ValidateUpdate: deploymentMode and predictor.name changes."""
    problems = []
    recorded = (old.get("status") or {}).get("deploymentMode")
    annotated = ((new.get("metadata") or {}).get("annotations") or {}).get(MODE_ANNOTATION)
    if recorded and annotated is not None and annotated != parse_deployment_mode(recorded):
        problems.append(f"update rejected: deploymentMode cannot be changed from "   # :691-701
                        f"'{parse_deployment_mode(recorded)}' to '{annotated}'")
    old_p = (old.get("spec") or {}).get("predictor") or {}
    new_p = (new.get("spec") or {}).get("predictor") or {}
    if (old_p.get("name") or "") != (new_p.get("name") or "") and (       # :703-713
            _implementation(old_p).get("storageUri") == _implementation(new_p).get("storageUri")):
        problems.append("predictor.name change requires a model change (e.g. storageUri)")
    return problems


def admission_problems(isvc: dict, old: dict | None = None) -> list[str]:
    """What KServe v0.20.0's webhooks would refuse in this InferenceService (empty: admitted):
    a create when `old` is None, else an update of `old` (its `status.deploymentMode` is what
    the controller recorded). Each line is the webhook's own message."""
    new = defaulted(isvc)
    problems = _update_problems(new, defaulted(old)) if old is not None else []
    return problems + _create_problems(new)
