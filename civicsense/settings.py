"""One typed settings object for the whole project, read from CIVICSENSE_* env vars and the CLI."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIRROR_DATA = PROJECT_ROOT.parent / "shared" / "data" / "semeval2017-task4a"
# TweetEval's sentiment task is SemEval-2017 Task 4A, published in a layout ingest reads.
DEFAULT_COMPONENT_IMAGE = "ghcr.io/civicsense/civicsense-components:0.1.0"
PUBLIC_DATA_URL = (
    "https://raw.githubusercontent.com/cardiffnlp/tweeteval/main/datasets/sentiment/"
)


def default_data_source() -> str:
    """The mirror beside the project when it exists, else the data's public home."""
    return str(MIRROR_DATA) if MIRROR_DATA.is_dir() else PUBLIC_DATA_URL


def proxy_networks(value: object) -> tuple[str, ...]:
    """IPs and CIDRs, comma-separated or listed, as networks ("127.0.0.1/32"); a ValueError
    names the first entry that is neither."""
    entries = value.split(",") if isinstance(value, str) else list(value or ())
    networks = []
    for entry in (str(e).strip() for e in entries):
        if not entry:
            continue
        try:
            networks.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(dict.fromkeys(networks))


class Settings(BaseSettings):
    """Everything configurable. Env: CIVICSENSE_<FIELD>, plus MLFLOW_TRACKING_URI."""

    model_config = SettingsConfigDict(env_prefix="CIVICSENSE_", extra="ignore")

    home: Path = Field(default=Path(".civicsense"), description="Local state directory.")
    data: str = Field(default_factory=default_data_source, description="Training data source.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking server; default SQLite under home.",
    )
    experiment: str = "civicsense"
    model_name: str = "civicsense-sentiment"
    component_image: str = Field(default=DEFAULT_COMPONENT_IMAGE, description="Container "
                                 "image every KFP step runs in the pipelines submitted from "
                                 "here (pipeline submit, schedule create, the drift trigger).")
    feature_repo: Path = PROJECT_ROOT / "feature_repo"
    git_commit: str | None = Field(default=None, description="Commit baked into images.")
    storage_emulator_host: str | None = Field(
        default=None,
        validation_alias="STORAGE_EMULATOR_HOST",
        description="GCS emulator (gcp-storage-emulator) endpoint; anonymous credentials then.",
    )
    http_timeout: float = 60.0
    # Serving (civicsense serve, the KServe runtime) and rollout (civicsense rollout …).
    serve_model_uri: str | None = Field(
        default=None,
        description="What the server loads: models:/name@alias, models:/name/version or a "
        "local MLflow model directory (/mnt/models on the cluster) [default: "
        "models:/<model_name>@champion].",
    )
    serve_port: int = Field(default=8080, description="HTTP port (KServe binds 0.0.0.0).")
    serve_workers: int = Field(default=1, ge=1, description="Model processes behind the one HTTP "
                               "process (1: predict in the HTTP process).")
    serve_threads: int = Field(default=1, ge=1, description="XGBoost/OpenMP and ONNX Runtime "
                               "threads per worker.")
    serve_access_log: bool = Field(default=False, description="One log line per request.")
    max_text_chars: int = Field(default=2000, ge=1, description="Longest text accepted.")
    max_batch: int = Field(default=256, ge=1, description="Most texts in one request.")
    max_request_chars: int = Field(default=64_000, ge=1, description="Most characters in one "
                                   "request, all its texts together (the extension's default "
                                   "batch of 32 longest texts fits): bounds the worst request.")
    max_body_bytes: int | None = Field(default=None, ge=1, description="Largest request body "
                                       "(413 above it) [default: room for max_batch texts of "
                                       "max_text_chars, every char escaped].")
    request_timeout_seconds: float = Field(default=20.0, gt=0, description="Time budget of "
                                           "one request: past it, a 503 with Retry-After.")
    serve_chunk_chars: int = Field(default=16_000, ge=1, description="A batch is scored in "
                                   "chunks of at most this many characters, one at a time, so "
                                   "requests beside a large one keep their latency.")
    serve_read_timeout_seconds: float = Field(default=15.0, gt=0, description="A request's "
                                              "headers and body must arrive within this time "
                                              "(slow or stalled connections are closed).")
    # Fair sharing: each client's budget of model time (civicsense/serving/client_budget.py).
    serve_client_ms_per_second: float = Field(default=250.0, ge=0, description="Model CPU "
                                              "time (ms per second) one client, its credential "
                                              "else its address, may use while others use the "
                                              "server too: over it, 429 with Retry-After "
                                              "(0: no budget).")
    serve_client_burst_ms: float = Field(default=2000.0, gt=0, description="Model time (ms) a "
                                         "client may use at once before its rate applies; "
                                         "also the most debt it runs up while alone.")
    serve_client_active_seconds: float = Field(default=10.0, gt=0, description="A client that "
                                               "sent a request within this time shares the "
                                               "server: only then is another refused over its "
                                               "budget or kept off the last model process.")
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="IPs and CIDRs (comma-separated) of the proxies in front of "
        "the model server and the sink. Only from these peers do X-Forwarded-For, Forwarded "
        "and X-Real-IP count: every limit keyed on the peer then takes the right-most "
        "forwarded address that is not one of them (empty: trust none, the TCP peer counts).")
    model_version: str | None = Field(
        default=None,
        description="Registered version of a model loaded from a directory (set on the cluster "
        "by `civicsense rollout`); resolved from the registry for models:/ URIs.",
    )
    k8s_namespace: str = Field(default="civicsense", description="InferenceService namespace.")
    k8s_context: str | None = Field(default=None, description="kubectl context (None: current).")
    kubectl_timeout: float = Field(default=60.0, gt=0, description="Seconds a kubectl call may "
                                   "take (past it the outcome is unknown: reconciled).")
    # Monitoring (issue 4): payload log, drift job, retraining trigger. See docs/monitoring.md.
    log_predictions: bool = Field(default=True, description="The model server appends every "
                                  "prediction to the inference log (off on the cluster, where "
                                  "KServe's logger and the sink do it).")
    inference_log_uri: str | None = Field(
        default=None, description="Where prediction records go: a directory or gs://bucket/prefix "
        "[default <home>/inference-log].")
    reports_uri: str | None = Field(
        default=None, description="Drift reports: a directory or gs://bucket/prefix "
        "[default <home>/reports].")
    monitor_window_hours: float = Field(default=24.0, gt=0, description="Log window monitored.")
    monitor_min_rows: int = Field(default=200, ge=1, description="Fewest records worth a check.")
    monitor_max_rows: int = Field(default=5000, ge=1, description="Largest window/reference "
                                  "(seeded samples beyond it).")
    drift_share: float = Field(default=0.25, gt=0, le=1, description="Share of drifted "
                               "columns that counts as dataset drift (Evidently's test; its "
                               "default 0.5 misses the 2013→2015 shift: docs/monitoring.md).")
    retrain_cooldown_minutes: float = Field(default=360.0, ge=0, description="No second "
                                            "retraining run within this time.")
    retrain_on_drift: bool = Field(default=True, description="Trigger a run when drifted.")
    kfp_host: str | None = Field(default=None, description="Kubeflow Pipelines endpoint: "
                                 "retrain there (else locally with the KFP local runner).")
    # Log rotation (issue 27): the payload and feedback logs stay bounded.
    log_max_megabytes: float = Field(default=64.0, gt=0, description="Largest file (MiB) of "
                                     "the payload and feedback logs: a writer starts the next "
                                     "file before passing it (on gs://, each object is at "
                                     "most this size).")
    log_retention_days: int = Field(default=30, ge=0, description="Days of payload and "
                                    "feedback log kept: a local writer deletes the day "
                                    "partitions older than this (0: keep all); on gs:// the "
                                    "bucket's lifecycle rule does (manifests/gcs/).")
    # Hardening (issue 12): ingest's line cap, the log reader's tolerance, the sink's limits.
    ingest_max_line_bytes: int = Field(default=1 << 20, ge=1024, description="Longest raw line "
                                       "ingest reads; a longer one is quarantined unread "
                                       "(line_too_long).")
    monitor_min_valid_share: float = Field(default=0.5, ge=0, le=1, description="Share of a "
                                           "window's log lines that must be valid records; "
                                           "below it the window fails (invalid lines are "
                                           "skipped and counted).")
    sink_token: SecretStr | None = Field(default=None, description="Shared token the sink "
                                         "expects as `Authorization: Bearer` (never in a URL); "
                                         "events without it get 401.")
    sink_logger_sources: str = Field(default="", description="`namespace/name,…` of the "
                                     "InferenceServices whose logger events need no token "
                                     "(KServe's logger sends no headers; a NetworkPolicy "
                                     "lets only their pods reach the sink).")
    sink_max_body_bytes: int | None = Field(default=None, ge=1, description="Largest event "
                                            "body the sink reads (413 above it) [default: "
                                            "the server's body limit + 64 KiB].")
    sink_pending_bytes: int = Field(default=64 << 20, ge=1, description="Memory budget of "
                                    "unmatched request/response halves; the oldest are "
                                    "dropped (and counted) beyond it.")
    sink_body_timeout: float = Field(default=30.0, gt=0, description="Seconds the sink waits "
                                     "for a whole event body (408 after: slow uploads).")
    # User feedback (issue 14): the feedback log and the feedback route's rate limits.
    feedback_log_uri: str | None = Field(
        default=None, description="Where readers' feedback records go: a directory or "
        "gs://bucket/prefix [default <home>/feedback-log].")
    feedback_rate_per_minute: float = Field(default=6.0, gt=0, description="Feedback a client "
                                            "id may send per minute (token bucket; 429 with "
                                            "Retry-After beyond it).")
    feedback_burst: int = Field(default=10, ge=1, description="Feedback a client id may send "
                                "at once before its rate applies.")
    feedback_peer_rate_per_minute: float = Field(default=60.0, gt=0, description="Feedback one "
                                                 "peer address may send per minute, whatever "
                                                 "client ids it claims (its burst: a minute's "
                                                 "worth).")
    # feedback (issue 14): where the server's feedback route sends records, whom it trusts.
    feedback_forward_url: str | None = Field(default=None, description="The sink's /feedback "
                                             "URL: the model server forwards each accepted "
                                             "feedback there (with the sink token) instead of "
                                             "writing the feedback log itself (the cluster).")
    feedback_forward_timeout: float = Field(default=5.0, gt=0, description="Seconds the "
                                            "server waits for the sink to take a feedback.")
    # Readers' credentials: the signed per-install token the feedback route requires.
    credential_secret: SecretStr | None = Field(default=None, description="Key that signs "
                                                "readers' credentials (32+ characters) "
                                                "[default: derived from the sink token when "
                                                "set, else a random key kept in "
                                                "<home>/credential-secret, mode 0600].")
    credential_key_id: str = Field(default="1", pattern=r"^[A-Za-z0-9_-]{1,16}$",
                                   description="Id of the signing key: only credentials "
                                   "issued under it verify, so changing it revokes all others.")
    credential_ttl_days: float = Field(default=30.0, gt=0, description="Life of a credential "
                                       "(the extension gets a new one when it is refused).")
    credential_rate_per_hour: float = Field(default=6.0, gt=0, description="Credentials one "
                                            "peer address (an IPv6 /64) may get per hour; "
                                            "its burst: an hour's worth (429 beyond).")
    credential_revoked: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Install ids (comma-separated) whose credentials are refused.")

    # labelqueue (issue 14): the labeling queue and the trust rule for readers' feedback.
    feedback_min_clients: int = Field(default=3, ge=1, description="Distinct credentials that "
                                      "must agree (and be a strict majority of a post's "
                                      "credentials) before feedback makes a consensus label.")
    feedback_min_peers: int = Field(default=3, ge=1, description="Distinct peer addresses the "
                                    "agreeing credentials must have posted from.")
    feedback_min_days: int = Field(default=2, ge=1, description="Distinct UTC days the "
                                   "agreeing feedback must span.")
    feedback_consensus_training: bool = Field(default=False, description="Consensus labels "
                                              "reach training without an annotator (off: "
                                              "feedback reaches training only through an "
                                              "annotator's label in Label Studio).")
    feedback_consensus_max_share: float = Field(default=0.05, ge=0, le=1, description="Most "
                                                "consensus labels a training set may take, as "
                                                "a share of its rows (of the annotated labels "
                                                "when the base data's size is not known).")
    label_window_hours: float = Field(default=168.0, gt=0, description="Payload-log window "
                                      "`civicsense label export` picks from by default.")

    # sources (issue 14): retraining on base data + confirmed labelled snapshots.
    retrain_with_labels: bool = Field(default=True, description="A drift-triggered retraining "
                                      "run also trains on every confirmed labelled snapshot "
                                      "(`civicsense run --labels`).")

    # quality (issue 13): error analysis in evaluate, the slice and behaviour gate, model card.
    slice_gate_min_rows: int = Field(default=200, ge=1, description="Validation slices with at "
                                     "least this many posts are checked by the gate.")
    slice_gate_margin: float = Field(default=0.03, ge=0, description="Macro recall a challenger "
                                     "may lose on such a slice against the champion.")
    calibration_bins: int = Field(default=10, ge=2, description="Bins of the reliability "
                                  "diagram and of expected calibration error.")
    behaviour_min_pass_rates: dict[str, float] = Field(
        default_factory=lambda: {"negation": 0.6, "intensifiers": 0.4, "emoji_only": 0.25,
                                 "typos_elongations": 0.35, "neutral_facts": 0.9},
        description="Minimum pass rate of each behaviour suite (JSON in the env var); the gate "
        "refuses a challenger below any of them.")

    # tune (issue 13): the Optuna step's knobs beside the pipeline's tune/tune_trials parameters.
    tune_validation_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of the "
                                            "TRAINING split (its latest posts, or random with "
                                            "split=random) the tuner scores trials on.")
    tune_timeout_seconds: float | None = Field(default=None, gt=0, description="Stop starting "
                                               "trials after this long (None: run them all).")
    tune_threads: int = Field(default=0, ge=0, description="XGBoost threads per trial "
                              "(0: every core).")
    tune_max_rounds: int = Field(default=1000, ge=100, description="Most boosting rounds a "
                                 "trial may draw.")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: object) -> tuple[str, ...]:
        return proxy_networks(value)

    @field_validator("credential_revoked", mode="before")
    @classmethod
    def _install_ids(cls, value: object) -> tuple[str, ...]:
        entries = value.split(",") if isinstance(value, str) else list(value or ())
        return tuple(dict.fromkeys(e for e in (str(v).strip() for v in entries) if e))

    @cached_property
    def home_dir(self) -> Path:
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def model_uri(self) -> str:
        """What the server loads: serve_model_uri, else the registered model's champion."""
        return self.serve_model_uri or f"models:/{self.model_name}@champion"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        """Where a fresh local experiment stores its artifacts (ignored for remote servers)."""
        return (self.home_dir / "mlartifacts").as_uri()

    @property
    def feast_dir(self) -> Path:
        return self.home_dir / "feast"

    @property
    def pipeline_root(self) -> Path:
        return self.home_dir / "pipeline-runs"

    @property
    def body_limit(self) -> int:
        # 12 bytes per char: an emoji JSON-escaped as a surrogate pair is 12 bytes for 2 chars,
        # a control char 6 for 1; plus quotes, commas and the envelope.
        return self.max_body_bytes or self.max_batch * (12 * self.max_text_chars + 8) + 65536

    @property
    def sink_body_limit(self) -> int:
        return self.sink_max_body_bytes or self.body_limit + 65536

    @property
    def inference_log(self) -> str:
        return self.inference_log_uri or str(self.home_dir / "inference-log")

    @property
    def feedback_log(self) -> str:
        return self.feedback_log_uri or str(self.home_dir / "feedback-log")

    @property
    def reports(self) -> str:
        return self.reports_uri or str(self.home_dir / "reports")

    @property
    def monitor_dir(self) -> Path:
        """Trigger lock, cooldown state and the decisions log (local even on the cluster: a PVC)."""
        return self.home_dir / "monitor"


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with non-None CLI overrides on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
