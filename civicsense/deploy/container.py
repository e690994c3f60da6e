"""Serve the champion the way KServe does, on one Docker engine: stage its artifacts at a gs://
storageUri, copy them into a volume with KServe's storage initializer, then start the serving
image with what the ClusterServingRuntime declares. `python -m civicsense.deploy.container`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from civicsense.deploy.runtime_spec import (
    MODEL_MOUNT,
    RuntimeContainer,
    docker_run_args,
    find_runtime,
    image_user_is_root,
    runtime_container,
)
from civicsense.settings import PROJECT_ROOT, Settings
from civicsense.storage import gcs_client, split_gcs_uri
from civicsense.training.registry import find_version, registry_client

MODEL_BUCKET = "civicsense-mlflow"
CONTAINER_LABEL = "io.civicsense.serve-container"


class ServeContainerError(RuntimeError):
    """Something on the way to a ready serving container failed; the message says what."""


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str
    location: str  # where the registry keeps the MLflow model directory


@dataclass(frozen=True)
class ServedContainer:
    container_id: str
    name: str
    url: str
    storage_uri: str
    volume: str
    ready_seconds: float  # from `docker start` to /v2/health/ready answering 200


def champion(settings: Settings, alias: str = "champion") -> Champion:
    """The registered model's version under `alias` and where its artifacts are."""
    found = find_version(registry_client(settings), settings.model_name, alias)
    if found is None:
        raise ServeContainerError(f"no {settings.model_name}@{alias} in the registry at "
                                  f"{settings.tracking_uri}: run `make run` first")
    return Champion(found.number, found.run_id, found.storage_uri)


def local_model_dir(location: str) -> Path:
    """A file:// or plain-path model location as a directory."""
    path = Path(unquote(urlparse(location).path)) if location.startswith("file:") else Path(
        location)
    if not (path / "MLmodel").is_file():
        raise ServeContainerError(f"{location} is not an MLflow model directory")
    return path


def storage_uri_for(location: str, bucket: str = MODEL_BUCKET) -> str:
    """The gs:// URI a cluster's MLflow (artifacts on GCS) gives the same model:
    …/mlartifacts/1/models/m-…/artifacts → gs://civicsense-mlflow/artifacts/1/models/m-…/artifacts."""
    path = location.rstrip("/")
    tail = path.split("/mlartifacts/", 1)[1] if "/mlartifacts/" in path else Path(path).name
    return f"gs://{bucket}/artifacts/{tail}"


def upload_dir(folder: Path, uri: str, settings: Settings) -> int:
    """Copy every file under folder to the gs:// prefix uri (the emulator locally); files."""
    bucket_name, prefix = split_gcs_uri(uri)
    client = gcs_client(settings)
    bucket = client.bucket(bucket_name)
    if not bucket.exists():
        bucket = client.create_bucket(bucket_name)
    files = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    for path in files:
        bucket.blob(f"{prefix}/{path.relative_to(folder).as_posix()}").upload_from_filename(
            str(path))
    return len(files)


@contextlib.contextmanager
def emulator_if_needed(settings: Settings) -> Iterator[Settings]:
    """Settings with a GCS endpoint: the configured one, or a GCS emulator started for the
    duration (it only has to outlive the storage initializer)."""
    if settings.storage_emulator_host:
        yield settings
        return
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=MODEL_BUCKET)
    server.start()
    host = f"http://127.0.0.1:{server._api._httpd.server_port}"
    # google-cloud-storage reads the emulator's address from the environment only.
    saved = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    try:
        yield settings.model_copy(update={"storage_emulator_host": host})
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = saved


def initialize_storage(client, image: str, storage_uri: str, volume: str,
                       emulator_host: str | None) -> str:
    """Run KServe's storage initializer (its own kserve-storage code) copying storage_uri into
    the volume at /mnt/models, as the pod's init container does; its log."""
    import docker

    environment = {"STORAGE_EMULATOR_HOST": emulator_host} if emulator_host else {}
    try:
        output = client.containers.run(
            image, [storage_uri, MODEL_MOUNT], environment=environment, remove=True,
            network_mode="host" if emulator_host else "bridge", stdout=True, stderr=True,
            mounts=[docker.types.Mount(target=MODEL_MOUNT, source=volume, type="volume")])
    except docker.errors.ContainerError as error:
        raise ServeContainerError(f"storage initializer failed: {error.stderr!r}") from error
    return output.decode(errors="replace")


