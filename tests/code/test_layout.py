"""The package layout holds: dependencies point one way, the serving side imports no Feast, KFP
or Evidently, nothing happens at import, modules stay small, components wrap one function."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from tests_support import ROOT

PACKAGE = ROOT / "civicsense"
# Which stages each stage may import (besides itself and the settings/storage/constants base).
# The layers, each importing only those to its right: cli → deploy → rollout → serving →
# monitoring → orchestration → training → features → data. The top-level `pipelines` and
# `components` packages (KFP) count as stages too: only orchestration reaches them.
ALLOWED = {
    "data": set(),
    "features": {"data"},
    "training": {"features", "data"},
    # orchestration runs, compiles, submits and schedules the KFP pipelines.
    "orchestration": {"pipelines", "components", "training", "features", "data"},
    # monitoring's drift trigger submits one retraining run through orchestration.
    "monitoring": {"orchestration", "training", "features", "data"},
    # the server writes the payload and feedback logs; never KFP (orchestration), nor the rest
    # of monitoring.
    "serving": {"monitoring.inference_log", "monitoring.feedback_log",
                "monitoring.feedback_intake", "monitoring.sink_auth",
                "monitoring.request_edge", "training", "features", "data"},
    "rollout": {"serving", "monitoring", "orchestration", "training", "features", "data"},
    # labeling reads the payload and feedback logs and writes ingest-shaped snapshots; it never
    # reaches the server (nor the drift monitor or training).
    "labeling": {"monitoring.inference_log", "monitoring.feedback_log", "data"},
    # deploy renders and validates the cluster objects (the rollout's patched ones included),
    # checks the KFP schedule, and runs the serving image locally (container.py).
    "deploy": {"rollout", "serving", "monitoring", "orchestration", "training", "features",
               "data"},
    "cli": {"deploy", "rollout", "serving", "monitoring", "labeling", "orchestration",
            "training", "features", "data"},
}
BASE = {"civicsense", "civicsense.settings", "civicsense.storage"}
TOP_LEVEL = {"civicsense", "pipelines", "components"}  # the packages whose imports are checked


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in TOP_LEVEL}


def _stage(module: str) -> str:
    """civicsense.<stage>[…] → stage; pipelines[…] / components[…] → pipelines / components."""
    parts = module.split(".")
    if parts[0] != "civicsense":
        return parts[0]
    return parts[1] if len(parts) > 1 else ""


def _module(module: str) -> str:
    """The stage and module, as ALLOWED names single modules: `monitoring.inference_log`."""
    return ".".join(module.removeprefix("civicsense.").split(".")[:2])


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_dependencies_point_one_way(stage):
    wrong = []
    for path in sorted((PACKAGE / stage).rglob("*.py")):  # nested packages too
        for module in _imports(path):
            target = _stage(module)
            if module in BASE or target == stage:
                continue
            allowed = ALLOWED[stage]
            if target in allowed or _module(module) in allowed:
                continue
            wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_every_subpackage_has_a_row():
    stages = {init.parent.name for init in PACKAGE.glob("*/__init__.py")}
    assert stages == set(ALLOWED), stages ^ set(ALLOWED)


def test_the_base_imports_no_stage():
    for name in ("settings.py", "storage.py", "__init__.py"):
        assert {m for m in _imports(PACKAGE / name) if m not in BASE} == set(), name


def test_the_server_entry_point_imports_no_feast_kfp_or_evidently():
    code = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='not_main'); "
            "import civicsense.serving.server, civicsense.cli.serving; "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'feast', 'kfp', 'evidently'}); print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "kserve" / "model_server.py")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_importing_every_module_touches_nothing(tmp_path):
    """No directory made, no env var written, no third-party global patched, at import."""
    code = """
import importlib, os, pkgutil, sys
# Third-party libraries set env vars of their own when imported (KServe's Prometheus dir,
# OpenMP's KMP_*, MLflow's telemetry id): import them first, then watch only ours.
import evidently, feast, kfp, kserve, matplotlib, mlflow, sklearn, xgboost  # noqa: F401
before_env = dict(os.environ)
backend = matplotlib.rcParams._get_backend_or_none()
import civicsense
for info in pkgutil.walk_packages(civicsense.__path__, "civicsense."):
    importlib.import_module(info.name)
for name in ("components.ingest", "components.feature_build", "components.tune",
             "components.train", "components.evaluate", "components.register",
             "pipelines.training",
             "components.label_export", "components.label_import", "pipelines.labeling"):
    importlib.import_module(name)
import importlib.util
spec = importlib.util.spec_from_file_location("defs", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
changed = {k for k in set(os.environ) | set(before_env) if os.environ.get(k) != before_env.get(k)}
assert not changed, changed
assert matplotlib.rcParams._get_backend_or_none() == backend, "backend switched at import"
from kserve import model_server
assert not getattr(model_server.app.state, "civicsense_errors", False), "KServe's app patched"
assert not model_server.app.user_middleware, "middleware added to KServe's app at import"
print(sorted(os.listdir(".")))
"""
    workdir, user_home = tmp_path / "cwd", tmp_path / "user"  # libraries cache under ~
    workdir.mkdir()
    user_home.mkdir()
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "feature_repo" /
                                                          "definitions.py")],
                          capture_output=True, text=True, timeout=180, cwd=workdir,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(user_home),
                               "CIVICSENSE_HOME": str(tmp_path / "state")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"  # nothing created in the working directory
    assert not (tmp_path / "state").exists()  # nor the state directory


def test_no_module_is_over_about_350_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 360]
    assert not long, long


def test_every_subpackage_says_what_it_is_in_one_line():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc and "\n" not in doc.strip(), init


COMPONENTS = {
    "ingest_op": "civicsense.data.merge.ingest_sources",
    "encoder_op": "civicsense.training.encoder_step.fit_encoder",
    "feature_build_op": "civicsense.features.store.build_features",
    "tune_op": "civicsense.training.tune.tune_training_split",
    "train_op": "civicsense.training.train.train",
    "evaluate_op": "civicsense.training.evaluate.evaluate",
    "register_op": "civicsense.training.registry.register",
    "label_export_op": "civicsense.labeling.queue.export_tasks",
    "label_import_op": "civicsense.labeling.snapshots.import_labels",
}


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_each_component_wraps_the_one_function_it_is_named_for(component):
    import importlib

    module = importlib.import_module(f"components.{component.removesuffix('_op')}")
    source = inspect.getsource(getattr(module, component).python_func)
    target_module, _, function = COMPONENTS[component].rpartition(".")
    assert f"from {target_module} import" in source and f"{function}(" in source
    called = {node.func.id for node in ast.walk(ast.parse(source.strip()))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    project_calls = called & {"ingest_source", "ingest_sources", "build_features", "train",
                              "evaluate", "register", "fetch", "ingest", "training_frame",
                              "export_tasks", "import_labels", "tune_training_split",
                              "fit_encoder", "fine_tune"}
    assert project_calls == {function}, project_calls
