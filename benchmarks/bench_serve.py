"""Serving throughput and latency: `dlforge serve` against MLflow's server and plain FastAPI.

Usage:
    python benchmarks/bench_serve.py [--duration 10] [--warmup 2] [--concurrency 1,16,64]
        [--only a,b,c,d,g] [--serve-args "max_batch_size=32 batch_timeout=0.002"]
        [--torch-threads 1] [--baseline-handler sync|async] [--out FILE]

All on the same registered model, ``models:/intent@champion`` in the store of
``tracking.tracking_uri`` (run `make run` first):

    a  dlforge serve          LitServe, POST /predict {"inputs": [text], "top_k": 1}
    b  mlflow models serve    --env-manager local, POST /invocations
                              {"inputs": [text], "params": {"top_k": 1}}
    c  FastAPI + uvicorn      one worker, one forward pass per request
                              (benchmarks/serve_baseline.py)
    d  in-process             predict(64 texts) in a loop: the ceiling, as
                              requests/s of one text each
    g  load generator alone   against a trivial raw-asyncio server: its own ceiling

For a-c and g, a closed-loop load generator (asyncio on uvloop, raw HTTP/1.1
keep-alive, one connection per client) runs N clients that each send one
request, wait for the answer and send the next; one test-split text per
request. Warm up, then count the answers that arrive within --duration
seconds: requests/s, p50/p99 latency, errors (non-200 or broken connections),
the CPU (in cores) that the server's processes and the generator used, and
the server's CPU milliseconds per answer (steadier than requests/s when other
work shares the cores). --torch-threads sets OMP_NUM_THREADS for every server.
Each server runs in its own process group, which is killed afterwards
(SIGTERM, then SIGKILL). `dlforge serve` writes its prediction log, state and
metrics to a temporary folder, not to outputs/. The generator shares the machine with the
server: read the figures with the CPU columns. Targets at concurrency 64:
a/b >= 2x and a/c >= 1.5x requests/s, p99 of a < 100 ms.
Prints a table and writes benchmarks/results/serve.json (--out).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODEL_URI = "models:/intent@champion"
TARGETS = {"a": "dlforge serve", "b": "mlflow models serve", "c": "fastapi+uvicorn",
           "d": "in-process batch 64", "g": "generator ceiling"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
# What `dlforge serve` writes (conf/serve.yaml): sent to a temporary folder, not outputs/
WRITTEN = {"log_dir": "predictions", "state_path": "state.db", "metrics_dir": "metrics"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--concurrency", default="1,16,64", help="clients, comma-separated")
    parser.add_argument("--only", default="a,b,c,d,g", help="targets, comma-separated")
    parser.add_argument("--serve-args", default="", help="Hydra overrides for `dlforge serve`")
    parser.add_argument("--baseline-handler", choices=("sync", "async"), default="sync",
                        help="FastAPI endpoint of c: def (threadpool) or async def")
    parser.add_argument("--torch-threads", type=int,
                        help="OMP_NUM_THREADS of every server, torch threads of d "
                             "(default: torch's default, one per core)")
    parser.add_argument("--start-timeout", type=float, default=180.0,
                        help="seconds a server may take to answer its health check")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.only = [t.strip() for t in args.only.split(",")]
    unknown = set(args.only) - set(TARGETS)
    if unknown:
        parser.error(f"--only: unknown targets {sorted(unknown)} (use {','.join(TARGETS)})")
    return args


# --- inputs and the model ----------------------------------------------------------------

def load_texts(limit: int = 2000) -> list[str]:
    """Test-split texts of the snapshot in outputs/intent/snapshot.json (or the raw CSVs)."""
    import pyarrow.parquet as pq

    snapshot = json.loads((ROOT / "outputs" / "intent" / "snapshot.json").read_text())
    test = ROOT / snapshot["path"] / "test.parquet"
    if test.is_file():
        table = pq.read_table(test)
        column = "utterance" if "utterance" in table.column_names else table.column_names[1]
        return [str(t) for t in table.column(column).to_pylist()[:limit]]
    import csv

    texts = []
    for path in sorted((ROOT / "data" / "raw" / "clinc150").glob("*.csv")):
        with path.open(newline="") as handle:
            texts += [row[0] for row in csv.reader(handle) if row]
    return texts[:limit]


def fetch_model() -> tuple[Path, str, str, list[str]]:
    """(package folder, version, absolute tracking URI) of MODEL_URI, fetched as serve does,
    and the keys of conf/serve.yaml that name files `dlforge serve` writes."""
    import mlflow

    from dlforge.core.config import compose
    from dlforge.core.tracking import connect
    from dlforge.registry.fetch import fetch_package
    from dlforge.stages.serve import server_settings

    cfg = compose("serve", [])
    settings = server_settings(cfg)
    connect(settings.tracking_uri)
    folder, _, version = fetch_package(mlflow.MlflowClient(), MODEL_URI,
                                       Path(settings.cache_dir))
    return folder, version, settings.tracking_uri, [k for k in WRITTEN if k in cfg]


def measure_inprocess(folder: Path, texts: list[str], warmup: float, duration: float,
                      threads: int | None) -> dict:
    """d: texts/s of predict(64 texts), one text per 'request'; latency is per batch."""
    import torch

    from dlforge.models.package import load_package

    if threads:
        torch.set_num_threads(threads)
    model = load_package(folder)
    batches = [texts[i:i + 64] for i in range(0, len(texts) - 63, 64)]
    deadline, i = time.perf_counter() + warmup, 0
    while time.perf_counter() < deadline:
        model.predict(batches[i % len(batches)], top_k=1)
        i += 1
    seconds, started, texts_done = [], time.perf_counter(), 0
    while time.perf_counter() - started < duration:
        t0 = time.perf_counter()
        model.predict(batches[i % len(batches)], top_k=1)
        seconds.append(time.perf_counter() - t0)
        texts_done, i = texts_done + 64, i + 1
    elapsed = time.perf_counter() - started
    return {"rps": round(texts_done / elapsed, 1), "threads": torch.get_num_threads(),
            "batch_p50_ms": _ms(seconds, 50),
            "batch_p99_ms": _ms(seconds, 99), "errors": 0, "requests": texts_done}


# --- servers -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_cpu(pgid: int) -> dict[int, tuple[str, float]]:
    """pid -> (command, CPU seconds) of the live processes in process group ``pgid``."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out[int(entry.name)] = (cmd.strip()[-90:], (int(fields[11]) + int(fields[12]))
                                    / CLK_TCK)
    return out


