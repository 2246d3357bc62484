"""What a training run costs: CPU, wall and GPU time, peak memory, energy.

    meter = CostMeter()             when the run starts (in the process that starts it)
    ...                             train: this process, its loader workers, its ranks
    cost = meter.read(devices)      {"cpu_seconds": 41.2, "wall_seconds": 18.7, ...}

``devices`` are the ranks' :func:`device_usage` reports. What each figure counts:

    cpu_seconds            user + system CPU time of this process and every process
                           under it on this machine: ended ones (DDP ranks, loader
                           workers that were shut down) through getrusage's
                           RUSAGE_CHILDREN, live ones (persistent loader workers)
                           through psutil. Processes on other machines are not counted.
    wall_seconds           elapsed time since the meter started
    peak_rss_bytes         the largest peak resident set of one process of the tree:
                           this one (its peak is reset when the meter starts, on
                           Linux), a child that ended meanwhile, a live child
    gpu_seconds            wall seconds x the GPUs the ranks trained on (the devices
                           held, not NVML's utilisation-weighted time)
    gpu_peak_memory_bytes  the largest ``torch.cuda.max_memory_allocated`` of one of
                           those GPUs (memory given to tensors, not the allocator's cache)
    cpu_energy_joules      the CPU packages' energy, from Intel RAPL
                           (/sys/class/powercap; often readable by root only); the
                           whole machine's, other processes included
    gpu_energy_joules      the energy of the GPUs trained on, from NVML (pynvml)
    energy_joules          their sum, when every source that applies was read

A figure the machine does not expose is left out, never recorded as 0.
:func:`add_up` totals the costs of several runs (a sweep's trials).
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterable
from pathlib import Path

METRIC_PREFIX = "cost."  # a run's cost as MLflow metrics: cost.cpu_seconds, ...
RAPL = Path("/sys/class/powercap")
# ru_maxrss is in KiB on Linux, in bytes on macOS
RSS_UNIT = 1 if sys.platform == "darwin" else 1024


class CostMeter:
    """The cost of a run from the meter's start until :meth:`read`.

    Args:
        reset_peak: reset this process's peak resident set (Linux), so that a
            run in a long-lived process (a sweep worker) gets its own peak. A
            meter started inside a run that is already measured passes False.
    """

    def __init__(self, reset_peak: bool = True):
        if reset_peak:
            _reset_peak_rss()
        self._started = time.monotonic()
        self._cpu = tree_cpu_seconds()
        self._reaped_peak = _reaped_peak_rss()
        self._rapl = rapl_counters()
        self._gpu_energy = gpu_energy_millijoules()

    def read(self, devices: Iterable[dict] = ()) -> dict:
        """The cost so far (names as in the module docstring); ``devices``: the
        ranks' :func:`device_usage` reports."""
        wall = time.monotonic() - self._started
        cost = {"cpu_seconds": round(tree_cpu_seconds() - self._cpu, 3),
                "wall_seconds": round(wall, 3),
                "peak_rss_bytes": _peak_rss(self._reaped_peak)}
        gpus = {d["gpu"]: d["peak_memory_bytes"] for d in devices if d and d.get("gpu")}
        if gpus:
            cost["gpu_seconds"] = round(wall * len(gpus), 3)
            cost["gpu_peak_memory_bytes"] = max(gpus.values())
        return cost | self._energy(list(gpus))

    def _energy(self, gpus: list[str]) -> dict:
        cpu = rapl_joules(self._rapl, rapl_counters())
        gpu = nvml_joules(self._gpu_energy, gpu_energy_millijoules(), gpus) if gpus else None
        energy = {}
        if cpu is not None:
            energy["cpu_energy_joules"] = round(cpu, 3)
        if gpu is not None:
            energy["gpu_energy_joules"] = round(gpu, 3)
        if cpu is not None and (gpu is not None or not gpus):
            energy["energy_joules"] = round(cpu + (gpu or 0.0), 3)
        return energy


PEAKS = ("peak_rss_bytes", "gpu_peak_memory_bytes")  # totalled as their maximum
GPU = ("gpu_seconds", "gpu_peak_memory_bytes", "gpu_energy_joules")


