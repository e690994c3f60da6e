"""`make check-manifests`: render every overlay and validate every object it holds, the documented
examples, every object the rollout produces from each overlay's InferenceService (both canary
forms: canary, promote, rollback), the compiled pipelines and the recurring runs. InferenceServices
also pass KServe's admission webhook (civicsense.rollout.admission), and every predictor Service
name the bring-up and the docs use must be one KServe creates (civicsense.rollout.kserve_names).
Images: the committed pipelines run the default component image; compiled with the image given
(the tag `make images` built), every executor runs it; in each overlay the monitor's triggered
runs use the image the monitor itself runs; and rendered with images by digest, every project
image is that digest (civicsense.deploy.digests). Security: each namespace denies all traffic
by default and every call a workload makes is allowed (civicsense.deploy.netpol); MLflow runs
its basic-auth app and every client gets the credentials from the Secret
(civicsense.deploy.mlflow_auth)."""

from __future__ import annotations

import copy
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from civicsense.deploy.bringup import plans_text
from civicsense.deploy.digests import digest_problems, pinned_refs
from civicsense.deploy.kfp_specs import KfpSpecError, check_recurring_run, parse_pipeline
from civicsense.deploy.mlflow_auth import (
    MlflowAuth,
    auth_problems,
    package_problems,
    pipeline_problems,
)
from civicsense.deploy.netpol import network_problems
from civicsense.deploy.policy import workload_problems
from civicsense.deploy.render import MANIFESTS, overlay_names, render
from civicsense.deploy.validate import InvalidObject, object_name, validate_object
from civicsense.orchestration.compiled import (
    LABEL_EXPORT,
    LABEL_IMPORT,
    TRAINING,
    PipelinePackageError,
    image_problems,
)
from civicsense.rollout.admission import admission_problems
from civicsense.rollout.kserve_names import predictor_services
from civicsense.rollout.patches import MODE_ANNOTATION, MODE_VALUES
from civicsense.rollout.verbs import patched_inference_service
from civicsense.settings import DEFAULT_COMPONENT_IMAGE, PROJECT_ROOT

PIPELINES = PROJECT_ROOT / "pipelines"
COMPILED_PIPELINE = PIPELINES / TRAINING
RECURRING_RUN = MANIFESTS / "kfp" / "recurring-run.json"
LABEL_EXPORT_RUN = MANIFESTS / "kfp" / "label-export-recurring-run.json"
# The monitor's settings, its CronJob and container, and the key its triggered runs' image is in.
MONITOR_CONFIG, MONITOR_JOB, MONITOR_CONTAINER = ("civicsense-monitoring", "civicsense-monitor",
                                                  "monitor")
MONITOR_IMAGE_KEY = "CIVICSENSE_COMPONENT_IMAGE"
EXAMPLES = MANIFESTS / "examples"
# check-manifests renders with this stand-in for the Secret's token (32+ URL-safe characters).
CHECK_TOKEN = "check-manifests-stand-in-token-000000000000"
# … and these for MLflow's credentials (the Secrets are rendered and validated too).
CHECK_MLFLOW_AUTH = MlflowAuth("civicsense", "check-manifests-stand-in-password",
                               "check-manifests-stand-in-secret-key")
MODES = ("standard", "serverless")
ACTIONS = ("canary", "promote", "rollback")
# The docs that name the predictor's Service (port-forward lines, the extension's endpoint).
SERVICE_DOCS = tuple(PROJECT_ROOT / p for p in (
    "docs/cluster.md", "kserve/README.md", "extension/README.md", "README.md",
    "manifests/examples/canary/standard-canary.yaml",
    "manifests/examples/canary/serverless-canary.yaml"))


