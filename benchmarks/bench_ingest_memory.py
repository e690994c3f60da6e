"""Ingest's memory on a hostile file: a generated one-line file of N GiB (default 1) beside a
small valid SemEval file, ingested by `civicsense ingest` in a child process; prints the child's
peak RSS, the time and the quarantine. The file is written to /tmp and removed afterwards.

    .venv/bin/python benchmarks/bench_ingest_memory.py [--gib 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

CIVICSENSE = Path(sys.executable).parent / "civicsense"
VALID = "264183816548130816\tpositive\tthe reform passed, great day\n"


def write_one_line_file(path: Path, gib: float) -> int:
    """`id TAB label TAB` then gib GiB of 'a' and no newline, written in 8 MiB blocks."""
    block = b"a" * (8 << 20)
    total = int(gib * (1 << 30))
    with path.open("wb") as handle:
        handle.write(b"1\tneutral\t")
        written = 0
        while written < total:
            handle.write(block[: min(len(block), total - written)])
            written += min(len(block), total - written)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-", dir="/tmp") as folder:
        data = Path(folder) / "data"
        data.mkdir()
        (data / "valid.txt").write_text(VALID)
        size = write_one_line_file(data / "huge.txt", args.gib)
        out, quarantine = Path(folder) / "s.parquet", Path(folder) / "q.parquet"
        started = time.perf_counter()
        done = subprocess.run([str(CIVICSENSE), "ingest", "--data", str(data), "--out", str(out),
                               "--quarantine", str(quarantine)], capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        quarantined = pd.read_parquet(quarantine) if quarantine.exists() else pd.DataFrame()
        print(json.dumps({
            "file_bytes": size, "exit_code": done.returncode, "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak_mb, 1),
            "traceback": "Traceback" in done.stderr,
            "quarantined": quarantined[["source", "reason"]].to_dict("records"),
            "accepted": len(pd.read_parquet(out)) if out.exists() else 0}, indent=2))


if __name__ == "__main__":
    main()
