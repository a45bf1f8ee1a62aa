"""``starcompute`` command line: parse, call the library, print. One module per group.

Bad input (``InputError``) becomes one line on stderr and exit code 2; any other error
starcompute raises on purpose, one line and exit code 1 (``errors.EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from starcompute import __version__
from starcompute.cli import (
    constellation,
    contacts,
    eclipses,
    hardware,
    infer,
    mission,
    node,
    power,
    route,
    serve,
    simulate,
    stations,
    testbed,
    train,
)
from starcompute.errors import StarcomputeError, exit_code

GROUPS = (
    constellation,
    stations,
    contacts,
    eclipses,
    route,
    power,
    hardware,
    infer,
    mission,
    simulate,
    train,
    serve,
    node,
    testbed,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="starcompute",
        description="AI computing in orbit: constellations, contacts, eclipses, routes.",
    )
    parser.add_argument("--version", action="version", version=f"starcompute {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except StarcomputeError as exc:  # one line; the code from errors.EXIT_CODES
        print(f"starcompute: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("starcompute: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
