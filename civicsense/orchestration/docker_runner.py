"""Run the training pipeline with KFP's DockerRunner: every step inside the component image."""

from __future__ import annotations

import os
from pathlib import Path

from civicsense.settings import Settings

# The component image's own paths (components/Dockerfile).
IMAGE_FEATURE_REPO = "/app/feature_repo"


class EngineError(RuntimeError):
    """No Docker engine answers, or the requested image is not on it."""


def docker_client():
    """A client of the local Docker engine; EngineError (with the reason) when none answers."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as error:  # docker raises several unrelated types for "no engine"
        raise EngineError(f"no Docker engine answers ({error.__class__.__name__}: {error}); "
                          "start one with `make docker-engine`") from error
    return client


def alias_image(client, image: str, alias: str) -> str:
    """Tag the local `image` as `alias` (the name the compiled components carry, e.g. the
    registry name), so KFP finds it locally instead of pulling; the image's id."""
    import docker

    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound as error:
        raise EngineError(f"image {image} is not built: run `make images`") from error
    repository, _, tag = alias.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = alias, "latest"
    found.tag(repository, tag)
    return found.id


def state_mounts(settings: Settings) -> list:
    """Bind mounts of the state directory (read-write) and a local data source (read-only).

    The state sits at the same absolute path inside as outside: it plays the PVC every step
    mounts on the cluster, and MLflow's SQLite store records absolute artifact URIs, so the
    registry a container writes stays readable by host processes (serve, monitor) and by the
    subprocess runner."""
    from docker.types import Mount

    # Mounted at the path as given (what the steps are told), from its real path: through a
    # symlink (e.g. ../shared linked in), the link's target would not be inside the container.
    home = Path(settings.home_dir).absolute()
    mounts = [Mount(target=str(home), source=str(home.resolve()), type="bind",
                    read_only=False)]
    data = Path(settings.data)
    if "://" not in settings.data and data.exists():
        mounts.append(Mount(target=str(data.absolute()), source=str(data.resolve()),
                            type="bind", read_only=True))
    return mounts


def container_environment(settings: Settings) -> dict[str, str]:
    """What the cluster's ConfigMap gives every step (manifests: civicsense-config), here."""
    environment = {
        "CIVICSENSE_HOME": str(settings.home_dir),
        "CIVICSENSE_DATA": settings.data,
        "CIVICSENSE_FEATURE_REPO": IMAGE_FEATURE_REPO,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "CIVICSENSE_MODEL_NAME": settings.model_name,
        "CIVICSENSE_EXPERIMENT": settings.experiment,
    }
    if settings.storage_emulator_host:
        environment["STORAGE_EMULATOR_HOST"] = settings.storage_emulator_host
    return environment


def container_run_args(settings: Settings) -> dict[str, object]:
    """docker-py `containers.run` arguments for every step: mounts, env, the caller's uid.

    The image's user is non-root (1000); steps run as the caller's uid so files written to the
    bind-mounted state stay the caller's (on the cluster, fsGroup does this for the PVC). Host
    networking only when a local GCS emulator must be reached on 127.0.0.1."""
    args: dict[str, object] = {
        "mounts": state_mounts(settings),
        "environment": container_environment(settings),
        "user": f"{os.getuid()}:{os.getgid()}",
    }
    if settings.storage_emulator_host:
        args["network_mode"] = "host"
    return args


def docker_runner(settings: Settings, image: str):
    """A `kfp.local.DockerRunner` for `image`, aliased as the components' base_image."""
    from kfp import local

    from components import COMPONENT_IMAGE

    client = docker_client()
    try:
        alias_image(client, image, COMPONENT_IMAGE)
    finally:
        client.close()
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    return local.DockerRunner(**container_run_args(settings))


def local_image(repository: str, root: Path | None = None) -> str:
    """`repository:<version>-<git sha>`: the tag `make images` gives the build of this tree."""
    import subprocess
    from importlib.metadata import version

    from civicsense.settings import PROJECT_ROOT

    revision = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root or PROJECT_ROOT,
                              capture_output=True, text=True, check=False).stdout.strip()
    return f"{repository}:{version('civicsense')}-{revision or 'unknown'}"


def pick_runner(name: str, settings: Settings, image: str | None = None):
    """The KFP local runner called `name`: None for the subprocess runner (the default), a
    DockerRunner on `image` (default: this tree's component image) for "docker"."""
    if name == "subprocess":
        return None
    if name != "docker":
        raise ValueError(f"--runner must be 'subprocess' or 'docker', not {name!r}")
    return docker_runner(settings, image or local_image("civicsense-components"))
