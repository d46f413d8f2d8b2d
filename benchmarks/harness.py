"""The ``Bench`` object handed to every suite: timing, memory, records, progress, machine.

Timing uses ``time.perf_counter``. Peak memory is measured from the operating system, not
from Python's allocator, because the C++ backend allocates with ``new``, which
``tracemalloc`` never sees: on Linux the kernel's resident-set high-water mark
(``VmHWM`` in ``/proc/self/status``) is reset by writing ``5`` to ``/proc/self/clear_refs``
before the call and read after it; the figure reported is that peak minus the resident
size before the call. Where that is impossible (not Linux, or no permission) the harness
falls back to ``tracemalloc``, which counts only Python and NumPy allocations, and says so
in the ``memory_method`` of each record.
"""
from __future__ import annotations

import ctypes
import datetime
import fnmatch
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from . import report

#: Distributions whose versions are written next to every result.
VERSIONED_PACKAGES = ("numpy", "scikit-learn", "hdbscan", "fast_hdbscan", "numba",
                      "faiss-cpu", "torch", "medscore")

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class Timing(NamedTuple):
    """Wall-clock seconds of the timed (post warm-up) calls of one function."""

    best: float
    median: float
    times: list[float]
    #: Largest resident-set growth over the timed calls, bytes; None where not measurable.
    peak_bytes: int | None = None


class PeakMemory(NamedTuple):
    """Peak memory of one call: bytes above the level before the call, and how measured."""

    bytes: int
    method: str  # "rss-hwm" or "tracemalloc"


# -- memory ---------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _can_reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
    except (OSError, KeyError):
        return False
    return True


