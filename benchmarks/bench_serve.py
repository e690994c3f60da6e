"""`make bench-serve`: the CivicSense server against the model in process (the ceiling) and the
two peers a user would pick instead, all on the same registered model in one run.

- in-process: SentimentPredictor.predict_proba, 1 OpenMP thread.
- civicsense: `civicsense serve` (KServe SDK), V1 and V2, 1 and 2 workers (2: one HTTP process
  feeding 2 model processes), OMP_NUM_THREADS=1, configured as the cluster runtime is (no local
  payload log), plus one row with the local payload log on (`make serve`'s default: a background
  thread writes each record).
- MLServer 1.7.1 + mlserver-mlflow (KServe's own MLflow runtime code), V2, in its own venv under
  $CIVICSENSE_HOME/bench/ that this script creates (uvloop pinned to 0.21.0, see PLATFORM-NOTES).
- `mlflow models serve --env-manager local`, 1 and 2 workers.
- `--compare URI` (repeatable): another registered model (e.g. `models:/civicsense-sentiment@
  challenger`, or the model before the encoder) measured in the same run: its in-process
  ceiling and `civicsense serve` V1 with 2 workers, rows suffixed with its version.
- `--container`: the serving image as KServe runs it (`make serve-container`: storage
  initializer from a gs:// storageUri in the GCS emulator, then the ClusterServingRuntime's args,
  env and limits), beside the bare process with the same flags (`civicsense V1 w2`). Needs a
  Docker engine and `make images` for this commit.

The load generator is a small asyncio HTTP/1.1 client with keep-alive connections and pre-built
requests (cheap per request, but it shares the machine's cores with the server under test).
Tweets come from the data mirror (a fixed set, cycled). All servers run at once and are measured
in turns, --rounds times in rotating order (the machine is shared: its speed drifts); the
markdown table gives the medians, the JSON every round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from civicsense.settings import MIRROR_DATA, Settings

# The name the servers publish the model under (CIVICSENSE_MODEL_NAME renames it).
MODEL_NAME = Settings().model_name

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MLSERVER_PACKAGES = ["mlserver==1.7.1", "mlserver-mlflow==1.7.1", "mlflow==3.17.2",
                     "xgboost==3.2.0", "scikit-learn==1.9.1", "vaderSentiment==3.3.2",
                     "pandas>=2.2,<3", "uvloop==0.21.0"]
FALLBACK_TWEETS = ["I love this reform, finally some good news :)",
                   "This law is a disaster and the minister should resign!",
                   "The parliament votes on the pension bill on Tuesday."]


def tweets(limit: int = 2000) -> list[str]:
    """Real tweets from the mirror (fallback: a few fixed ones), cleaned like ingest does."""
    from civicsense.data.ingest import clean_text

    out: list[str] = []
    for path in sorted(MIRROR_DATA.glob("*test-A.txt")) if MIRROR_DATA.is_dir() else []:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and (text := clean_text(parts[2]).strip()):
                out.append(text[:280])
            if len(out) >= limit:
                return out
    return out or FALLBACK_TWEETS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    ready_path: str
    make_body: Callable[[list[str]], bytes]
    path: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen | None = None

    def start(self, log_dir: Path, timeout: float = 180) -> None:
        log = (log_dir / f"{self.name.replace(' ', '_')}.log").open("w")
        self.process = subprocess.Popen(self.command, env={**os.environ, **self.env},
                                        cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {log.name}")
            try:
                status, _ = asyncio.run(request_once(self.port, get(self.ready_path)))
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {timeout} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class ContainerServer(Server):
    """The serving image, started and stopped through civicsense.deploy.container."""

    settings: Settings | None = None
    served: object | None = None

    def start(self, log_dir: Path, timeout: float = 180) -> None:
        from civicsense.deploy.container import serve_container
        from civicsense.orchestration.docker_runner import local_image

        self.served = serve_container(self.settings, local_image("civicsense-serving"),
                                      local_image("civicsense-storage-initializer"), self.port,
                                      ready_timeout=timeout)
        print(f"{self.name}: ready in {self.served.ready_seconds:.1f} s", flush=True)

    def alive(self) -> bool:
        from civicsense.orchestration.docker_runner import docker_client

        if self.served is None:
            return False
        return docker_client().containers.get(self.served.container_id).status == "running"

    def stop(self) -> None:
        from civicsense.deploy.container import stop

        if self.served is not None:
            stop(self.served.container_id, self.served.volume)
            self.served = None


# ---------------------------------------------------------------- a tiny HTTP/1.1 load client


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:]
                                                           if ln)}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = b""
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]


async def request_once(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader), 10)
    finally:
        writer.close()


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


async def _load(port: int, requests: list[bytes], concurrency: int, duration: float | None,
                count: int | None) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + duration if duration else None

    async def client() -> None:
        nonlocal errors, sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                if stop_at and time.perf_counter() >= stop_at or count and sent >= count:
                    return
                raw = requests[sent % len(requests)]
                sent += 1
                started = time.perf_counter()
                try:
                    writer.write(raw)
                    status, _ = await asyncio.wait_for(read_response(reader), 30)
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return LoadResult(sent, errors, time.perf_counter() - started, latencies)


def load(port, requests, concurrency, duration=None, count=None) -> LoadResult:
    return asyncio.run(_load(port, requests, concurrency, duration, count))


def measure(server: Server, texts: list[str], seconds: float) -> dict:
    """Single-tweet latency (one connection, sequential), single-request throughput, and
    batch-of-32 throughput; all requests checked for status 200."""
    singles = [post(server.path, server.make_body([t])) for t in texts[:500]]
    batches = [post(server.path, server.make_body(texts[i:i + 32]))
               for i in range(0, len(texts) - 32, 32)]
    load(server.port, singles, 1, count=100)  # warm up
    latency = load(server.port, singles, 1, count=1000)
    single = load(server.port, singles, 8, duration=seconds)
    batch = load(server.port, batches, 4, duration=seconds)
    return {"p50_ms": latency.percentile(50), "p99_ms": latency.percentile(99),
            "single_rps": single.requests / single.seconds,
            "batch32_texts_per_s": batch.requests * 32 / batch.seconds,
            "errors": latency.errors + single.errors + batch.errors}


# ---------------------------------------------------------------- the contenders


def in_process(model, texts: list[str], seconds: float) -> dict:
    predictor = model.predictor
    for text in texts[:50]:
        predictor.predict_proba([text])
    timings = []
    for text in texts[:1000]:
        started = time.perf_counter()
        predictor.predict_proba([text])
        timings.append((time.perf_counter() - started) * 1000)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        i = (done * 32) % (len(texts) - 32)
        predictor.predict_proba(texts[i:i + 32])
        done += 1
    return {"p50_ms": float(np.percentile(timings, 50)),
            "p99_ms": float(np.percentile(timings, 99)),
            "single_rps": 1000 / float(np.mean(timings)),
            "batch32_texts_per_s": done * 32 / (time.perf_counter() - started), "errors": 0}


def v1_body(texts: list[str]) -> bytes:
    return json.dumps({"instances": texts}).encode()


def v2_body(texts: list[str]) -> bytes:
    return json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                                   "data": texts}]}).encode()


def mlflow_body(texts: list[str]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": ["text"],
                                           "data": [[t] for t in texts]}}).encode()


THREAD_ENV = {"OMP_NUM_THREADS": "1", "CIVICSENSE_SERVE_THREADS": "1"}


def civicsense_server(settings: Settings, workers: int, v2: bool,
                      payload_log: bool = False, model_uri: str | None = None,
                      suffix: str = "") -> Server:
    """As deployed by manifests/base/serving/servingruntime.yaml: no local payload log (on the
    cluster KServe's logger does it); `payload_log=True` is `make serve`'s default."""
    port = free_port()
    return Server(f"civicsense V{2 if v2 else 1} w{workers}" + (" +payload log" * payload_log)
                  + suffix,
                  [str(BIN / "civicsense"), "serve", "--port", str(port), "--workers",
                   str(workers), "--model-uri", model_uri or settings.model_uri], port,
                  "/v2/health/ready", v2_body if v2 else v1_body,
                  f"/v2/models/{MODEL_NAME}/infer" if v2 else f"/v1/models/{MODEL_NAME}:predict",
                  env={**THREAD_ENV, "MLFLOW_TRACKING_URI": settings.tracking_uri,
                       "CIVICSENSE_LOG_PREDICTIONS": str(payload_log).lower(),
                       "CIVICSENSE_INFERENCE_LOG_URI": str(settings.home_dir / "bench" / "log")})


def container_server(settings: Settings) -> Server:
    return ContainerServer("civicsense container (serving image, V1)", [], free_port(),
                           "/v2/health/ready", v1_body, f"/v1/models/{MODEL_NAME}:predict",
                           settings=settings)


def mlserver_venv(bench_dir: Path) -> Path:
    """MLServer + mlserver-mlflow in a venv of their own (they pin other fastapi/uvloop)."""
    venv = bench_dir / "mlserver-venv"
    if not (venv / "bin" / "mlserver").exists():
        uv = shutil.which("uv", path=str(BIN)) or shutil.which("uv")
        if uv:
            subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
            subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                            *MLSERVER_PACKAGES], check=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *MLSERVER_PACKAGES],
                           check=True)
    return venv


def mlserver_server(bench_dir: Path, model_dir: Path, workers: int) -> Server:
    venv = mlserver_venv(bench_dir)
    root = bench_dir / f"mlserver-w{workers}"
    (root / MODEL_NAME).mkdir(parents=True, exist_ok=True)
    port = free_port()
    (root / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": workers, "debug": False}))
    (root / MODEL_NAME / "model-settings.json").write_text(json.dumps({
        "name": MODEL_NAME, "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(model_dir)}}))
    return Server(f"MLServer w{workers}", [str(venv / "bin" / "mlserver"), "start", str(root)],
                  port, f"/v2/models/{MODEL_NAME}/ready", v2_body,
                  f"/v2/models/{MODEL_NAME}/infer",
                  env={**THREAD_ENV, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}, cwd=root)


def mlflow_server(model_dir: Path, workers: int) -> Server:
    port = free_port()
    return Server(f"mlflow models serve w{workers}",
                  [str(BIN / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager",
                   "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)], port,
                  "/ping", mlflow_body, "/invocations",  # it execs `uvicorn` from PATH
                  env={**THREAD_ENV, "PATH": f"{BIN}:{os.environ['PATH']}"})


def soak(server: Server, texts: list[str], seconds: float, clients: int) -> LoadResult:
    """Concurrent load: `clients` connections, mostly single tweets and some batches of 8."""
    requests = [post(server.path, server.make_body([t])) for t in texts[:400]]
    requests += [post(server.path, server.make_body(texts[i:i + 8])) for i in range(0, 400, 40)]
    return load(server.port, requests, clients, duration=seconds)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8, help="Each throughput run.")
    parser.add_argument("--rounds", type=int, default=3, help="Measurements per contender, "
                        "in rotating order; the table gives medians.")
    parser.add_argument("--soak-seconds", type=float, default=60)
    parser.add_argument("--soak-clients", type=int, default=32)
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--container", action="store_true", help="Add the serving image as "
                        "KServe runs it (needs a Docker engine and `make images`).")
    parser.add_argument("--compare", action="append", default=[], metavar="URI",
                        help="Also measure this model (in process and served, V1 w2).")
    parser.add_argument("--out", type=Path, default=None, help="JSON results [default "
                        "$CIVICSENSE_HOME/bench/serve.json].")
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # A TERM (timeout, Ctrl-C via make) unwinds through the `finally` that stops the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = Settings(serve_threads=1)
    bench_dir = settings.home_dir / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    from civicsense.serving.loading import load_model

    model = load_model(settings.model_uri, settings)
    print(f"model {settings.model_uri} = version {model.version_tag}", flush=True)
    others = {uri: load_model(uri, settings) for uri in args.compare}
    suffix = {uri: f" · v{other.version}" for uri, other in others.items()}
    if others:
        suffix[settings.model_uri] = f" · v{model.version}"
    import mlflow

    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.location, dst_path=str(
        bench_dir / f"model-v{model.version}")))
    texts = tweets()
    results: dict[str, dict] = {}
    for uri, measured_model in {settings.model_uri: model, **others}.items():
        ceilings = [in_process(measured_model, texts, args.seconds) for _ in range(args.rounds)]
        results[f"in-process (ceiling){suffix.get(uri, '')}"] = {
            key: float(np.median([c[key] for c in ceilings])) for key in ceilings[0]} | {
                "errors": 0}
    print(results, flush=True)

    main_suffix = suffix.get(settings.model_uri, "")
    servers = [civicsense_server(settings, 1, False, suffix=main_suffix),
               civicsense_server(settings, 2, False, suffix=main_suffix),
               civicsense_server(settings, 2, True, suffix=main_suffix),
               civicsense_server(settings, 2, False, payload_log=True, suffix=main_suffix)]
    servers += [civicsense_server(settings, 2, False, model_uri=uri, suffix=suffix[uri])
                for uri in others]
    if args.container:
        servers.append(container_server(settings))
    if not args.skip_peers:
        servers += [mlserver_server(bench_dir, model_dir, 0),
                    mlserver_server(bench_dir, model_dir, 2),
                    mlflow_server(model_dir, 1), mlflow_server(model_dir, 2)]
    soak_result = None
    rounds: dict[str, list[dict]] = {}
    try:
        running = []
        for server in servers:  # all up at once (idle servers cost no CPU), measured in turns
            try:
                server.start(bench_dir)
                running.append(server)
            except Exception as error:  # noqa: BLE001 - a peer that fails is a row that says so
                results[server.name] = {"failed": str(error)}
        for turn in range(args.rounds if running else 0):
            # Each round in another order: the machine's speed drifts, no contender always
            # goes first or last.
            for server in running[turn % len(running):] + running[:turn % len(running)]:
                if "failed" in results.get(server.name, {}):
                    continue
                try:
                    if not server.alive():
                        raise RuntimeError("exited during the benchmark")
                    measured = measure(server, texts, args.seconds)
                except Exception as error:  # noqa: BLE001 - that contender's row says so
                    results[server.name] = {"failed": str(error)}
                    continue
                rounds.setdefault(server.name, []).append(measured)
                print(f"round {turn + 1}: {server.name} {measured}", flush=True)
        for name, measured in rounds.items():
            if "failed" not in results.get(name, {}):
                results[name] = {key: float(np.median([m[key] for m in measured]))
                                 for key in measured[0]} | {
                                     "errors": sum(m["errors"] for m in measured),
                                     "rounds": measured}
        soaked = next((s for s in running if s.name == f"civicsense V1 w2{main_suffix}"
                       and "failed" not in results[s.name]), None)
        if soaked is not None:
            try:
                soak_result = soak(soaked, texts, args.soak_seconds, args.soak_clients)
            except Exception as error:  # noqa: BLE001 - reported, and the exit code says so
                results["load run"] = {"failed": str(error)}
                print(f"load run failed: {error}", flush=True)
    finally:
        for server in servers:
            server.stop()

    ceiling = results[f"in-process (ceiling){main_suffix}"]["batch32_texts_per_s"]
    print("\n| contender | single tweet p50 ms | p99 ms | single req/s | batch-32 texts/s "
          "| % of in-process batch | errors |\n|---|---|---|---|---|---|---|")
    for name, row in results.items():
        if "failed" in row:
            print(f"| {name} | failed: {row['failed'][:60]} | | | | | |")
            continue
        print(f"| {name} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['single_rps']:.0f} "
              f"| {row['batch32_texts_per_s']:.0f} | "
              f"{100 * row['batch32_texts_per_s'] / ceiling:.0f}% | {row['errors']} |")
    if soak_result:
        print(f"\nload run: civicsense V1 w2{main_suffix}, {args.soak_clients} concurrent clients, "
              f"{soak_result.seconds:.0f} s: {soak_result.requests} requests, "
              f"{soak_result.errors} errors, {soak_result.requests / soak_result.seconds:.0f} "
              f"req/s, p50 {soak_result.percentile(50):.1f} ms, "
              f"p99 {soak_result.percentile(99):.1f} ms")
        results["load run"] = {"clients": args.soak_clients, "seconds": soak_result.seconds,
                               "requests": soak_result.requests, "errors": soak_result.errors,
                               "p50_ms": soak_result.percentile(50),
                               "p99_ms": soak_result.percentile(99)}
    out = args.out or bench_dir / "serve.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")
    load_failed = "failed" in results.get("load run", {})
    return 1 if load_failed or (soak_result and soak_result.errors) else 0


if __name__ == "__main__":
    sys.exit(main())
