"""Object storage: the google-cloud-storage client (emulator-aware) and gs:// URIs."""

from __future__ import annotations

from civicsense.settings import Settings


def gcs_client(settings: Settings):
    """A google-cloud-storage client: anonymous against the emulator, default credentials else."""
    from google.cloud import storage

    if settings.storage_emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="civicsense", credentials=AnonymousCredentials())
    return storage.Client()


def is_gcs(uri: str) -> bool:
    return uri.startswith("gs://")


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """gs://bucket/some/prefix/ → ("bucket", "some/prefix")."""
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    return bucket, prefix.strip("/")
