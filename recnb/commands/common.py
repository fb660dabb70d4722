"""Arguments and helpers shared by several commands, and :class:`ConfigFlags`, the one
place where options are generated from a config dataclass."""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import os
import re
import socket
from pathlib import Path

from recnb.errors import ConfigError, annotation_types


def add_data_args(p, data_format: bool = True) -> None:
    p.add_argument("--dataset", required=True, help="known name (ml-100k, wikipedia, beauty, sports) or a file/folder path")
    p.add_argument("--data-dir", default=None, help="folder holding datasets (else RECNB_DATA_DIR, then ~/.cache/recnb)")
    if data_format:
        from recnb.data import TEXT_FORMATS

        p.add_argument("--data-format", default=None, choices=TEXT_FORMATS,
                       help="how to read a text --dataset that could be read two ways (default: told by the file)")


def add_evaluation_args(p, names=None) -> None:
    """The options of :class:`recnb.evaluation.Evaluation` (those of ``names``, else every field
    in its ``HELP``), generated from its fields and help: every command that ranks takes them
    under the same names, defaults and help. :func:`evaluation_of` reads them back."""
    from recnb.evaluation import Evaluation

    fields = {f.name: f for f in dataclasses.fields(Evaluation)}
    for name in names or Evaluation.HELP:
        option, default = "--" + name.replace("_", "-"), field_default(fields[name])
        if default is False:
            p.add_argument(option, action="store_true", help=Evaluation.HELP[name])
        elif isinstance(default, str):
            p.add_argument(option, default=default, help=Evaluation.HELP[name])
        else:
            raise TypeError(f"Evaluation.{name}: no option for a default of {default!r}")


def evaluation_of(args, **fields):
    """The :class:`recnb.evaluation.Evaluation` the options of :func:`add_evaluation_args` set
    (``fields``: those the command sets itself); a value out of its choices names its option."""
    from recnb.evaluation import Evaluation

    given = {name: getattr(args, name) for name in Evaluation.HELP if hasattr(args, name)}
    for name, choices in Evaluation.CHOICES.items():
        if name in given and given[name] not in choices:
            raise ConfigError(f"--{name.replace('_', '-')}: expected {' or '.join(choices)}, got {given[name]!r}")
    return Evaluation(**given, **fields)


def more_group(p, title: str):
    """An argument group that ``--help`` sums up in one line and ``--help-all`` lists in full:
    options a user rarely needs, so each command's first screen stays short."""
    group = p.add_argument_group(title)
    group.more = True
    return group


def scene_of(args, **kw):
    """The scene ``--dataset`` names, read as ``--data-format`` says."""
    from recnb.data import load_scene

    return load_scene(args.dataset, args.data_dir, format=getattr(args, "data_format", None), **kw)


def add_run_args(p) -> None:
    p.add_argument("--out", required=True, help="output directory (never overwritten without --force)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output directory")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--seed", type=int, default=2020, help="seed of weights, data order and dropout (default 2020)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# the run arguments every config with these fields takes from add_run_args (--quiet is progress)
RUN_FIELDS = ("device", "seed", "progress")


