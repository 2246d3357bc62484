"""The serving state under a flood of answers: its size against state_max_bytes.

Usage:
    python benchmarks/bench_state.py [--duration 60] [--max-bytes 33554432]
        [--clients 8] [--inputs 256] [--out FILE]

Trains and registers a tiny model in a temporary folder (the toy project of the
tests, tests/conftest.py), starts `dlforge serve` on loopback over it with
``state_max_bytes=--max-bytes`` (its state, logs and metrics in that folder), and
runs --clients threads that each send ``POST /predict`` with --inputs short texts,
one request after another, for --duration seconds: the heaviest load a client is
allowed (max_inputs=256), every answer kept for feedback. Every second it records
the size of state.db with its WAL. Then it gives feedback for the newest answer
(taken) and for the first (dropped: 404, as for an expired one).

Reports answers/s (inputs answered), requests/s, errors, bytes per answer kept
while the state was under the bound, the size over time, its largest and last
values against the bound, and whether the server said once that it drops answers
(`state_max_bytes=` in its log). Target: the state never passes the bound.
Writes benchmarks/results/state.json (--out).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORDS = ["guitar song album", "rain umbrella forecast", "pay my bill", "flight to paris",
         "set an alarm", "what time is it", "play some jazz", "cancel my order"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--max-bytes", type=int, default=32 * 2**20,
                        help="state_max_bytes of the server")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--inputs", type=int, default=256, help="texts per request")
    parser.add_argument("--out", type=Path, default=RESULTS / "state.json")
    return parser.parse_args(argv)


def release_model(root: Path) -> str:
    """Train, evaluate and register the tests' toy model under ``root``; its name."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import make_project

    project = make_project(root, root / "mlruns")
    project.release()
    return project.model_name


@contextlib.contextmanager
def serving(root: Path, model: str, max_bytes: int):
    """`dlforge serve` over ``model`` on a free loopback port; (port, log file)."""
    from tests.services import free_port

    port, log = free_port(), root / "serve.log"
    command = [sys.executable, "-m", "dlforge", "serve", f"port={port}", f"paths.root={root}",
               f"tracking.tracking_uri=sqlite:///{root / 'mlruns' / 'mlflow.db'}",
               f"models={{{model}: {{}}}}", f"default_model={model}", "accelerator=cpu",
               "api_key=null", f"state_max_bytes={max_bytes}"]
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=root, stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        _wait_ready(port, server, log)
        yield port, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _wait_ready(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline, pause = time.monotonic() + 180, threading.Event()
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"dlforge serve exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            if call(port, "GET", "/health/ready")[0] == 200:
                return
        pause.wait(0.5)
    raise SystemExit(f"dlforge serve was not ready in 180 s:\n{log.read_text()[-3000:]}")


def call(port: int, method: str, path: str, body: dict | None = None,
         conn: http.client.HTTPConnection | None = None) -> tuple[int, dict]:
    """One request (on ``conn`` when given, kept alive); status and JSON body."""
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, data, {"Content-Type": "application/json"})
    response = conn.getresponse()
    raw = response.read()
    return response.status, json.loads(raw) if raw.startswith(b"{") else {}


def state_bytes(path: Path) -> int:
    """The state file with its WAL."""
    return sum(p.stat().st_size for p in (path, path.with_name(f"{path.name}-wal"))
               if p.exists())


