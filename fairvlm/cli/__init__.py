"""The ``fairvlm`` command line: one sub-command per module in this package.

Each sub-command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit status). Modules import
their heavy dependencies (torch, open_clip) inside ``func`` so ``fairvlm --help`` stays fast.
A :class:`~fairvlm.errors.FairVLMError` is printed as one line, ``error: ...``, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fairvlm import __version__
from fairvlm.errors import FairVLMError

COMMAND_MODULES: tuple[str, ...] = (
    "audit", "compare", "demo", "inspect", "mine", "prepare_demo_model", "train",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="fairvlm",
        description="Audit and repair the group fairness of CLIP-style medical "
        "vision-language models.",
    )
    parser.add_argument("--version", action="version", version=f"fairvlm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"fairvlm.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FairVLMError as error:
        print(f"error: {error}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
