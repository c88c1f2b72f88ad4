"""The command line: ``python -m directanimator_core <command>``.

Each command lives in the module that does its work; that module exposes
``add_arguments(parser)`` and ``run(args) -> int``. A command whose module is ``None`` is not built
yet and answers with a one-line message and exit status 2, never a traceback. Only the module of the
command asked for is imported, so one command's heavy imports (torch) never delay another's checks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

from .errors import DirectAnimatorError


@dataclass(frozen=True)
class Command:
    help: str
    module: Optional[str]  # dotted module with add_arguments/run; None = not built yet
    pending: str = ""  # what is still missing, for a command not built yet


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "animate a held-out synthetic figure with the bundled default model; writes videos and metrics",
        "directanimator_core.demo",
    ),
    "extract": Command(
        "cut the pose, face and location cues from a driving video",
        "directanimator_core.cues.cli",
    ),
    "animate": Command(
        "animate a reference image with a driving video (or extract's cue folder) and a model; writes an mp4",
        "directanimator_core.pipeline.command",
    ),
    "train": Command(
        "train a DirectAnimator model with Same2X from a config file",
        "directanimator_core.train.cli",
    ),
    "bench": Command(
        "print speed and memory figures (dit, offload, cues)",
        "directanimator_core.bench",
    ),
}


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of every command, or with ``only`` given, of that command's options alone (the others
    are listed, so ``--help`` still names them; "" lists all and imports none)."""
    parser = argparse.ArgumentParser(
        prog="python -m directanimator_core",
        description="DirectAnimator: animate a reference image with a driving video's motion.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        help_text = command.help if command.module else f"{command.help} (not built yet)"
        sub_parser = sub.add_parser(name, help=help_text, description=command.help)
        if command.module and (only is None or name == only):
            importlib.import_module(command.module).add_arguments(sub_parser)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The command named in ``argv``: its first word that is not an option ("" if none)."""
    return next((word for word in argv if not word.startswith("-")), "")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command_in(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    command = COMMANDS[args.command]
    if command.module is None:
        print(f"error: '{args.command}' is not built yet: it {command.pending}.", file=sys.stderr)
        return 2
    try:
        return int(importlib.import_module(command.module).run(args) or 0)
    except DirectAnimatorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
