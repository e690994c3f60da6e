"""Run a bring-up plan (civicsense.deploy.bringup) or, with dry_run, print every command and
render + validate every manifest it would apply, touching no cluster (runs offline)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from civicsense.deploy.bringup import (
    ISVC,
    NAMESPACE,
    Background,
    Command,
    CompilePipelines,
    Render,
    ServeAlias,
    SinkToken,
    Step,
    Upload,
)
from civicsense.deploy.check import (
    CHECK_MLFLOW_AUTH,
    CHECK_TOKEN,
    Report,
    check_pipelines,
    check_rendered,
    compile_pipelines,
)
from civicsense.deploy.mlflow_auth import (
    AuthFileError,
    MlflowAuth,
    MlflowCredentials,
    read_auth,
    secret_objects,
    write_auth,
)
from civicsense.deploy.render import fill_token, read_token, render, to_yaml
from civicsense.settings import Settings

Echo = Callable[[str], None]


class StepFailed(RuntimeError):
    """A step that did not succeed; the message names it and why."""


def command_line(argv: tuple[str, ...], env: tuple[tuple[str, str], ...] = ()) -> str:
    """The step as a copy-pasteable shell line."""
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env), *map(shlex.quote, argv)])


def describe(step: Step) -> str:
    """What a dry run prints for one step."""
    if isinstance(step, Command):
        auth = (f"  # + MLFLOW_TRACKING_USERNAME/_PASSWORD from {step.mlflow_auth}"
                if step.mlflow_auth else "")
        return command_line(step.argv, step.env) + auth
    if isinstance(step, Background):
        return command_line(step.argv) + " &"
    if isinstance(step, Render):
        auth = f" --mlflow-auth-file {step.mlflow_auth_file}" if step.mlflow_auth_file else ""
        return (f"civicsense deploy render {step.overlay} --component-image "
                f"{step.component_image} --serving-image {step.serving_image} "
                f"--sink-token-file {step.token_file}{auth} -o {step.out}")
    if isinstance(step, SinkToken):
        return f"test -s {step.path} || openssl rand -hex 32 > {step.path}"
    if isinstance(step, MlflowCredentials):
        return (f"test -s {step.path} || write username=civicsense, a random password and "
                f"flask-secret-key to {step.path}")
    if isinstance(step, Upload):
        return (f"STORAGE_EMULATOR_HOST={step.emulator}: create buckets "
                f"{', '.join(step.buckets)}; copy {step.source}/ to {step.uri}")
    if isinstance(step, CompilePipelines):
        return (command_line(("civicsense", "pipeline", "compile", "--image", step.image,
                              "--output-dir", str(step.directory)))
                + f"; validate each (protobuf, every executor {step.image}) and the recurring "
                "runs against them")
    if isinstance(step, ServeAlias):
        where = f"<{{}} of @{step.alias} in {step.tracking_uri}>"
        return command_line(_alias_patch_argv(step, where.format("storageUri"),
                                              [where.format("version env")]))
    raise TypeError(step)


def _auth(path: Path | None) -> MlflowAuth | None:
    try:
        return read_auth(path) if path else None
    except (AuthFileError, OSError) as error:
        raise StepFailed(str(error)) from None


def render_step(step: Render, crd_cache: Path, dry_run: bool) -> Report:
    """Render + validate with the real token and MLflow credentials (stand-ins in a dry run
    without them); write the file, in a dry run with the placeholder and without MLflow's
    Secrets, never with a stand-in; mode 600 when it holds a real one."""
    real_token = not dry_run or step.token_file.exists()
    auth_file = step.mlflow_auth_file
    real_auth = auth_file is not None and (not dry_run or auth_file.exists())
    objects = render(step.overlay, step.component_image, step.serving_image)
    token = read_token(step.token_file) if real_token else CHECK_TOKEN
    auth = _auth(auth_file) if real_auth else CHECK_MLFLOW_AUTH
    auth_secrets = secret_objects(objects, auth) if auth_file is not None else []
    report = Report()
    check_rendered(step.overlay, fill_token(objects, token) + auth_secrets, crd_cache, report)
    if not report.ok:
        raise StepFailed("the rendered overlay is invalid:\n  " + "\n  ".join(report.problems))
    written = (fill_token(objects, token) if real_token else objects) + (
        auth_secrets if real_auth else [])
    step.out.parent.mkdir(parents=True, exist_ok=True)
    step.out.write_text(to_yaml(written))
    if real_token or real_auth:
        step.out.chmod(0o600)   # it holds a secret
    return report


def compile_and_check(step: CompilePipelines, echo: Echo) -> Report:
    """Compile the pipelines with the step's image into its directory, then validate them."""
    try:
        compile_pipelines(step.directory, step.image)
    except (ValueError, OSError) as error:
        raise StepFailed(f"cannot compile the pipelines: {error}") from None
    report = Report()
    check_pipelines(report, step.directory, step.image)
    if not report.ok:
        raise StepFailed("; ".join(report.problems))
    echo(f"    valid: {', '.join(name for _, name, _ in report.checked)} (every executor "
         f"{step.image}): {step.directory}")
    return report