def _release_free_heap() -> None:
    """Collect garbage and return glibc's free heap pages to the system, so that memory freed
    by earlier calls is not silently reused by the next one (which would hide its peak)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class _RssPeak:
    """Context manager: resident-set peak growth during the block, in bytes."""

    def __enter__(self):
        _release_free_heap()
        _CLEAR_REFS.write_text("5")
        self.before = _status_kib("VmRSS")
        self.bytes = 0
        return self

    def __exit__(self, *exc):
        self.bytes = max(0, _status_kib("VmHWM") - self.before) * 1024
        return False


# -- machine --------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_names() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _package_versions() -> dict[str, str | None]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    """Where and when the benchmark ran: CPU, cores, memory, GPU, Python and packages."""
    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable_cores = os.cpu_count()
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores,
        "memory_gib": memory_gib,
        # Other work on the machine slows every figure; a loaded machine shows here.
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpus": _gpu_names(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": _package_versions(),
        "git_commit": _git_commit(),
    }


# -- the bench ------------------------------------------------------------------------------

class Bench:
    """Collects the records of one run and writes them per suite.

    Parameters
    ----------
    out_dir : path
        Where ``<suite>.json``, ``<suite>.md`` and ``<suite>_<case>.png`` are written.
    quick : bool
        Smoke mode: suites use tiny inputs; recorded in every output.
    max_seconds : float or None
        Suites skip a call whose expected duration (see ``expected_seconds``) exceeds this.
    show_progress : bool, default True
    case_patterns, library_patterns : sequence of str, optional
        Shell-style patterns (``fnmatch``); when given, suites run only the cases and
        libraries matching one of them (see ``wants_case`` and ``wants_library``).
    """

    def __init__(self, out_dir, *, quick: bool = False, max_seconds: float | None = None,
                 show_progress: bool = True, case_patterns=(), library_patterns=()):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.quick = quick
        self.max_seconds = max_seconds
        self.show_progress = show_progress
        self.case_patterns = tuple(case_patterns)
        self.library_patterns = tuple(library_patterns)
        self.machine = machine_info()
        self.records: dict[str, list[dict]] = {}
        self.descriptions: dict[str, str] = {}
        self._rss_ok = _can_reset_peak_rss()
        self._previous = self._load_previous_records()

    # -- selection ---------------------------------------------------------------------------
    def wants_case(self, case: str) -> bool:
        """Whether case ``case`` was selected (``--case``; all when none given)."""
        return _matches(case, self.case_patterns)

    def wants_library(self, library: str) -> bool:
        """Whether library ``library`` was selected (``--library``; all when none given)."""
        return _matches(library, self.library_patterns)

    # -- measuring ---------------------------------------------------------------------------
    def time(self, fn: Callable[[], Any], *, repeat: int = 3, warmup: int = 1,
             max_total_s: float | None = None) -> Timing:
        """Time ``fn()``: ``warmup`` untimed calls (keeps JIT compilation out), then up to
        ``repeat`` timed calls; once ``max_total_s`` seconds have been spent timing, no
        further call starts (at least one always runs)."""
        for _ in range(warmup):
            fn()
        times, peak = [], None
        for _ in range(max(1, repeat)):
            gc.collect()
            if self._rss_ok:
                with _RssPeak() as rss:
                    start = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - start)
                peak = max(peak or 0, rss.bytes)
            else:
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            if max_total_s is not None and sum(times) >= max_total_s:
                break
        return Timing(min(times), statistics.median(times), times, peak)

    def compile_time(self, fn: Callable[[], Any]) -> float:
        """Seconds of one call of ``fn()``; call it first, so that it includes JIT compilation
        (or loading the compiled cache)."""
        gc.collect()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def peak_memory(self, fn: Callable[[], Any]) -> PeakMemory:
        """Peak memory of one call of ``fn()`` above the level before it (see module doc)."""
        gc.collect()
        if self._rss_ok:
            with _RssPeak() as rss:
                fn()
            return PeakMemory(rss.bytes, "rss-hwm")
        tracemalloc.start()
        try:
            fn()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return PeakMemory(peak, "tracemalloc")

    @property
    def memory_method(self) -> str:
        """How ``Timing.peak_bytes`` and ``peak_memory`` measure: "rss-hwm" or "tracemalloc"."""
        return "rss-hwm" if self._rss_ok else "tracemalloc"

    # -- expectations --------------------------------------------------------------------------
    def _load_previous_records(self) -> dict[tuple, float]:
        previous = {}
        for path in self.out_dir.glob("*.json"):
            try:
                data = json.loads(path.read_text())
                for rec in data.get("records", []):
                    if rec.get("seconds") is not None:
                        previous[_record_key(rec)] = rec["seconds"]
            except (OSError, ValueError, TypeError, AttributeError):
                continue  # an unreadable old file only loses the estimate
        return previous

    def expected_seconds(self, suite: str, case: str, library: str,
                         params: dict) -> float | None:
        """Duration of the same call in the previous results in ``out_dir``, if any."""
        key = _record_key({"suite": suite, "case": case, "library": library, "params": params})
        return self._previous.get(key)

    # -- recording -----------------------------------------------------------------------------
    def describe(self, suite: str, description: str) -> None:
        """Set the one-line description written at the top of the suite's outputs."""
        self.descriptions[suite] = description

    def record(self, suite: str, case: str, library: str, seconds: float | None, *,
               status: str = "ok", params: dict | None = None, **extra) -> dict:
        """Store one measurement and rewrite the suite's JSON (so a killed run keeps it).

        ``seconds`` is None when the call did not run; ``status`` then says why
        ("not installed: ...", "skipped: ...", "error: ..."). ``params`` identifies the input
        (by convention ``n`` and ``d``); ``extra`` holds anything else (speed ratios, ARI,
        peak memory...), all JSON-serialisable.
        """
        rec = {"suite": suite, "case": case, "library": library, "seconds": seconds,
               "status": status, "params": dict(params or {}), **extra}
        self.records.setdefault(suite, []).append(rec)
        report.write_json(self._payload(suite), self.out_dir / f"{suite}.json")
        return rec

    def _payload(self, suite: str) -> dict:
        return {"suite": suite, "description": self.descriptions.get(suite, ""),
                "quick": self.quick, "memory_method": self.memory_method,
                "machine": self.machine, "records": self.records.get(suite, [])}

    def write(self, suite: str) -> list[Path]:
        """Write ``<suite>.json``, ``<suite>.md`` and the plots; return the paths written."""
        payload = self._payload(suite)
        paths = [report.write_json(payload, self.out_dir / f"{suite}.json"),
                 report.write_markdown(payload, self.out_dir / f"{suite}.md")]
        paths += report.write_plots(payload, self.out_dir)
        return paths

    # -- feedback ------------------------------------------------------------------------------
    def progress(self, iterable: Iterable, desc: str) -> Iterable:
        """``iterable`` with a progress bar (tqdm, on stderr) or plain lines without tqdm."""
        if not self.show_progress:
            return iterable
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return _plain_progress(iterable, desc)
        return tqdm(iterable, desc=desc, file=sys.stderr, leave=True)

    def log(self, message: str) -> None:
        """One line of feedback on stderr (keeps stdout for the summary), written above
        any progress bar."""
        if self.show_progress:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                tqdm.write(message, file=sys.stderr)
                return
        print(message, file=sys.stderr, flush=True)


def _plain_progress(iterable: Iterable, desc: str):
    items = list(iterable)
    for index, item in enumerate(items, 1):
        print(f"{desc}: {index}/{len(items)}", file=sys.stderr, flush=True)
        yield item


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _record_key(rec: dict) -> tuple:
    params = tuple(sorted((k, repr(v)) for k, v in (rec.get("params") or {}).items()))
    return rec.get("suite"), rec.get("case"), rec.get("library"), params
