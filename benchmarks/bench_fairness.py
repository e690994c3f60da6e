"""`make bench-fairness`: does one heavy client starve the others? A well-behaved client's
single-text latency against `civicsense serve` (2 model processes, 127.0.0.1), first with the
server otherwise idle, then beside a heavy sender looping the largest valid request (32 texts of
2,000 emoji each) on 8 connections.

- The two clients are distinct TCP peers: the well-behaved one connects from 127.0.0.2, the
  heavy one from 127.0.0.3 (Linux routes all of 127.0.0.0/8 to loopback). The server keys their
  budgets on those real addresses: no trusted proxy, no forwarded header, no credential.
- The well-behaved client sends one text at a time at a steady rate (--light-rate, 10 a second by
  default: about a tenth of a core of model time, within the default budget), on one keep-alive
  connection. The heavy sender runs in a process of its own (its loop would otherwise delay the
  well-behaved client's), sends as fast as it is answered and ignores Retry-After.
- Both phases last --seconds (25 by default); the well-behaved client is measured from the
  moment the heavy sender starts. The model is the champion of $CIVICSENSE_HOME (--model-uri for
  another). The server runs with this environment's CIVICSENSE_* settings (e.g.
  CIVICSENSE_SERVE_CLIENT_MS_PER_SECOND=0 to see it without budgets).

Prints the p50 and p99 of both phases, their ratio (target: p50 within 2x of idle), and what the
heavy sender got (200s, 429s, others); writes them to $CIVICSENSE_HOME/bench/fairness.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from bench_serve import BIN, MODEL_NAME, THREAD_ENV, free_port, post, read_response, tweets

from civicsense.settings import Settings

LIGHT_ADDRESS, HEAVY_ADDRESS = "127.0.0.2", "127.0.0.3"
PATH = f"/v1/models/{MODEL_NAME}:predict"
REQUEST_TIMEOUT = 60.0


def v1_request(texts: list[str]) -> bytes:
    # json.dumps escapes each emoji as a surrogate pair (12 bytes): the attack's 768 KB body.
    return post(PATH, json.dumps({"instances": texts}).encode())


async def _connect(port: int, source: str):
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def light_client(port: int, texts: list[str], rate: float, seconds: float,
                       source: str = LIGHT_ADDRESS) -> dict:
    """One text at a time, `rate` a second, for `seconds`: latencies of the 200s, and every
    status (or error) seen."""
    requests = [v1_request([text]) for text in texts[:500]]
    latencies: list[float] = []
    statuses: Counter = Counter()
    reader, writer = await _connect(port, source)
    started = time.perf_counter()
    sent = 0
    try:
        while (now := time.perf_counter()) - started < seconds:
            due = started + sent / rate
            if due > now:
                await asyncio.sleep(due - now)
            raw = requests[sent % len(requests)]
            sent += 1
            begun = time.perf_counter()
            try:
                writer.write(raw)
                status, _ = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
                statuses[type(error).__name__] += 1
                writer.close()
                reader, writer = await _connect(port, source)
                continue
            statuses[status] += 1
            if status == 200:
                latencies.append((time.perf_counter() - begun) * 1000)
    finally:
        writer.close()
    return {"latencies_ms": latencies, "statuses": dict(statuses), "sent": sent}


async def _heavy(port: int, body: bytes, connections: int, seconds: float) -> dict:
    statuses: Counter = Counter()
    stop_at = time.perf_counter() + seconds

    async def connection() -> None:
        reader, writer = await _connect(port, HEAVY_ADDRESS)
        try:
            while time.perf_counter() < stop_at:
                try:
                    writer.write(body)
                    status, _ = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
                    statuses[status] += 1
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
                    statuses[type(error).__name__] += 1
                    writer.close()
                    reader, writer = await _connect(port, HEAVY_ADDRESS)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return dict(statuses)


def heavy_sender(port: int, texts: int, chars: int, connections: int, seconds: float,
                 results) -> None:
    """The heavy sender's process: the largest valid request in a loop on `connections`
    connections for `seconds`, Retry-After ignored; its statuses and its own CPU seconds go to
    `results`."""
    body = v1_request(["😀" * chars] * texts)
    statuses = asyncio.run(_heavy(port, body, connections, seconds))
    results.put((statuses, time.process_time()))


def server_cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of the server's HTTP process and of the rest of its session (the
    model processes and their fork server), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = {"HTTP process": 0.0, "model processes": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) != server_pid:  # the session id: the server leads its own
            continue
        name = "HTTP process" if stat.parent.name == str(server_pid) else "model processes"
        cpu[name] += (int(fields[11]) + int(fields[12])) / ticks
    return cpu


def cpu_during(server_pid: int, before: dict[str, float], client_before: float) -> dict:
    after = server_cpu_seconds(server_pid)
    return {name: round(after[name] - before[name], 2) for name in after} | {
        "well-behaved client": round(time.process_time() - client_before, 2)}


def percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "count": 0}
    return {"p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)), "count": len(latencies)}


def start_server(settings: Settings, model_uri: str, workers: int, port: int, log: Path,
                 timeout: float) -> subprocess.Popen:
    env = {**os.environ, **THREAD_ENV, "MLFLOW_TRACKING_URI": settings.tracking_uri,
           "CIVICSENSE_LOG_PREDICTIONS": "false"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BIN / "civicsense"), "serve", "--port", str(port), "--workers", str(workers),
             "--model-uri", model_uri], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}); see {log}")
        try:
            status, _ = asyncio.run(_get(port, "/v2/health/ready"))
            if status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.5)
    stop_server(process)
    raise RuntimeError(f"the server was not ready in {timeout:.0f} s; see {log}")


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        return await asyncio.wait_for(read_response(reader), 10)
    finally:
        writer.close()


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default=None, help="What the server loads [default: the "
                        "champion of $CIVICSENSE_HOME].")
    parser.add_argument("--workers", type=int, default=2, help="Model processes.")
    parser.add_argument("--seconds", type=float, default=25, help="Each phase.")
    parser.add_argument("--light-rate", type=float, default=10, help="The well-behaved "
                        "client's requests per second (one text each).")
    parser.add_argument("--heavy-connections", type=int, default=8)
    parser.add_argument("--heavy-texts", type=int, default=32)
    parser.add_argument("--heavy-chars", type=int, default=2000, help="Emoji per heavy text.")
    parser.add_argument("--ready-timeout", type=float, default=300)
    parser.add_argument("--out", type=Path, default=None, help="JSON results [default "
                        "$CIVICSENSE_HOME/bench/fairness.json].")
    args = parser.parse_args(argv)

    # A TERM (timeout, Ctrl-C via make) unwinds through the `finally` that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = Settings(serve_threads=1)
    bench_dir = settings.home_dir / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    model_uri = args.model_uri or settings.model_uri
    texts = tweets()
    port = free_port()
    load_before = os.getloadavg()[0]
    print(f"load average {load_before:.2f} on {os.cpu_count()} cores; starting the server "
          f"({model_uri}, {args.workers} model processes) …", flush=True)
    server = start_server(settings, model_uri, args.workers, port,
                          bench_dir / "fairness-server.log", args.ready_timeout)
    try:
        asyncio.run(light_client(port, texts, args.light_rate, 2))  # warm up
        cpu_before, client_before = server_cpu_seconds(server.pid), time.process_time()
        idle = asyncio.run(light_client(port, texts, args.light_rate, args.seconds))
        idle["cpu_seconds"] = cpu_during(server.pid, cpu_before, client_before)
        print(f"idle: {percentiles(idle['latencies_ms'])} {idle['statuses']}", flush=True)
        cpu_before, client_before = server_cpu_seconds(server.pid), time.process_time()
        results = multiprocessing.get_context("spawn").Queue()
        heavy = multiprocessing.get_context("spawn").Process(
            target=heavy_sender, args=(port, args.heavy_texts, args.heavy_chars,
                                       args.heavy_connections, args.seconds, results))
        heavy.start()
        beside = asyncio.run(light_client(port, texts, args.light_rate, args.seconds))
        heavy_statuses, heavy_cpu = results.get(timeout=args.seconds + 2 * REQUEST_TIMEOUT)
        beside["cpu_seconds"] = cpu_during(server.pid, cpu_before, client_before) | {
            "heavy sender": round(heavy_cpu, 2)}
        heavy.join(30)
    finally:
        stop_server(server)

    idle_figures, beside_figures = (percentiles(idle["latencies_ms"]),
                                    percentiles(beside["latencies_ms"]))
    ratio = beside_figures["p50_ms"] / idle_figures["p50_ms"]
    light_failures = sum(n for status, n in beside["statuses"].items() if status != 200)
    summary = {
        "model_uri": model_uri, "workers": args.workers, "seconds_per_phase": args.seconds,
        "light_rate_per_s": args.light_rate, "heavy_connections": args.heavy_connections,
        "heavy_request": f"{args.heavy_texts} x {args.heavy_chars} emoji",
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
        "idle": idle_figures | {"statuses": idle["statuses"],
                                "cpu_seconds": idle["cpu_seconds"]},
        "beside_heavy": beside_figures | {"statuses": beside["statuses"],
                                          "cpu_seconds": beside["cpu_seconds"]},
        "p50_ratio": ratio, "heavy_statuses": heavy_statuses,
        "budget_ms_per_second": settings.serve_client_ms_per_second,
        "budget_burst_ms": settings.serve_client_burst_ms,
    }
    print(f"\n| well-behaved client, one text at {args.light_rate:g}/s | p50 ms | p99 ms | "
          f"answered | not 200 |\n|---|---:|---:|---:|---:|")
    for name, figures, run in (("server otherwise idle", idle_figures, idle),
                               (f"beside the heavy sender ({args.heavy_connections} "
                                "connections)", beside_figures, beside)):
        failures = sum(n for status, n in run["statuses"].items() if status != 200)
        print(f"| {name} | {figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} | "
              f"{figures['count']} | {failures} |")
    heavy_total = sum(heavy_statuses.values())
    print(f"\np50 beside the heavy sender / idle: {ratio:.2f}x (target: at most 2x) — "
          f"{'met' if ratio <= 2 and not light_failures else 'NOT met'}")
    print(f"heavy sender ({args.heavy_texts} x {args.heavy_chars} emoji, "
          f"{args.heavy_connections} connections, {args.seconds:g} s): {heavy_total} requests, "
          + ", ".join(f"{status}: {n}" for status, n in sorted(heavy_statuses.items(),
                                                               key=lambda kv: str(kv[0]))))
    for name, run in (("idle", idle), ("beside the heavy sender", beside)):
        print(f"CPU seconds {name}: " + ", ".join(f"{process} {seconds:.2f}" for process, seconds
                                                   in run["cpu_seconds"].items()))
    print(f"load average {summary['load_average_before']:.2f} before, "
          f"{summary['load_average_after']:.2f} after")
    out = args.out or bench_dir / "fairness.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    print(f"results: {out}")
    return 1 if light_failures else 0


if __name__ == "__main__":
    sys.exit(main())
