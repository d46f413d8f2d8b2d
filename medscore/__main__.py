"""Command line: ``medscore demo`` (also ``python -m medscore demo``) and ``medscore --include`` / ``--cmakedir``."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medscore", description=__doc__)
    parser.add_argument("--include", action="store_true",
                        help="print the directory of medscore's C++ headers and exit")
    parser.add_argument("--cmakedir", action="store_true",
                        help="print the directory of medscore's CMake package (for -Dmedscore_DIR=...) and exit")
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="MEDS's error memory on SmolLM2-135M, on the CPU (< 5 min)")
    demo.add_argument("--steps", type=int, default=4)
    demo.add_argument("--prompts", type=int, default=12)
    demo.add_argument("--rollouts", type=int, default=8)
    demo.add_argument("--max-new-tokens", type=int, default=4)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    demo.add_argument("--out", default=".", help="folder of the saved plot")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.include:
        import medscore

        print(medscore.get_include())
        return 0
    if args.cmakedir:
        import medscore

        print(medscore.get_cmake_dir())
        return 0
    if args.command == "demo":
        from medscore import demo

        return demo.main(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
