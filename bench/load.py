"""Load benchmark (not a test): N concurrent ``/extract`` clients against a real app on loopback; prints JSON.

    python bench/load.py [--clients 128] [--seconds 60] [--single-seconds 20] [--url http://127.0.0.1:7860]

Without ``--url`` it starts ``python app.py`` on a free loopback port with a throw-away data folder
(and stops it afterwards). It measures one client alone first, then ``--clients`` clients for
``--seconds``, each posting the shared photos in turn; it reports throughput (requests/s), p50/p99
latency, errors by status, and the ratio of the concurrent throughput to one client's (the request
batcher's point: ≥ 1.3). Bounded: every phase stops on time; requests time out after 120 s.

Back-pressure (issue 22): the share of requests served, the share answered 503 with ``Retry-After`` (a client
then waits what it says, as a well-behaved one does), p50/p99 of the served requests, and ``/health``'s p50/p99
polled every 100 ms during the concurrent phase (goal: p99 <= 200 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_app(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    from tests.apphelpers import free_port, wait_healthy

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")],
        cwd=ROOT,
        env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "DATA_DIR": str(data_dir), "LOG_DIR": str(data_dir / "logs"), **env},
        stdout=open(data_dir / "app.out", "ab"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, seconds=300, process=process)
    return process, base


def drive(base: str, photos: list[tuple[str, bytes]], clients: int, seconds: float) -> dict:
    """``clients`` threads posting photos back to back until ``seconds`` pass; every request is counted. A 503 with
    Retry-After makes that client wait as long (at most until the phase ends); /health is polled meanwhile."""
    latencies: list[float] = []
    health_ms: list[float] = []
    statuses: Counter = Counter()
    retry_after: Counter = Counter()
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(number: int) -> None:
        session = requests.Session()
        index = number
        while time.perf_counter() < stop_at:
            name, data = photos[index % len(photos)]
            index += clients
            start = time.perf_counter()
            wait = 0.0
            try:
                response = session.post(f"{base}/extract", files={"image": (name, data, "image/jpeg")}, data={"model_name": "default"}, timeout=120)
                status = str(response.status_code)
                if response.status_code == 200 and len(response.json().get("feature", [])) != 512 and response.json().get("faces_found", 0):
                    status = "bad_body"
                if response.status_code == 503 and response.headers.get("Retry-After", "").isdigit():
                    wait = float(response.headers["Retry-After"])
                    with lock:
                        retry_after[response.headers["Retry-After"]] += 1
            except requests.RequestException as error:
                status = type(error).__name__
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                statuses[status] += 1
                if status == "200":
                    latencies.append(elapsed)
            if wait:
                time.sleep(max(0.0, min(wait, stop_at - time.perf_counter())))

    def poll_health() -> None:
        session = requests.Session()
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                ok = session.get(f"{base}/health", timeout=60).status_code == 200
            except requests.RequestException:
                ok = False
            health_ms.append((time.perf_counter() - start) * 1000 if ok else float("inf"))
            time.sleep(0.1)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)] + [threading.Thread(target=poll_health)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ok = statuses.get("200", 0)
    total = sum(statuses.values())

    def percentile(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)), 1) if values else None

    return {
        "clients": clients,
        "wall_s": round(wall, 1),
        "requests": total,
        "ok": ok,
        "share_served": round(ok / total, 3) if total else None,
        "share_503_retry_after": round(sum(retry_after.values()) / total, 3) if total else None,
        "retry_after_s": dict(retry_after),
        "errors": {status: count for status, count in statuses.items() if status != "200"},
        "throughput_rps": round(ok / wall, 2),
        "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
        "health_ms": {"polls": len(health_ms), "p50": percentile(health_ms, 50), "p99": percentile(health_ms, 99), "max": percentile(health_ms, 100)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running app (default: start one on loopback)")
    parser.add_argument("--photos", default=str(ROOT.parent / "shared" / "data" / "faces"))
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--single-seconds", type=float, default=20.0)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the started app (e.g. BATCHER_ENABLED=false)")
    args = parser.parse_args()
    photos = [(path.name, path.read_bytes()) for path in sorted(Path(args.photos).glob("img*.jpg"))]
    if not photos:
        sys.exit(f"no photos under {args.photos}")
    env = dict(item.split("=", 1) for item in args.env)
    process = None
    with tempfile.TemporaryDirectory(prefix="frood-load-") as folder:
        try:
            base = args.url
            if base is None:
                process, base = start_app(Path(folder), env)
            drive(base, photos, 1, 3.0)  # warm-up
            single = drive(base, photos, 1, args.single_seconds)
            concurrent = drive(base, photos, args.clients, args.seconds)
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    report = {
        "app": base if args.url else "python app.py on loopback",
        "env": env,
        "photos": len(photos),
        "cpu_count": os.cpu_count(),
        "one_client": single,
        "concurrent": concurrent,
        "throughput_ratio": round(concurrent["throughput_rps"] / single["throughput_rps"], 2) if single["throughput_rps"] else None,
        "targets": {"errors": "only 503 with Retry-After", "throughput_ratio": 1.3, "health_p99_ms": 200},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
