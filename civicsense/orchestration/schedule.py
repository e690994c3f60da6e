"""Scheduled retraining on Kubeflow Pipelines: six-field cron validation and the recurring run of
the compiled training pipeline."""

from __future__ import annotations

import re
from pathlib import Path

from civicsense.orchestration.compiled import pipeline_package
from civicsense.orchestration.runner import COMPILED_PIPELINE, compile_pipeline
from civicsense.settings import Settings
from civicsense.training.params import PipelineParams

_CRON_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23),
                ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))
_NAMES = {4: ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
              "dec"), 5: ("sun", "mon", "tue", "wed", "thu", "fri", "sat")}
_PART = re.compile(r"^(\*|\?|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")


def validate_cron(expression: str) -> str:
    """A six-field cron (seconds first), as KFP recurring runs take. ValueError if not."""
    fields = expression.split()
    if len(fields) != 6:
        hint = " (5 fields: prepend the seconds, e.g. '0 ' + yours)" if len(fields) == 5 else ""
        raise ValueError(f"cron {expression!r} has {len(fields)} fields; KFP needs 6, seconds "
                         f"first: 'second minute hour day-of-month month day-of-week'{hint}")
    for index, (field_text, (name, low, high)) in enumerate(
            zip(fields, _CRON_FIELDS, strict=True)):
        for part in field_text.lower().split(","):
            match = _PART.match(part)
            if not match:
                raise ValueError(f"cron {name} field {field_text!r} is not valid")
            if match.group(2) is not None and int(match.group(2)) == 0:
                raise ValueError(f"cron {name} field {field_text!r}: step 0")
            if match.group(1) in {"*", "?"}:
                continue
            for bound in match.group(1).split("-"):
                names = _NAMES.get(index, ())
                value = (names.index(bound) + (1 if index == 4 else 0)) if bound in names else (
                    int(bound) if bound.isdigit() else None)
                if value is None or not low <= value <= high:
                    raise ValueError(f"cron {name} field {field_text!r}: {bound!r} is not in "
                                     f"{low}-{high}")
    return " ".join(fields)


def recurring_run_arguments(settings: Settings, cron: str, job_name: str,
                            experiment_id: str, package: Path | None = None) -> dict:
    """The keyword arguments of kfp.Client.create_recurring_run for scheduled retraining."""
    # A schedule retrains on whatever data is there at run time: no fingerprint fixed now, and
    # no step cache (the same source string would otherwise reuse the old snapshot).
    # With retrain_with_labels, the ingest step adds the confirmed labelled snapshots it finds.
    params = {"data_source": settings.data, "confirmed_labels": settings.retrain_with_labels,
              **vars(PipelineParams())}
    return {"experiment_id": experiment_id, "job_name": job_name,
            "description": f"Scheduled retraining of {settings.model_name} on {settings.data}",
            "cron_expression": validate_cron(cron), "max_concurrency": 1, "no_catchup": True,
            "params": params, "pipeline_package_path": str(package or COMPILED_PIPELINE),
            "enabled": True, "enable_caching": False}


def create_schedule(host: str, settings: Settings, cron: str, job_name: str,
                    experiment: str, namespace: str | None = None, *,
                    fresh: bool = False) -> object:
    """Create a KFP recurring run of the compiled pipeline (the shipped YAML, its executors
    running `settings.component_image`; `fresh`: this tree's pipeline compiled into a
    temporary directory); returns the V2beta1RecurringRun."""
    import kfp

    validate_cron(cron)
    with pipeline_package(settings.component_image,
                          compile_to=compile_pipeline if fresh else None) as package:
        client = kfp.Client(host=host, namespace=namespace)
        experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
        return client.create_recurring_run(
            **recurring_run_arguments(settings, cron, job_name, experiment_id, package))