@contextmanager
def running(name: str, command: list[str], port: int, health: str, timeout: float,
            env: dict | None = None):
    """Start ``command`` in its own process group; yield its pgid once ``health`` answers 200;
    then kill the whole group (SIGTERM, then SIGKILL) and check that nothing survived."""
    with tempfile.TemporaryFile("w+") as output:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        try:
            _wait_ready(name, proc, port, health, timeout, output)
            yield proc.pid
        finally:
            _stop_group(name, proc)


def _wait_ready(name, proc, port, health, timeout, output) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output.seek(0)
            raise SystemExit(f"{name} exited ({proc.returncode}) before it was ready:\n"
                             f"{output.read()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", health)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    output.seek(0)
    raise SystemExit(f"{name}: no 200 from GET {health} within {timeout:.0f} s "
                     f"(--start-timeout):\n{output.read()[-3000:]}")


def _stop_group(name: str, proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, so that it does not count as alive
            if not group_cpu(proc.pid):
                return
            time.sleep(0.2)
    raise SystemExit(f"{name}: processes of group {proc.pid} survived SIGKILL: "
                     f"{group_cpu(proc.pid)}")


# --- the load generator ------------------------------------------------------------------

def post(path: str, port: int, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server keeps the connection) of one HTTP/1.1 response."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    status = int(head[9:12])
    if b"transfer-encoding: chunked" in head:
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        at = head.find(b"content-length:")
        length = int(head[at + 15:head.index(b"\r\n", at)]) if at >= 0 else 0
        body = await reader.readexactly(length)
    return status, body, b"connection: close" not in head


class Load:
    """Shared state of one closed-loop run: the measuring window and what it saw."""

    def __init__(self) -> None:
        self.measuring = self.stop = False
        self.latencies: list[float] = []
        self.errors = 0
        self.sample_error = ""


async def _client(port: int, requests: list[bytes], offset: int, load: Load) -> None:
    reader = writer = None
    i = offset
    while not load.stop:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.perf_counter()
            writer.write(requests[i % len(requests)])
            status, body, keep = await _response(reader)
            if not keep:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
            status, body, writer = 0, repr(err).encode(), None
            await asyncio.sleep(0.01)
        if load.measuring:
            if status == 200:
                load.latencies.append(time.perf_counter() - started)
            else:
                load.errors += 1
                load.sample_error = load.sample_error or f"{status}: {body[:200]!r}"
        i += 1
    if writer is not None:
        writer.close()


async def _closed_loop(port, requests, concurrency, warmup, duration) -> dict:
    load = Load()
    step = max(1, len(requests) // concurrency)
    clients = [asyncio.create_task(_client(port, requests, k * step, load))
               for k in range(concurrency)]
    await asyncio.sleep(warmup)
    cpu0, t0 = _self_cpu(), time.perf_counter()
    load.measuring = True
    await asyncio.sleep(duration)
    load.measuring = False
    elapsed, gen_cpu = time.perf_counter() - t0, _self_cpu() - cpu0
    load.stop = True
    _, pending = await asyncio.wait(clients, timeout=30)
    for task in pending:  # a client stuck on a server that stopped answering
        task.cancel()
    return {"rps": round(len(load.latencies) / elapsed, 1), "p50_ms": _ms(load.latencies, 50),
            "p99_ms": _ms(load.latencies, 99), "errors": load.errors,
            "requests": len(load.latencies), "gen_cpu": round(gen_cpu / elapsed, 2),
            **({"sample_error": load.sample_error} if load.sample_error else {})}


def closed_loop(port: int, requests: list[bytes], concurrency: int, warmup: float,
                duration: float, pgid: int | None) -> dict:
    """Run the load; add the server group's CPU (cores) over the run, per process too."""
    import uvloop

    before = group_cpu(pgid) if pgid else {}
    started = time.perf_counter()
    result = uvloop.run(_closed_loop(port, requests, concurrency, warmup, duration))
    elapsed = time.perf_counter() - started  # warmup included: CPU is read around the run
    if pgid:
        after = group_cpu(pgid)
        per = {f"{pid} {cmd}": round((s - before.get(pid, ("", 0.0))[1]) / elapsed, 2)
               for pid, (cmd, s) in after.items()}
        result["server_cpu"] = round(sum(per.values()), 2)
        # CPU per answer: steadier than requests/s when other work shares the cores
        result["cpu_ms_per_request"] = round(result["server_cpu"] * 1000 / result["rps"], 2) \
            if result["rps"] else None
        result["server_cpu_by_process"] = {k: v for k, v in per.items() if v >= 0.01}
    return result


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ms(seconds: list[float], q: int) -> float | None:
    if len(seconds) < 2:
        return round(seconds[0] * 1000, 2) if seconds else None
    return round(statistics.quantiles(seconds, n=100, method="inclusive")[q - 1] * 1000, 2)


# --- the targets -------------------------------------------------------------------------

def server_spec(target: str, port: int, args, folder: Path, uri: str, written: dict):
    """(command, health path, request path, body of one text, environment) of a target;
    ``written``: Hydra overrides that send `dlforge serve`'s files to a temporary folder."""
    python, env = sys.executable, dict(os.environ)
    if args.torch_threads:
        env["OMP_NUM_THREADS"] = str(args.torch_threads)
    if target == "a":
        extra = shlex.split(args.serve_args)
        extra += [f"{k}={v}" for k, v in written.items()
                  if not any(o.startswith(f"{k}=") for o in extra)]
        return ([python, "-m", "dlforge", "serve", f"port={port}", *extra], "/health",
                "/predict", lambda t: {"inputs": [t], "top_k": 1}, env)
    if target == "b":
        # mlflow starts `uvicorn` by name: the venv's bin must come first on PATH
        env |= {"MLFLOW_TRACKING_URI": uri,
                "PATH": f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"}
        return ([python, "-m", "mlflow", "models", "serve", "-m", MODEL_URI,
                 "--env-manager", "local", "-p", str(port)], "/ping", "/invocations",
                lambda t: {"inputs": [t], "params": {"top_k": 1}}, env)
    baseline = str(ROOT / "benchmarks" / "serve_baseline.py")
    if target == "c":
        return ([python, baseline, "app", "--package", str(folder), "--port", str(port),
                 "--handler", args.baseline_handler], "/health", "/predict",
                lambda t: {"inputs": [t], "top_k": 1}, env)
    return ([python, baseline, "trivial", "--port", str(port)], "/health", "/predict",
            lambda t: {"inputs": [t], "top_k": 1}, env)


def check_answer(name: str, port: int, path: str, body: dict) -> None:
    """One request must answer 200 before anything is measured."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    answer = response.read()
    if response.status != 200:
        raise SystemExit(f"{name}: POST {path} {json.dumps(body)} answered "
                         f"{response.status}: {answer[:500]!r}")
    print(f"{name}: POST {path} -> 200 {answer[:160].decode(errors='replace')}", flush=True)


def measure_server(target: str, args, folder: Path, uri: str, texts: list[str],
                   written: dict) -> list[dict]:
    port = free_port()
    command, health, path, body, env = server_spec(target, port, args, folder, uri, written)
    rows = []
    with running(TARGETS[target], command, port, health, args.start_timeout, env) as pgid:
        check_answer(TARGETS[target], port, path, body(texts[0]))
        requests = [post(path, port, body(t)) for t in texts]
        for concurrency in args.concurrency:
            result = closed_loop(port, requests, concurrency, args.warmup, args.duration, pgid)
            rows.append({"target": target, "name": TARGETS[target],
                         "concurrency": concurrency, **result})
            print(_row(rows[-1]), flush=True)
    return rows


# --- report ------------------------------------------------------------------------------

HEADER = (f"{'target':<24} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'srv cpu':>8} {'cpu ms/req':>10} {'gen cpu':>8}")


def _row(r: dict) -> str:
    def f(value, spec):
        return format(value, spec) if value is not None else format("-", spec.split(".")[0])

    return (f"{r['target'] + ' ' + r['name']:<24} {f(r['concurrency'], '>5')} {r['rps']:>9.1f} "
            f"{f(r.get('p50_ms'), '>8.1f')} {f(r.get('p99_ms'), '>8.1f')} {r['errors']:>7} "
            f"{f(r.get('server_cpu'), '>8.2f')} {f(r.get('cpu_ms_per_request'), '>10.2f')} "
            f"{f(r.get('gen_cpu'), '>8.2f')}")


def ratios(rows: list[dict], concurrency: int) -> dict:
    """The project's serving targets at ``concurrency`` clients (those measured)."""
    at = {r["target"]: r for r in rows if r["concurrency"] == concurrency}
    out = {"concurrency": concurrency}
    if "a" in at and "b" in at and at["b"]["rps"]:
        out["a_over_b"] = round(at["a"]["rps"] / at["b"]["rps"], 2)
        out["a_over_b_ok"] = out["a_over_b"] >= 2.0
    if "a" in at and "c" in at and at["c"]["rps"]:
        out["a_over_c"] = round(at["a"]["rps"] / at["c"]["rps"], 2)
        out["a_over_c_ok"] = out["a_over_c"] >= 1.5
    if "a" in at and at["a"]["p99_ms"] is not None:
        out["a_p99_ms"] = at["a"]["p99_ms"]
        out["a_p99_ok"] = at["a"]["p99_ms"] < 100.0
    ceiling = [r for r in rows if r["target"] == "d"]
    if "a" in at and ceiling:
        out["a_over_d"] = round(at["a"]["rps"] / ceiling[0]["rps"], 2)
    return out


def print_report(rows: list[dict], summary: dict) -> None:
    print("\n" + HEADER)
    for r in rows:
        print(_row(r))
    c = summary["concurrency"]
    verdict = {True: "ok", False: "MISSED"}
    if "a_over_b" in summary:
        print(f"(a)/(b) at {c}: {summary['a_over_b']:.2f}x (target >= 2) "
              f"{verdict[summary['a_over_b_ok']]}")
    if "a_over_c" in summary:
        print(f"(a)/(c) at {c}: {summary['a_over_c']:.2f}x (target >= 1.5) "
              f"{verdict[summary['a_over_c_ok']]}")
    if "a_p99_ms" in summary:
        print(f"p99 of (a) at {c}: {summary['a_p99_ms']:.1f} ms (target < 100) "
              f"{verdict[summary['a_p99_ok']]}")
    if "a_over_d" in summary:
        print(f"(a) reaches {summary['a_over_d']:.0%} of the in-process ceiling (d)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl+C, so that the servers' process groups are still killed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    texts = load_texts()
    folder, version, uri, keys = fetch_model()
    print(f"{MODEL_URI} = version {version} ({folder}); {len(texts)} texts; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        written = {k: Path(tmp) / WRITTEN[k] for k in keys}
        for target in ("g", "a", "b", "c"):
            if target in args.only:
                rows += measure_server(target, args, folder, uri, texts, written)
    if "d" in args.only:
        result = measure_inprocess(folder, texts, args.warmup, args.duration, args.torch_threads)
        rows.append({"target": "d", "name": TARGETS["d"], "concurrency": None, **result})
        print(_row(rows[-1]), flush=True)
    summary = ratios(rows, 64 if 64 in args.concurrency else max(args.concurrency))
    print_report(rows, summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "model": MODEL_URI, "version": version, "cpus": os.cpu_count(),
        "duration": args.duration, "warmup": args.warmup, "serve_args": args.serve_args,
        "baseline_handler": args.baseline_handler, "torch_threads": args.torch_threads,
        "load_average": os.getloadavg(), "results": rows, "targets": summary},
        indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
