"""``python -m recnb <command>``: each command lives in ``recnb/commands/<name>.py`` and
exposes ``register(subparsers)``. Bad input prints one line and exits with code 2.

Only the command being run is imported (with torch and whatever it needs): ``recnb --help``
lists the commands from :data:`COMMANDS` alone."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from recnb.errors import RecnbError

# command -> its one-line summary (the module is recnb.commands.<command with _ for ->)
COMMANDS = {
    "train": "train a sequential model and evaluate it",
    "ensemble": "serve trained models of one scene as one model (their scores summed)",
    "evaluate": "evaluate a checkpoint (prints JSON)",
    "search": "AdaRec: search a student architecture under a frozen teacher",
    "distill": "AdaRec: train a searched student with (or without) the teacher",
    "adarec": "AdaRec end to end: search per beta, distil, compare",
    "bench": "micro-benchmarks (latency)",
    "teacher-artifacts": "write DLLM2Rec teacher files from a semantic teacher or a trained model",
    "dllm2rec": "distil teacher artifacts into GRU4Rec / SASRec / DROS (DLLM2Rec)",
    "export": "export a checkpoint to ONNX or TorchScript for serving",
    "recommend": "top-k recommendations for users of a scene",
    "sweep": "run a grid of trainings or distillations on Ray Tune",
    "frontier": "plain models and students of one scene and teacher, over seeds: accuracy against latency",
}


class HelpFormatter(argparse.HelpFormatter):
    """Adds an option's default to its help where the help does not name it (options
    generated from a config, :class:`recnb.commands.common.ConfigFlags`, name theirs)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and not action.required and action.default not in (None, False, argparse.SUPPRESS)
                and f"default {action.default}" not in text):
            text += f" (default {action.default})"
        return text


class _HelpAll(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help(full=True)
        parser.exit()


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage dump) with exit code 2, and
    whose ``--help`` lists the options a user needs first: groups made with
    :func:`recnb.commands.common.more_group` are summed up in one line each, and listed in
    full by ``--help-all``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --epoch must not silently mean --epochs
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--help-all", action=_HelpAll, help="show every option, the rarely needed ones too")

    def more_groups(self) -> list:
        return [g for g in self._action_groups if getattr(g, "more", False) and g._group_actions]

    def format_help(self, full: bool = False) -> str:
        more = [] if full else self.more_groups()
        if not more:
            return super().format_help()
        hidden = {id(a) for g in more for a in g._group_actions}
        groups, actions = self._action_groups, self._actions
        self._action_groups = [g for g in groups if g not in more]
        self._actions = [a for a in actions if id(a) not in hidden]
        try:
            text = super().format_help()
        finally:
            self._action_groups, self._actions = groups, actions
        lines = [f"  {g.title}: {len(g._group_actions)} more" for g in more]
        return text + "\nmore options (--help-all lists them):\n" + "\n".join(lines) + "\n"

    def print_help(self, file=None, full: bool = False):
        self._print_message(self.format_help(full=full), file or sys.stdout)

    def error(self, message: str):  # argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Commands(argparse._SubParsersAction):
    """Subcommands whose help line comes from :data:`COMMANDS` (one place for each summary)."""

    def add_parser(self, name, **kwargs):
        kwargs.setdefault("help", COMMANDS.get(name))
        return super().add_parser(name, **kwargs)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every command's options, or, given ``argv``, only those of the command
    it runs (the others listed by name and summary): a command's module loads what it needs."""
    parser = Parser(prog="recnb", description="Make heavy sequential recommenders light.")
    parser.register("action", "commands", _Commands)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, action="commands")
    chosen = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    for name in COMMANDS:
        if argv is None or name == chosen:
            importlib.import_module(f"recnb.commands.{name.replace('-', '_')}").register(sub)
        else:
            sub.add_parser(name)
    return parser


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGXFSZ"):  # past a file-size limit a write fails (one line) instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RecnbError as exc:
        print(f"recnb {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recnb {args.command}: interrupted", file=sys.stderr)
        return 130