class Load:
    """What the clients saw: answers, requests, errors, the first and last request ids."""

    def __init__(self) -> None:
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.answers = self.requests = self.errors = 0
        self.first = self.last = None
        self.sample_error = ""

    def client(self, port: int, k: int, inputs: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        texts = [f"{WORDS[(k + i) % len(WORDS)]} {i}" for i in range(inputs)]
        while not self.stop.is_set():
            try:
                status, body = call(port, "POST", "/predict", {"inputs": texts}, conn)
            except OSError as err:
                status, body = 0, {"error": repr(err)}
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with self.lock:
                if status != 200:
                    self.errors += 1
                    self.sample_error = self.sample_error or f"{status}: {str(body)[:200]}"
                    continue
                self.requests += 1
                self.answers += len(body["predictions"])
                self.first = self.first or body
                self.last = body


def run_load(port: int, state: Path, args) -> tuple[Load, list[dict], float]:
    """The clients for --duration seconds, the state's size sampled every second."""
    load, samples = Load(), []
    clients = [threading.Thread(target=load.client, args=(port, k, args.inputs), daemon=True)
               for k in range(args.clients)]
    started = time.perf_counter()
    for thread in clients:
        thread.start()
    while (elapsed := time.perf_counter() - started) < args.duration:
        with load.lock:
            answers = load.answers
        samples.append({"seconds": round(elapsed, 1), "state_bytes": state_bytes(state),
                        "answers": answers})
        load.stop.wait(1.0)
    load.stop.set()
    for thread in clients:
        thread.join(timeout=60)
    elapsed = time.perf_counter() - started
    samples.append({"seconds": round(elapsed, 1), "state_bytes": state_bytes(state),
                    "answers": load.answers})
    return load, samples, elapsed


def bytes_per_answer(samples: list[dict], max_bytes: int) -> float | None:
    """Growth per answer until the state first came near the bound (nothing dropped)."""
    last = None
    for sample in samples:
        if sample["state_bytes"] >= max_bytes * 3 // 4:
            break
        last = sample if sample["answers"] else last
    if last is None:
        return None
    return round((last["state_bytes"] - samples[0]["state_bytes"]) / last["answers"], 1)


def feedback_checks(port: int, load: Load) -> dict:
    """Feedback for the newest answer (kept) and for the first (dropped)."""
    out = {}
    for name, body in (("newest", load.last), ("first", load.first)):
        if body is None:
            continue
        label = body["predictions"][-1]["label"]
        status, answer = call(port, "POST", "/feedback", {
            "request_id": body["request_id"], "label": label,
            "index": len(body["predictions"]) - 1})
        out[name] = {"status": status, "detail": str(answer.get("detail", ""))[:160]}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-state-") as folder:
        root = Path(folder)
        print("training and registering the toy model ...", flush=True)
        model = release_model(root)
        state = root / "outputs" / "serve" / "state.db"
        with serving(root, model, args.max_bytes) as (port, log):
            print(f"dlforge serve on port {port}: {args.clients} clients x {args.inputs} "
                  f"inputs for {args.duration:g} s, state_max_bytes={args.max_bytes}",
                  flush=True)
            load, samples, elapsed = run_load(port, state, args)
            feedback = feedback_checks(port, load)
            told = log.read_text().count(f"reached state_max_bytes={args.max_bytes}")
    largest = max(s["state_bytes"] for s in samples)
    report = {
        "benchmark": "bench_state", "duration_s": round(elapsed, 1),
        "clients": args.clients, "inputs_per_request": args.inputs,
        "state_max_bytes": args.max_bytes, "answers": load.answers,
        "answers_per_s": round(load.answers / elapsed, 1),
        "requests_per_s": round(load.requests / elapsed, 2), "errors": load.errors,
        **({"sample_error": load.sample_error} if load.sample_error else {}),
        "bytes_per_answer": bytes_per_answer(samples, args.max_bytes),
        "largest_state_bytes": largest, "last_state_bytes": samples[-1]["state_bytes"],
        "under_bound": largest <= args.max_bytes, "pruning_logged": told,
        "feedback": feedback, "samples": samples, "cpu_count": os.cpu_count(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for s in samples[::max(1, len(samples) // 12)] + samples[-1:]:
        print(f"{s['seconds']:>6.1f} s  {s['state_bytes']:>11,d} bytes  "
              f"{s['answers']:>9,d} answers")
    print(f"answers/s {report['answers_per_s']}, requests/s {report['requests_per_s']}, "
          f"errors {load.errors}; state largest {largest:,d} / last "
          f"{report['last_state_bytes']:,d} bytes of {args.max_bytes:,d} "
          f"({'under' if report['under_bound'] else 'OVER'} the bound); "
          f"{report['bytes_per_answer']} bytes per answer; feedback {feedback}; "
          f"pruning logged {told} time(s). Wrote {args.out}")
    return 0 if report["under_bound"] else 1


if __name__ == "__main__":
    sys.exit(main())
