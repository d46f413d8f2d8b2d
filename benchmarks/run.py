"""Run medscore's benchmark suites and write their results.

Usage::

    python benchmarks/run.py [SUITE ...] [--quick] [--out DIR] [--max-seconds S]

With no SUITE every suite in ``benchmarks/suites/`` runs. Results go to
``DIR/<suite>.json``, ``DIR/<suite>.md`` and ``DIR/<suite>_<case>.png``; ``DIR`` defaults
to ``benchmarks/results`` (``benchmarks/results/quick`` with ``--quick``, so a smoke run
never overwrites real figures).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
# Run as a script, Python puts benchmarks/ first on the path, where datasets.py would shadow
# the HuggingFace ``datasets`` package; import everything from the repository root instead,
# which also makes the checkout's medscore (with its dev-built extension) win.
if sys.path and Path(sys.path[0]).resolve() == _REPO / "benchmarks":
    sys.path.pop(0)
sys.path.insert(0, str(_REPO))

from benchmarks.harness import Bench  # noqa: E402
from benchmarks.suites import available_suites, load_suite  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"suites to run (default: all of {available_suites()})")
    parser.add_argument("--quick", action="store_true",
                        help="seconds-long smoke run with tiny inputs")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default benchmarks/results[/quick])")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="skip a library call expected to take longer than this")
    parser.add_argument("--case", action="append", default=[], metavar="PATTERN",
                        help="run only cases matching this shell pattern (repeatable)")
    parser.add_argument("--library", action="append", default=[], metavar="PATTERN",
                        help="run only libraries matching this shell pattern (repeatable), "
                             "e.g. 'medscore*'")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name in available_suites():
            print(f"{name}: {load_suite(name).DESCRIPTION}")
        return 0
    names = args.suites or available_suites()
    suites = [load_suite(name) for name in names]  # fail on a bad name before any work
    out = args.out or _REPO / "benchmarks" / "results" / ("quick" if args.quick else "")
    bench = Bench(out, quick=args.quick, max_seconds=args.max_seconds,
                  show_progress=not args.no_progress, case_patterns=args.case,
                  library_patterns=args.library)
    for suite in suites:
        bench.log(f"== suite {suite.NAME}: {suite.DESCRIPTION}")
        bench.describe(suite.NAME, suite.DESCRIPTION)
        try:
            suite.run(bench, args.quick)
        finally:  # an interrupted suite still leaves its tables and plots
            for path in bench.write(suite.NAME):
                print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