def prepare_out_dir(path: str | Path, force: bool, resume: bool = False, marker: str = "", run: str = "",
                    inputs: dict | None = None) -> Path:
    """Create ``path`` and hold its lock for this process; refuse a non-empty one unless
    ``force`` (or ``resume``) says so.

    With ``marker`` (the file a resumable run keeps there), ``resume`` also refuses a
    non-empty folder without it: it holds something else (``run`` says what it lacks),
    which a resumed run must not overwrite. ``inputs`` (``{"--teacher": path}``): files the
    command reads, refused when they lie inside ``path``, where the run would overwrite them.
    One writer per folder: a second run (``--force`` or not) meets the lock of a live one."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: exists and is not a directory")
    for option, given in (inputs or {}).items():
        if given is not None and Path(given).exists() and path.resolve() in Path(given).resolve().parents:
            raise ConfigError(f"--out {path}: holds the {option} {given}, which this run would overwrite; "
                              "choose another --out")
    if path.exists():
        check_lock(path)
    if path.exists() and any(p.name != LOCK for p in path.iterdir()) and not (force or resume):
        raise ConfigError(f"--out {path}: directory exists and is not empty; pass --force to overwrite")
    if resume and marker and path.exists() and any(path.iterdir()) and not (path / marker).exists():
        raise ConfigError(f"--resume: {path} holds no {run or marker} to resume from; pass --force to start over")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {path}: cannot create it ({exc.strerror})") from None
    take_lock(path)
    return path


LOCK = ".recnb-lock"  # "<pid> <host>" of the run writing the folder; gone when that run ends


def check_lock(path: Path) -> None:
    """Refuse ``path`` while another live process holds its lock (a stale lock, whose process
    is gone, is removed)."""
    lock = path / LOCK
    try:
        pid, host, *job = lock.read_text().split()
        pid = int(pid)
    except (OSError, ValueError):
        return  # no lock (or an unreadable one, which take_lock replaces)
    if (pid == os.getpid() and host == socket.gethostname()) or (job and job[0] == _job()):
        return  # this process (a Python caller running two commands), or a rank of the same torchrun job
    if host == socket.gethostname() and not _alive(pid):
        lock.unlink(missing_ok=True)  # the run that held it was killed
        return
    raise ConfigError(f"--out {path}: another recnb run (pid {pid} on {host}) is writing there; wait for it, "
                      f"or choose another --out (delete {lock} if that run is gone)")


def take_lock(path: Path) -> None:
    lock = path / LOCK
    me = f"{os.getpid()} {socket.gethostname()} {_job()}".strip()
    try:
        lock.write_text(me)
    except OSError as exc:
        raise ConfigError(f"--out {path}: cannot write there ({exc.strerror})") from None

    def release():
        try:
            if lock.read_text() == me:
                lock.unlink()
        except OSError:
            pass

    atexit.register(release)


def _job() -> str:
    """The torchrun job this process is a rank of ("" outside one): its ranks share the lock."""
    run = os.environ.get("TORCHELASTIC_RUN_ID")  # "none" unless --rdzv-id: the port tells jobs apart
    port = os.environ.get("MASTER_PORT", "")
    return f"torchrun-{run}-{port}" if run and os.environ.get("WORLD_SIZE", "1") != "1" else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def checkpoint_paths(text: str, flag: str) -> list[Path]:
    """The checkpoints a comma-separated ``flag`` names: each entry a ``model.pt``, a run folder
    holding one, or a glob pattern expanded (sorted) to its matches; a pattern matching nothing
    is an error."""
    import glob

    paths = []
    for entry in parse_list(text, str, flag):
        matches = sorted(glob.glob(entry)) if any(c in entry for c in "*?[") else [entry]
        if not matches:
            raise ConfigError(f"{flag}: {entry!r} matches no file or folder")
        paths += [Path(m) / "model.pt" if Path(m).is_dir() else Path(m) for m in matches]
    return paths


def parse_list(text: str, kind=float, what: str = "list") -> list:
    try:
        return [kind(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated numbers, got {text!r}") from None


# ----------------------------------------------------------------------------- generated options
_NONE = object()  # "none" given for an optional field (a flag left out is None)


def _optional(kind):
    """argparse type of an ``X | None`` field: ``none`` gives None."""

    def parse(text: str):
        return _NONE if text.strip().lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value"
    return parse


def field_default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def show(value) -> str:
    """A default as a user types it on the command line."""
    if isinstance(value, (list, tuple)):
        return ",".join(show(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


@dataclasses.dataclass
class ConfigFlags:
    """The options of one config dataclass: one per field (minus ``skip``), named after it,
    typed by its annotation, helped by ``cls.HELP`` and showing its default, so options, help
    and defaults cannot drift from the config. Flags are left unset (``None``) when not given:
    :meth:`given` returns only what the command line set, and the caller lays it over its
    defaults (a recipe, a config file, the dataclass)."""

    cls: type
    skip: tuple = ()  # fields the command sets otherwise (run arguments, another group's flag)
    rename: dict = dataclasses.field(default_factory=dict)  # field -> option name without "--" (no prefix)
    prefix: str = ""  # "distill-": field epochs is --distill-epochs
    defaults: dict = dataclasses.field(default_factory=dict)  # the command's defaults, where not the dataclass's
    notes: dict = dataclasses.field(default_factory=dict)  # field -> text after the default ("; recipe: ...")
    lists: dict = dataclasses.field(default_factory=dict)  # list field -> converter of its comma-separated text
    label: str = ""  # "SASRec": "(SASRec default 64)"

    def fields(self) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(self.cls) if f.name not in self.skip}

    def option(self, name: str) -> str:
        return "--" + self.rename.get(name, self.prefix + name.replace("_", "-"))

    def dest(self, name: str) -> str:
        return self.option(name)[2:].replace("-", "_")

    def default(self, name: str):
        if name in self.defaults:
            return self.defaults[name]
        return field_default({f.name: f for f in dataclasses.fields(self.cls)}[name])

    def help(self, name: str) -> str:
        what = f"{self.label} default" if self.label else "default"
        fields = self.fields()

        def option(match):  # "--batch-size" in a help names this command's option for that field
            other = match.group(1).replace("-", "_")
            return self.option(other) if other in fields else match.group(0)

        text = re.sub(r"--([a-z][a-z-]*[a-z])", option, self.cls.HELP[name])
        return f"{text} ({what} {show(self.default(name))}{self.notes.get(name, '')})"

    def add_to(self, container, names=None) -> None:
        """Add the options (those of ``names`` only, if given) to a parser or an argument group."""
        for name, f in self.fields().items():
            if names is not None and name not in names:
                continue
            kw = {"dest": self.dest(name), "default": None, "help": self.help(name)}
            types = annotation_types(f.type)
            if types is None or (list in types and name not in self.lists):
                raise TypeError(f"{self.cls.__name__}.{name}: no option for a field of type {f.type}; skip it "
                                "(or give a list field a converter)")
            if types == (bool,):
                container.add_argument(self.option(name), action=argparse.BooleanOptionalAction, **kw)
                continue
            if name in self.lists:
                kind = str  # comma-separated, converted by given()
            else:
                kind = int if types[0] is int and float not in types else float if float in types else str
            if type(None) in types:
                kind = _optional(kind)
            container.add_argument(self.option(name), type=kind, **kw)

    def add_groups(self, p, title: str, first=()) -> None:
        """The options of ``first`` in a group ``title`` that ``--help`` shows, the others in a
        group of the same title that it sums up in one line (``--help-all`` shows them)."""
        fields = self.fields()
        shown = [n for n in first if n in fields]
        if shown:
            self.add_to(p.add_argument_group(title), names=shown)
        rest = [n for n in fields if n not in shown]
        if rest:
            self.add_to(more_group(p, title), names=rest)

    def given(self, args) -> dict:
        """``{field: value}`` for the options set on the command line."""
        out = {}
        for name in self.fields():
            value = getattr(args, self.dest(name), None)
            if value is None:
                continue
            if name in self.lists:
                value = self.lists[name](value)
            out[name] = None if value is _NONE else value
        return out
