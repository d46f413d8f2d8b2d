"""Writers for a suite's results: JSON (everything), Markdown (tables), PNG (time vs N).

The payload is the dict built by ``Bench``: ``suite``, ``description``, ``quick``,
``memory_method``, ``machine`` and ``records`` (one dict per measurement with ``case``,
``library``, ``seconds``, ``status``, ``params`` and suite-specific extra fields).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

#: Columns every record has; the others are the suite's extras, shown after these.
_FIXED = ("suite", "case", "library", "seconds", "status", "params")


def write_json(payload: dict, path: Path) -> Path:
    """Write ``payload`` to ``path`` atomically (through ``<path>.tmp``)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, path)
    return path


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def cases(records: list[dict]) -> dict[str, list[dict]]:
    """Records grouped by case, in order of first appearance."""
    grouped: dict[str, list[dict]] = {}
    for rec in records:
        grouped.setdefault(rec["case"], []).append(rec)
    return grouped


# -- Markdown -------------------------------------------------------------------------------

def _format(key: str, value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_bytes") and isinstance(value, (int, float)):
        return f"{value / 2**20:.1f}"
    if key.startswith("speedup") and isinstance(value, (int, float)):
        return f"{value:.2f}×"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value).replace("|", "\\|")


def _header_name(key: str) -> str:
    return key[: -len("_bytes")] + " (MiB)" if key.endswith("_bytes") else key


def _ordered_keys(records: list[dict], pick) -> list[str]:
    keys: list[str] = []
    for rec in records:
        for key in pick(rec):
            if key not in keys:
                keys.append(key)
    return keys


def _constant_text(records: list[dict], key: str) -> str | None:
    """The value of a text column that is the same in every row that has it, else None."""
    values = {rec.get(key) for rec in records} - {None}
    if len(values) == 1 and isinstance(next(iter(values)), str):
        return next(iter(values))
    return None


def markdown_table(records: list[dict]) -> str:
    """One Markdown table: parameter columns, library, seconds, the extras, status.

    A text extra with one value in every row (e.g. the reference library) is written once,
    as a line above the table, instead of as a column.
    """
    param_keys = _ordered_keys(records, lambda r: r.get("params", {}).keys())
    extra_keys = _ordered_keys(records, lambda r: (k for k in r if k not in _FIXED))
    notes = {k: v for k in extra_keys if (v := _constant_text(records, k)) is not None}
    extra_keys = [k for k in extra_keys if k not in notes]
    header = [*param_keys, "library", "seconds", *map(_header_name, extra_keys), "status"]
    lines = [f"{k}: {_format(k, v)}  " for k, v in notes.items()] + ([""] if notes else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rec in records:
        row = [_format(k, rec["params"].get(k)) for k in param_keys]
        row += [rec["library"], _format("seconds", rec["seconds"])]
        row += [_format(k, rec.get(k)) for k in extra_keys]
        row.append(_format("status", rec["status"]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def machine_summary(machine: dict) -> str:
    """A few Markdown lines naming the machine, software and date of a run."""
    packages = ", ".join(f"{k} {v}" for k, v in machine.get("packages", {}).items() if v)
    gpus = ", ".join(machine.get("gpus") or []) or "none"
    return (f"- machine: {machine.get('cpu')}, {machine.get('usable_cores')} usable cores "
            f"({machine.get('logical_cores')} logical), {machine.get('memory_gib')} GiB, "
            f"GPU: {gpus}, load average at start {machine.get('load_average_1min')}\n"
            f"- software: Python {machine.get('python')}, {packages}\n"
            f"- {machine.get('platform')}, commit {machine.get('git_commit')}, "
            f"{machine.get('date')}")


def write_markdown(payload: dict, path: Path) -> Path:
    """Write the suite's Markdown report: machine summary, then one table per case."""
    parts = [f"# Benchmark suite `{payload['suite']}`", "", payload.get("description", ""), "",
             machine_summary(payload["machine"]),
             f"- peak memory measured by: {payload.get('memory_method')}"]
    if payload.get("quick"):
        parts.append("- **quick (smoke) run: sizes are tiny, timings are not meaningful**")
    for case, records in cases(payload["records"]).items():
        parts += ["", f"## {case}", "", markdown_table(records)]
    path.write_text("\n".join(parts) + "\n")
    return path


# -- plots ----------------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_plots(payload: dict, out_dir: Path) -> list[Path]:
    """One PNG per case, ``<suite>_<case>.png``: seconds against N per library, log-log
    (a bar chart with a log axis where the case has a single N). Needs matplotlib; without
    it no plot is written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    for case, records in cases(payload["records"]).items():
        timed = [r for r in records if r["seconds"] is not None and "n" in r["params"]]
        if not timed:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        if len({r["params"]["n"] for r in timed}) > 1:
            _plot_lines(ax, timed)
        else:
            _plot_bars(ax, timed)
        ax.set_title(f"{payload['suite']} / {case}\n{payload['machine'].get('cpu')}, "
                     f"{payload['machine'].get('usable_cores')} cores", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{_safe(payload['suite'])}_{_safe(case)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _plot_lines(ax, timed: list[dict]) -> None:
    for library in dict.fromkeys(r["library"] for r in timed):
        points = sorted((r["params"]["n"], r["seconds"]) for r in timed
                        if r["library"] == library)
        ax.plot(*zip(*points), marker="o", label=library)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (points)")
    ax.set_ylabel("seconds (best of runs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def _plot_bars(ax, timed: list[dict]) -> None:
    labels = [r["library"] for r in timed]
    ax.bar(range(len(timed)), [r["seconds"] for r in timed])
    ax.set_xticks(range(len(timed)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(f"seconds (best of runs), N = {timed[0]['params']['n']}")
    ax.grid(True, axis="y", which="both", alpha=0.3)