@dataclass
class Report:
    """Each object checked (where it came from, its name, the schema it passed) and each
    problem found, one line each."""

    checked: list[tuple[str, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_object(obj: dict, source: str, crd_cache: Path, report: Report,
                 policy: bool = True, old: dict | None = None) -> None:
    """Schema, then KServe's admission (an InferenceService; an update of `old` if given), then
    (for workloads) the project's hardening rules."""
    try:
        schema = validate_object(obj, crd_cache)
    except InvalidObject as error:
        report.problems += [f"{source}: {error.name}: {p}" for p in error.problems]
        return
    broken = []
    if obj.get("kind") == "InferenceService":
        broken = [f"KServe webhook: {p}" for p in admission_problems(obj, old)]
        schema += " + KServe webhooks"
    broken += workload_problems(obj) if policy else []
    report.problems += [f"{source}: {object_name(obj)}: {p}" for p in broken]
    report.checked.append((source, object_name(obj), schema))


def deployed_in(isvc: dict, mode: str) -> dict:
    """The object as running in `mode`: its annotation, and the status KServe records."""
    obj = copy.deepcopy(isvc)
    obj.setdefault("metadata", {}).setdefault("annotations", {})[MODE_ANNOTATION] = (
        MODE_VALUES[mode])
    obj["status"] = {"deploymentMode": MODE_VALUES[mode]}
    return obj


def rollout_objects(isvc: dict) -> dict[str, dict]:
    """'<mode> <action>' → the InferenceService after that rollout step."""
    return {f"{mode} {action}": patched_inference_service(isvc, action, mode)
            for mode in MODES for action in ACTIONS}


def services_used(texts: dict[str, str], isvc_name: str) -> dict[str, set[str]]:
    """Predictor Service name → where it is used (`<isvc>[-…]-predictor` words in each text)."""
    pattern = re.compile(rf"\b{re.escape(isvc_name)}(?:-[a-z0-9]+)*-predictor\b")
    found: dict[str, set[str]] = {}
    for where, text in texts.items():
        for name in pattern.findall(text):
            found.setdefault(name, set()).add(where)
    return found


def check_service_names(isvc: dict, report: Report, docs: tuple[Path, ...] = SERVICE_DOCS,
                        bringup: str | None = None) -> None:
    """The bring-up's predictor Service must be the main one KServe creates for `isvc` in
    Standard mode at every rollout step (its port-forward outlives them); a doc may name any
    predictor Service KServe creates at some step."""
    steps = [isvc, *(rollout_objects(isvc)[f"standard {a}"] for a in ACTIONS)]
    always = set.intersection(*({predictor_services(o)["main"]} for o in steps))
    ever = {name for o in steps for name in predictor_services(o).values()}
    texts = {(p.relative_to(PROJECT_ROOT).as_posix() if p.is_relative_to(PROJECT_ROOT) else str(p)):
             p.read_text() for p in docs if p.is_file()}
    name_of = isvc["metadata"]["name"]
    plans = bringup if bringup is not None else plans_text()
    for name, where in sorted(services_used({"the bring-up": plans}, name_of).items()):
        if name not in always:
            report.problems.append(f"{', '.join(sorted(where))}: Service {name} is not the main "
                                   f"predictor's at every rollout step (KServe: {sorted(always)})")
    for name, where in sorted(services_used(texts, name_of).items()):
        if name not in ever:
            report.problems.append(f"{', '.join(sorted(where))}: KServe creates no Service "
                                   f"{name} (it creates {sorted(ever)})")
    report.checked.append(("the bring-up and the docs", "predictor Service names",
                           "KServe v0.20.0's PredictorServiceName"))


def check_rendered(overlay: str, objects: list[dict], crd_cache: Path, report: Report) -> None:
    names = [object_name(o) for o in objects]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        report.problems.append(f"overlay {overlay}: {duplicate} twice")
    for obj in objects:
        check_object(obj, f"overlay {overlay}", crd_cache, report)
        if obj.get("kind") == "InferenceService":
            for step, patched in rollout_objects(obj).items():
                # The patched objects pass the same schema and the webhook, as an update of the
                # object deployed in that mode; the rollout decides their contents.
                check_object(patched, f"overlay {overlay} rollout {step}", crd_cache, report,
                             policy=False, old=deployed_in(obj, step.split()[0]))
    check_monitor_image(overlay, objects, report)
    check_security(overlay, objects, report)


def check_security(overlay: str, objects: list[dict], report: Report) -> None:
    """Default-deny and the allows each call needs (netpol); MLflow's auth (mlflow_auth)."""
    for name, problems in (("NetworkPolicies", network_problems(objects)),
                           ("MLflow authentication", auth_problems(objects))):
        report.problems += [f"overlay {overlay}: {p}" for p in problems]
        if not problems:
            report.checked.append((f"overlay {overlay}", name, "default-deny + every call "
                                   "allowed" if name == "NetworkPolicies" else "basic-auth app, "
                                   "every client's credentials from the Secret"))


def check_digests(overlay: str, report: Report, component_image: str | None = None,
                  serving_image: str | None = None, unpinned: list[dict] | None = None) -> None:
    """Rendered with the project's images by digest (those given, if both are; else
    stand-ins), every container and triggered run uses exactly those references, each the
    one it ran in `unpinned` (the overlay rendered otherwise)."""
    refs = pinned_refs(component_image, serving_image)
    objects = render(overlay, refs["civicsense-components"], refs["civicsense-serving"])
    problems = digest_problems(objects, refs, unpinned)
    report.problems += [f"overlay {overlay} by digest: {p}" for p in problems]
    if not problems:
        report.checked.append((f"overlay {overlay}", "images by digest",
                               f"every project image is {', '.join(sorted(refs.values()))}"))


def check_monitor_image(overlay: str, objects: list[dict], report: Report) -> None:
    """The drift trigger submits its runs with the ConfigMap's CIVICSENSE_COMPONENT_IMAGE: it
    must be the image the monitor CronJob runs (the overlays' `replacements` copy it)."""
    def named(kind: str, name: str) -> list[dict]:
        return [o for o in objects if o.get("kind") == kind
                and (o.get("metadata") or {}).get("name") == name]

    where = f"overlay {overlay}: ConfigMap {MONITOR_CONFIG}"
    configs, jobs = named("ConfigMap", MONITOR_CONFIG), named("CronJob", MONITOR_JOB)
    if len(configs) != 1 or len(jobs) != 1:
        report.problems.append(f"overlay {overlay}: expected one ConfigMap {MONITOR_CONFIG} and "
                               f"one CronJob {MONITOR_JOB}, found {len(configs)} and {len(jobs)}")
        return
    pod = ((((jobs[0].get("spec") or {}).get("jobTemplate") or {}).get("spec") or {})
           .get("template") or {}).get("spec") or {}
    images = [c.get("image") for c in pod.get("containers") or []
              if c.get("name") == MONITOR_CONTAINER]
    found = (configs[0].get("data") or {}).get(MONITOR_IMAGE_KEY)
    if len(images) != 1 or not images[0]:
        report.problems.append(f"overlay {overlay}: CronJob {MONITOR_JOB} has no container "
                               f"{MONITOR_CONTAINER} with an image")
    elif found != images[0]:
        report.problems.append(f"{where}: {MONITOR_IMAGE_KEY} is {found or 'unset'}, not the "
                               f"image CronJob {MONITOR_JOB} runs ({images[0]}): the retraining "
                               "runs it triggers would run another image")
    else:
        report.checked.append((f"overlay {overlay}", f"{MONITOR_CONFIG} {MONITOR_IMAGE_KEY}",
                               f"= CronJob {MONITOR_JOB}'s image, {images[0]}"))


def check_examples(crd_cache: Path, report: Report, examples: Path = EXAMPLES) -> None:
    for path in sorted(examples.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                check_object(doc, str(path.relative_to(PROJECT_ROOT)), crd_cache, report,
                             policy=False)


def kfp_documents(directory: Path = PIPELINES) -> tuple[tuple[Path, Path | None], ...]:
    """The three compiled pipelines in `directory`, each with the recurring run that schedules
    it (the label import has none)."""
    return ((directory / TRAINING, RECURRING_RUN), (directory / LABEL_EXPORT, LABEL_EXPORT_RUN),
            (directory / LABEL_IMPORT, None))


# The labeling pipelines (issue 14) and the recurring run of the export, checked the same way.
LABELING_KFP = kfp_documents()[1:]


def shown(path: Path) -> str:
    """A path as the report shows it: relative to the project when inside it."""
    path = path.absolute()
    return path.relative_to(PROJECT_ROOT).as_posix() if path.is_relative_to(PROJECT_ROOT) else (
        str(path))


def check_kfp(report: Report, pipeline: Path = COMPILED_PIPELINE,
              recurring_run: Path | None = RECURRING_RUN, image: str | None = None,
              label: str | None = None) -> None:
    """The pipeline (strict protobuf; with `image`, every executor runs it) and the recurring
    run against it. `label` names the pipeline in the report (else its path)."""
    where = label or shown(pipeline)
    try:
        spec, _ = parse_pipeline(pipeline)
        wrong = image_problems(pipeline, image) if image is not None else []
        report.problems += wrong
        report.problems += pipeline_problems(pipeline)  # MLflow's credentials in every step
        if not wrong:
            report.checked.append((where, spec.pipeline_info.name,
                                   "kfp PipelineSpec + PlatformSpec (protobuf)"
                                   + (f", every executor {image}" if image else "")))
        if recurring_run is None:
            return
        check_recurring_run(json.loads(recurring_run.read_text()), spec)
        report.checked.append((shown(recurring_run), "V2beta1RecurringRun",
                               f"kfp API model (strict) + the inputs of {where}"))
    except (KfpSpecError, PipelinePackageError, json.JSONDecodeError, OSError) as error:
        report.problems.append(str(error))


def compile_pipelines(directory: Path, image: str) -> list[Path]:
    """`civicsense pipeline compile --image IMAGE --output-dir DIRECTORY`: the training and
    labeling pipelines compiled from this tree with `image` in every executor."""
    from civicsense.orchestration.runner import compile_labeling, compile_pipeline

    directory.mkdir(parents=True, exist_ok=True)
    return [compile_pipeline(directory / TRAINING, image), *compile_labeling(directory, image)]


def check_pipelines(report: Report, directory: Path, image: str,
                    label: str | None = None) -> None:
    """The three pipelines in `directory`, each executor running `image`; `label` (with the
    file name) names them in the report, else their paths."""
    for pipeline, recurring_run in kfp_documents(directory):
        check_kfp(report, pipeline, recurring_run, image,
                  f"{pipeline.name} {label}" if label else None)


def check_manifests(crd_cache: Path, overlays: list[str] | None = None,
                    component_image: str | None = None,
                    serving_image: str | None = None) -> Report:
    """Everything `make check-manifests` checks, in one report."""
    report = Report()
    for overlay in overlays or overlay_names():
        objects = render(overlay, component_image, serving_image, sink_token=CHECK_TOKEN,
                         mlflow_auth=CHECK_MLFLOW_AUTH)
        check_rendered(overlay, objects, crd_cache, report)
        check_digests(overlay, report, component_image, serving_image, objects)
        if overlay == "local":   # what the bring-up applies
            isvc, = [o for o in objects if o.get("kind") == "InferenceService"]
            check_service_names(isvc, report)
    check_examples(crd_cache, report)
    report.problems += package_problems(PROJECT_ROOT / "requirements-pipeline.lock")
    check_pipelines(report, PIPELINES, DEFAULT_COMPONENT_IMAGE)   # the committed YAMLs
    if component_image is not None:   # what the bring-up uploads, compiled with that image
        with tempfile.TemporaryDirectory(prefix="civicsense-check-") as scratch:
            try:
                compile_pipelines(Path(scratch), component_image)
            except ValueError as error:   # not an image reference
                report.problems.append(f"compiling the pipelines: {error}")
            else:
                check_pipelines(report, Path(scratch), component_image,
                                f"compiled with {component_image}")
    return report