def add_up(costs: Iterable[dict]) -> dict:
    """The total of several runs' costs: times and energies added, peaks as their
    maximum. A run without GPU figures used none; an energy some run lacks is
    unknown, and left out of the total."""
    costs = list(costs)
    total: dict[str, float] = {}
    for name in sorted({k for c in costs for k in c}):
        values = [c[name] for c in costs if name in c]
        if name not in GPU and len(values) < len(costs):
            continue
        total[name] = max(values) if name in PEAKS else round(sum(values), 3)
    return total


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, its ended children and its live
    descendants. Live ones are read first: one that ends in between is counted
    twice rather than not at all (a matter of milliseconds)."""
    live = sum(_own_and_reaped(p) for p in _descendants())
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime + live


def _descendants() -> list:
    import psutil  # a dependency of dvc and snakemake

    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _own_and_reaped(process) -> float:
    """A live process's CPU seconds and those of the children it reaped (a live
    grandchild is counted on its own)."""
    import psutil

    try:
        times = process.cpu_times()
    except psutil.Error:  # ended meanwhile
        return 0.0
    return (times.user + times.system + getattr(times, "children_user", 0.0)
            + getattr(times, "children_system", 0.0))


def _reset_peak_rss() -> None:
    """Reset this process's peak resident set (Linux >= 4.0; elsewhere the peak
    stays the process's own since it started)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _reaped_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * RSS_UNIT


def _peak_rss(reaped_before: int) -> int:
    """The largest peak of one process: this one, a child that ended since the meter
    started (when the children's peak rose: an earlier child's higher peak hides
    it), a live descendant."""
    peaks = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT]
    reaped = _reaped_peak_rss()
    if reaped > reaped_before:
        peaks.append(reaped)
    peaks.extend(_process_peak(p) for p in _descendants())
    return max(peaks)


def _process_peak(process) -> int:
    """A live process's peak resident set (VmHWM), or its current one where /proc
    does not tell."""
    import psutil

    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def rapl_counters(root: Path = RAPL) -> dict[str, tuple[int, int]] | None:
    """The CPU packages' RAPL energy counters, ``{zone: (energy_uj, max_energy_range_uj)}``.

    Only package zones (``intel-rapl:N`` named ``package-N``): their sub-zones
    (cores, DRAM) are parts of them, and a ``psys`` zone covers them. None when
    there is none, or one cannot be read (non-root on most kernels).
    """
    counters = {}
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:  # a sub-zone, e.g. intel-rapl:0:1
            continue
        try:
            if not (zone / "name").read_text().startswith("package"):
                continue
            counters[zone.name] = (int((zone / "energy_uj").read_text()),
                                   int((zone / "max_energy_range_uj").read_text()))
        except (OSError, ValueError):
            return None
    return counters or None


def rapl_joules(before: dict | None, after: dict | None) -> float | None:
    """Joules between two :func:`rapl_counters` readings; a counter that wrapped
    around (at ``max_energy_range_uj``) is counted once round."""
    if before is None or after is None or before.keys() != after.keys():
        return None
    total = 0
    for zone, (start, wrap) in before.items():
        end = after[zone][0]
        total += end - start if end >= start else end + wrap - start
    return total / 1e6


def gpu_energy_millijoules() -> dict[str, int]:
    """Each GPU's energy counter since its driver loaded (mJ), by UUID, from NVML;
    empty without pynvml, a driver, or GPUs that report it (Volta and newer)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # not installed, no driver
        return {}
    readings = {}
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            try:
                uuid = pynvml.nvmlDeviceGetUUID(handle)
                readings[gpu_id(uuid)] = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            except pynvml.NVMLError:  # a GPU that does not report it
                continue
    except pynvml.NVMLError:
        return {}
    finally:
        pynvml.nvmlShutdown()
    return readings


def nvml_joules(before: dict[str, int], after: dict[str, int], gpus: list[str]) -> float | None:
    """Joules the ``gpus`` used between two :func:`gpu_energy_millijoules` readings;
    None unless every one of them was read both times."""
    if not all(g in before and g in after for g in gpus):
        return None
    return sum(after[g] - before[g] for g in gpus) / 1000


def gpu_id(uuid) -> str:
    """A GPU's UUID as torch and NVML both give it (NVML's has a ``GPU-`` prefix)."""
    text = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
    return text.lower().removeprefix("gpu-")


def reset_device_peak(trainer) -> None:
    """Start this rank's GPU memory peak afresh (a sweep worker trains many trials)."""
    device = trainer.strategy.root_device
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def device_usage(trainer) -> dict:
    """This rank's GPU and its peak memory (bytes given to tensors); empty off GPUs."""
    device = trainer.strategy.root_device
    if device.type != "cuda":
        return {}
    import torch

    return {"gpu": gpu_id(torch.cuda.get_device_properties(device).uuid),
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated(device))}
