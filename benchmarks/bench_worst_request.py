"""`python benchmarks/bench_worst_request.py --url URL`: latency of small requests alone and
beside the worst valid request (max_request_chars of max-length adversarial texts: 32 texts of
2,000 emoji each by default), against a running server (`civicsense serve` / `make serve`).

Prints the worst request's status and time, and the median and p95 of a one-text V1 request
sent back to back, first alone, then while worst requests are sent one after another."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

import requests


def small_latencies(url: str, count: int) -> list[float]:
    times = []
    with requests.Session() as session:
        for _ in range(count):
            start = time.perf_counter()
            response = session.post(url, json={"instances": ["good news about the reform"]},
                                    timeout=60)
            response.raise_for_status()
            times.append(1000 * (time.perf_counter() - start))
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    return (f"median {statistics.median(ordered):.1f} ms, p95 "
            f"{ordered[int(0.95 * (len(ordered) - 1))]:.1f} ms ({len(ordered)} requests)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", default="civicsense-sentiment")
    # The default server's worst valid request: max_request_chars (64,000) of 2,000-emoji texts.
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args(argv)
    url = f"{args.url}/v1/models/{args.model}:predict"
    worst = json.dumps({"instances": ["😀" * args.chars] * args.batch})
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    small_latencies(url, 5)
    print("small request alone:        ", summary(small_latencies(url, args.count)))
    stop, results = threading.Event(), []

    def send_worst():
        while not stop.is_set():
            start = time.perf_counter()
            response = requests.post(url, data=worst, timeout=120,
                                     headers={"content-type": "application/json"})
            results.append((response.status_code, time.perf_counter() - start))

    thread = threading.Thread(target=send_worst)
    thread.start()
    time.sleep(0.5)
    beside = small_latencies(url, args.count)
    stop.set()
    thread.join()
    print("small request beside worst: ", summary(beside))
    for status, seconds in results:
        print(f"worst request ({args.batch} x {args.chars} emoji): {status} in {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
