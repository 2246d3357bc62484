"""The cost meter: CPU time of the process tree, peak memory, RAPL energy, totals.

A training run's recorded cost is checked on the run of
``test_train_writes_metrics_package_plots_and_one_finished_run`` (see
:func:`check_run_cost`); a sweep's in tests/hpo.
"""

from __future__ import annotations

import glob
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlforge.train.cost import CostMeter, add_up, nvml_joules, rapl_counters, rapl_joules

# Burns CPU for argv[1] seconds, says so, then waits for its stdin to close.
BURN = ("import sys, time\nend = time.process_time() + float(sys.argv[1])\n"
        "while time.process_time() < end: pass\nprint('burnt', flush=True)\nsys.stdin.read()")


def machine_energy_readable() -> bool:
    """Whether this machine lets us read its RAPL energy counters."""
    files = glob.glob("/sys/class/powercap/intel-rapl:*/energy_uj")
    try:
        return bool(files) and all(Path(f).read_text().strip() for f in files)
    except OSError:
        return False


def check_run_cost(cost: dict, run_metrics: dict) -> None:
    """A training run's cost, as in its metrics.json and as its MLflow metrics."""
    assert cost["cpu_seconds"] > 0 and cost["wall_seconds"] > 0
    assert cost["peak_rss_bytes"] > 50 * 2**20  # a process that imported torch
    assert {k: v for k, v in run_metrics.items() if k.startswith("cost.")} == pytest.approx(
        {f"cost.{k}": v for k, v in cost.items()})
    if torch.cuda.is_available():  # trainer.accelerator=auto trains on it
        assert cost["gpu_seconds"] > 0 and cost["gpu_peak_memory_bytes"] > 0
    else:
        assert not any(k.startswith("gpu") for k in cost)
    if machine_energy_readable():
        assert cost["energy_joules"] > 0
    else:  # unknown: left out, not 0
        assert "energy_joules" not in cost and "cpu_energy_joules" not in cost


def test_cpu_seconds_count_live_and_ended_children():
    own = resource.getrusage(resource.RUSAGE_SELF)
    meter = CostMeter()
    child = subprocess.Popen([sys.executable, "-c", BURN, "0.6"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "burnt\n"
    live = meter.read()  # the child is alive: psutil counts it
    child.stdin.close()
    child.wait()
    ended = meter.read()  # reaped: RUSAGE_CHILDREN counts it
    now = resource.getrusage(resource.RUSAGE_SELF)
    mine = now.ru_utime + now.ru_stime - own.ru_utime - own.ru_stime
    assert mine < 0.3  # this process only waited
    assert live["cpu_seconds"] >= 0.6 and ended["cpu_seconds"] >= live["cpu_seconds"]
    assert ended["wall_seconds"] >= live["wall_seconds"] > 0


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_a_new_meter_starts_its_own_peak_memory():
    size = 300 * 2**20
    block = bytearray(size)
    block[::4096] = b"\x01" * len(range(0, size, 4096))  # touch every page
    high = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    del block
    peak = CostMeter().read()["peak_rss_bytes"]
    assert peak < high - 200 * 2**20  # the earlier peak is not this meter's


def rapl_zone(root: Path, name: str, kind: str, energy: int, wrap: int = 10**9) -> None:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(f"{kind}\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap}\n")


def test_rapl_counts_package_zones_across_a_wrap_around(tmp_path):
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 999_000_000)
    rapl_zone(tmp_path, "intel-rapl:0:0", "core", 5)  # part of package 0
    rapl_zone(tmp_path, "intel-rapl:1", "psys", 7)  # covers the packages
    before = rapl_counters(tmp_path)
    assert before == {"intel-rapl:0": (999_000_000, 10**9)}
    (tmp_path / "intel-rapl:0/energy_uj").write_text("1000000\n")  # wrapped at 1000 J
    assert rapl_joules(before, rapl_counters(tmp_path)) == pytest.approx(2.0)


def test_unreadable_or_missing_energy_is_unknown(tmp_path):
    assert rapl_counters(tmp_path) is None  # no RAPL zones
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1)
    (tmp_path / "intel-rapl:0/energy_uj").unlink()
    assert rapl_counters(tmp_path) is None
    assert rapl_joules(None, {"intel-rapl:0": (1, 10)}) is None
    assert nvml_joules({"a": 1000}, {"a": 5000}, ["a"]) == 4.0
    assert nvml_joules({"a": 1000}, {"a": 5000}, ["a", "b"]) is None  # b not read


def test_costs_add_up_times_and_energy_and_keep_the_largest_peak():
    runs = [{"cpu_seconds": 1.5, "wall_seconds": 1.0, "peak_rss_bytes": 10, "energy_joules": 3.0},
            {"cpu_seconds": 2.0, "wall_seconds": 2.0, "peak_rss_bytes": 30, "gpu_seconds": 4.0,
             "gpu_peak_memory_bytes": 7}]
    assert add_up(runs) == {"cpu_seconds": 3.5, "wall_seconds": 3.0, "peak_rss_bytes": 30,
                            "gpu_seconds": 4.0, "gpu_peak_memory_bytes": 7}
    assert add_up([]) == {}
