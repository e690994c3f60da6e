"""`make check-manifests`: render every overlay and validate every object it holds, the documented
examples, every object the rollout produces from each overlay's InferenceService (both canary
forms: canary, promote, rollback), the compiled pipeline and the recurring run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from civicsense.deploy.kfp_specs import KfpSpecError, check_recurring_run, parse_pipeline
from civicsense.deploy.policy import workload_problems
from civicsense.deploy.render import MANIFESTS, overlay_names, render
from civicsense.deploy.validate import InvalidObject, object_name, validate_object
from civicsense.rollout.verbs import patched_inference_service
from civicsense.settings import PROJECT_ROOT

COMPILED_PIPELINE = PROJECT_ROOT / "pipelines" / "civicsense_training.yaml"
RECURRING_RUN = MANIFESTS / "kfp" / "recurring-run.json"
# The labeling pipelines (issue 14) and the recurring run of the export, checked the same way.
LABELING_KFP = ((PROJECT_ROOT / "pipelines" / "civicsense_label_export.yaml",
                 MANIFESTS / "kfp" / "label-export-recurring-run.json"),
                (PROJECT_ROOT / "pipelines" / "civicsense_label_import.yaml", None))
EXAMPLES = MANIFESTS / "examples"
# check-manifests renders with this stand-in for the Secret's token (32+ URL-safe characters).
CHECK_TOKEN = "check-manifests-stand-in-token-000000000000"
MODES = ("standard", "serverless")
ACTIONS = ("canary", "promote", "rollback")




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
                 policy: bool = True) -> None:
    """Schema, then (for workloads) the project's hardening rules."""
    try:
        schema = validate_object(obj, crd_cache)
    except InvalidObject as error:
        report.problems += [f"{source}: {error.name}: {p}" for p in error.problems]
        return
    broken = workload_problems(obj) if policy else []
    report.problems += [f"{source}: {object_name(obj)}: {p}" for p in broken]
    report.checked.append((source, object_name(obj), schema))


def rollout_objects(isvc: dict) -> dict[str, dict]:
    """'<mode> <action>' → the InferenceService after that rollout step."""
    return {f"{mode} {action}": patched_inference_service(isvc, action, mode)
            for mode in MODES for action in ACTIONS}


def check_rendered(overlay: str, objects: list[dict], crd_cache: Path, report: Report) -> None:
    names = [object_name(o) for o in objects]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        report.problems.append(f"overlay {overlay}: {duplicate} twice")
    for obj in objects:
        check_object(obj, f"overlay {overlay}", crd_cache, report)
        if obj.get("kind") == "InferenceService":
            for step, patched in rollout_objects(obj).items():
                # The patched objects pass the same schema; the rollout decides their contents.
                check_object(patched, f"overlay {overlay} rollout {step}", crd_cache, report,
                             policy=False)


def check_examples(crd_cache: Path, report: Report, examples: Path = EXAMPLES) -> None:
    for path in sorted(examples.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                check_object(doc, str(path.relative_to(PROJECT_ROOT)), crd_cache, report,
                             policy=False)


def check_kfp(report: Report, pipeline: Path = COMPILED_PIPELINE,
              recurring_run: Path | None = RECURRING_RUN) -> None:
    try:
        spec, _ = parse_pipeline(pipeline)
        report.checked.append((str(pipeline.relative_to(PROJECT_ROOT)), spec.pipeline_info.name,
                               "kfp PipelineSpec + PlatformSpec (protobuf)"))
        if recurring_run is None:
            return
        check_recurring_run(json.loads(recurring_run.read_text()), spec)
        report.checked.append((str(recurring_run.relative_to(PROJECT_ROOT)),
                               "V2beta1RecurringRun", "kfp API model (strict) + pipeline inputs"))
    except (KfpSpecError, json.JSONDecodeError, OSError) as error:
        report.problems.append(str(error))


def check_manifests(crd_cache: Path, overlays: list[str] | None = None,
                    component_image: str | None = None,
                    serving_image: str | None = None) -> Report:
    """Everything `make check-manifests` checks, in one report."""
    report = Report()
    for overlay in overlays or overlay_names():
        objects = render(overlay, component_image, serving_image, sink_token=CHECK_TOKEN)
        check_rendered(overlay, objects, crd_cache, report)
    check_examples(crd_cache, report)
    check_kfp(report)
    for pipeline, recurring_run in LABELING_KFP:
        check_kfp(report, pipeline, recurring_run)
    return report