def wait_ready(url: str, container, timeout: float) -> float:
    """Poll url until 200; seconds waited. ServeContainerError if the container exits or the
    timeout passes (with the container's last log lines)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        container.reload()
        if container.status in {"exited", "dead"}:
            break
        time.sleep(0.1)
    logs = container.logs(tail=20).decode(errors="replace")
    raise ServeContainerError(f"{url} not ready after {time.perf_counter() - started:.0f} s "
                              f"(container {container.status}):\n{logs}")


def start_runtime(client, spec: RuntimeContainer, image: str, port: int, volume: str,
                  model: Champion, name: str):
    """Start the serving image as the runtime declares it; the running container."""
    if spec.run_as_non_root and image_user_is_root(client.images.get(image).attrs):
        raise ServeContainerError(f"{spec.source} requires runAsNonRoot, and {image} runs "
                                  "as root")
    # What the InferenceService adds to the runtime's env (manifests: inferenceservice.yaml).
    extra = {"CIVICSENSE_MODEL_VERSION": model.version, "CIVICSENSE_MODEL_RUN_ID": model.run_id}
    run = docker_run_args(spec, image, port, volume, extra)
    return client.containers.run(name=name, labels={CONTAINER_LABEL: "1"}, **run)


def serve_container(settings: Settings, image: str, initializer_image: str, port: int = 8080,
                    storage_uri: str | None = None, manifests: Path = PROJECT_ROOT / "manifests",
                    ready_timeout: float = 120.0) -> ServedContainer:
    """The champion (or the model at storage_uri) served from the serving image, published on
    127.0.0.1:port, ready; the caller stops it with `stop(...)`."""
    from civicsense.orchestration.docker_runner import docker_client

    doc, path = find_runtime(manifests)
    spec = runtime_container(doc, settings.model_name, str(path))
    client = docker_client()
    model = champion(settings) if storage_uri is None else Champion(
        settings.model_version or "unregistered", "none", storage_uri)
    name = f"civicsense-serving-{port}"
    with contextlib.suppress(Exception):
        client.containers.get(name).remove(force=True)
    volume = client.volumes.create(labels={CONTAINER_LABEL: "1"}).name
    with emulator_if_needed(settings) as staged:
        if storage_uri is None:
            storage_uri = storage_uri_for(model.location)
            upload_dir(local_model_dir(model.location), storage_uri, staged)
        initialize_storage(client, initializer_image, storage_uri, volume,
                           staged.storage_emulator_host)
    container = start_runtime(client, spec, image, port, volume, model, name)
    try:
        seconds = wait_ready(f"http://127.0.0.1:{port}{spec.ready_path}", container,
                             ready_timeout)
    except ServeContainerError:
        stop(container.id, volume)
        raise
    return ServedContainer(container.id, name, f"http://127.0.0.1:{port}", storage_uri, volume,
                           seconds)


def stop(container_id: str, volume: str | None = None) -> None:
    """Stop and remove the serving container and its model volume."""
    from civicsense.orchestration.docker_runner import docker_client

    client = docker_client()
    with contextlib.suppress(Exception):
        client.containers.get(container_id).remove(force=True)
    if volume:
        with contextlib.suppress(Exception):
            client.volumes.get(volume).remove(force=True)


def main(argv: list[str] | None = None) -> int:
    """`make serve-container`: serve until Ctrl-C (or return once ready with --detach)."""
    from civicsense.orchestration.docker_runner import EngineError, local_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=None, help="serving image [this tree's build]")
    parser.add_argument("--initializer-image", default=None, help="storage-initializer image")
    parser.add_argument("--port", type=int, default=8080, help="host port (127.0.0.1 only)")
    parser.add_argument("--storage-uri", default=None, help="gs:// model dir [the champion]")
    parser.add_argument("--detach", action="store_true", help="leave it running and return")
    args = parser.parse_args(argv)
    settings = Settings()
    try:
        served = serve_container(
            settings, args.image or local_image("civicsense-serving"),
            args.initializer_image or local_image("civicsense-storage-initializer"), args.port,
            args.storage_uri)
    except (ServeContainerError, EngineError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{served.name} ready in {served.ready_seconds:.1f} s at {served.url} "
          f"(model {served.storage_uri})", flush=True)
    if args.detach:
        print(f"stop it: docker rm -f {served.name} && docker volume rm {served.volume}")
        return 0
    try:
        from civicsense.orchestration.docker_runner import docker_client

        for line in docker_client().containers.get(served.container_id).logs(stream=True):
            print(line.decode(errors="replace"), end="")
    except KeyboardInterrupt:
        pass
    finally:
        stop(served.container_id, served.volume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