def _wait_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StepFailed(f"exited ({process.returncode}) before port {port} answered")
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise StepFailed(f"port {port} did not answer in {timeout:.0f} s")


def upload(step: Upload) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from google.cloud.exceptions import Conflict

    from civicsense.storage import split_gcs_uri

    client = storage.Client(project="civicsense", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": step.emulator})
    for bucket in step.buckets:
        with contextlib.suppress(Conflict):   # already there: a second cluster-up
            client.create_bucket(bucket)
    bucket, prefix = split_gcs_uri(step.uri)
    for path in sorted(p for p in step.source.rglob("*") if p.is_file()):
        blob = f"{prefix}/{path.relative_to(step.source)}".lstrip("/")
        client.bucket(bucket).blob(blob).upload_from_filename(str(path))


@contextlib.contextmanager
def _client_env(path: Path | None):
    """MLflow's client reads its credentials from the environment: set for the block only."""
    auth, saved = _auth(path), dict(os.environ)
    os.environ.update(auth.client_env() if auth else {})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def serve_alias(step: ServeAlias) -> None:
    from civicsense.rollout.verbs import cluster_uri, version_env
    from civicsense.training.registry import find_version, registry_client

    settings = Settings(mlflow_tracking_uri=step.tracking_uri)
    with _client_env(step.mlflow_auth):
        version = find_version(registry_client(settings), settings.model_name, step.alias)
    if version is None:
        raise StepFailed(f"{settings.model_name} has no '{step.alias}' alias in "
                         f"{step.tracking_uri}: did the pipeline run register a model?")
    _run(_alias_patch_argv(step, cluster_uri(version, step.alias),
                           version_env(version.number, version.run_id)))


def _alias_patch_argv(step: ServeAlias, storage_uri: str, env: list) -> tuple[str, ...]:
    patch = {"spec": {"predictor": {"model": {"storageUri": storage_uri, "env": env}}}}
    return (step.kubectl, "--context", step.context, "-n", NAMESPACE, "patch",
            f"inferenceservice/{ISVC}", "--type", "merge", "-p", json.dumps(patch))


def _run(argv: tuple[str, ...], env: tuple[tuple[str, str], ...] = ()) -> None:
    try:
        done = subprocess.run(argv, env={**os.environ, **dict(env)}, check=False)
    except OSError as error:
        raise StepFailed(f"cannot run {argv[0]}: {error}") from None
    if done.returncode != 0:
        raise StepFailed(f"exit code {done.returncode}")


def run_plan(steps: list[Step], crd_cache: Path, dry_run: bool = False,
             echo: Echo = print) -> int:
    """Each step in order, printed as `[i/n] title` and its command; the first failure stops
    the plan (StepFailed). Background processes end with the plan, or when a later one takes
    their port. Returns the step count."""
    background: dict[int, subprocess.Popen] = {}
    try:
        for index, step in enumerate(steps, 1):
            echo(f"[{index}/{len(steps)}] {step.title}")
            echo(f"    $ {describe(step)}")
            try:
                _execute(step, crd_cache, dry_run, background, echo)
            except StepFailed as error:
                raise StepFailed(f"step {index} ({step.title}) failed: {error}") from None
    finally:
        for process in background.values():
            _stop(process)
    return len(steps)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _execute(step: Step, crd_cache: Path, dry_run: bool,
             background: dict[int, subprocess.Popen], echo: Echo) -> None:
    if isinstance(step, Render):
        report = render_step(step, crd_cache, dry_run)
        variants = sum(1 for source, _, _ in report.checked if "rollout" in source)
        rendered = sum(1 for source, name, _ in report.checked
                       if "rollout" not in source and "/" in name)   # objects, not checks
        echo(f"    {rendered} objects rendered and valid (+ {variants} rollout variants; the "
             f"monitor's runs use its image): {step.out}")
        return
    if isinstance(step, CompilePipelines):   # in a dry run too: it writes only to the workdir
        compile_and_check(step, echo)
        return
    if dry_run:
        return
    if isinstance(step, SinkToken):
        if not step.path.exists():
            step.path.parent.mkdir(parents=True, exist_ok=True)
            step.path.write_text(secrets.token_hex(32))
            step.path.chmod(0o600)
    elif isinstance(step, MlflowCredentials):
        if not step.path.exists():
            write_auth(step.path, MlflowAuth.generate())
    elif isinstance(step, Command):
        auth = _auth(step.mlflow_auth)
        _run(step.argv, step.env + tuple((auth.client_env() if auth else {}).items()))
    elif isinstance(step, Background):
        if step.port in background:   # the same port again: a fresh port-forward replaces it
            _stop(background.pop(step.port))
        try:
            process = subprocess.Popen(step.argv, stdout=subprocess.DEVNULL,
                                       start_new_session=True)
        except OSError as error:
            raise StepFailed(f"cannot run {step.argv[0]}: {error}") from None
        background[step.port] = process
        _wait_port(step.port, process)
    elif isinstance(step, Upload):
        upload(step)
    elif isinstance(step, ServeAlias):
        serve_alias(step)
