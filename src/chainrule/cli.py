"""The ``chainrule`` command: a thin shell over the library (parse, call, print).

Every subcommand is one ``_cmd_*`` function taking the parsed arguments. A user's mistake raises
``CLIError`` (or a ValueError/TypeError/OSError from the library) and prints as one line,
``error: ...``, with exit status 1; no traceback. ``main(argv)`` is testable without a subprocess.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["CLIError", "main"]


class CLIError(Exception):
    """A mistake in what the user asked for; printed as one line."""


# SUBCOMMANDS: each helper function below adds one subparser and sets ``func``.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Backpropagation you can read, watch, check and run fast.",
    )
    parser.add_argument("--version", action="version", version=f"chainrule {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # REGISTER: one line per subcommand.
    return parser


def _version() -> str:
    from . import __version__
    return __version__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success, 1 on a user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except (CLIError, ValueError, TypeError, OSError, KeyError, ZeroDivisionError, OverflowError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
