"""``python -m recnb <command>``: each command lives in ``recnb/commands/<name>.py`` and
exposes ``register(subparsers)``. Bad input prints one line and exits with code 2."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from recnb.errors import RecnbError

COMMANDS = ("train", "ensemble", "evaluate", "search", "distill", "adarec", "bench", "teacher_artifacts", "dllm2rec", "export",
            "recommend", "sweep")


class HelpFormatter(argparse.HelpFormatter):
    """Adds an option's default to its help where the help does not name it (options
    generated from a config, :class:`recnb.commands.common.ConfigFlags`, name theirs)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and not action.required and action.default not in (None, False, argparse.SUPPRESS)
                and f"default {action.default}" not in text):
            text += f" (default {action.default})"
        return text


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage dump) with exit code 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --epoch must not silently mean --epochs
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="recnb", description="Make heavy sequential recommenders light.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"recnb.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"recnb.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGXFSZ"):  # past a file-size limit a write fails (one line) instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RecnbError as exc:
        print(f"recnb {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recnb {args.command}: interrupted", file=sys.stderr)
        return 130
