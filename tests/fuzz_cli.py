"""The fuzz cases of every command's options (issue 39), shared by the fast tier (a bounded draw)
and the integration tier (every case).

The commands' parsers are walked, not listed: each ``main`` is called until it builds its parser,
which is then read option by option. Each option gets values of the wrong kind and at the edges
of its type, paths of the wrong kind, and no value at all. A case must end in exit 2 with one
stderr line naming the option or the value and nothing created or changed on disk, or reach the
point where the command starts its work (``STARTS``: loading the data, importing an archive,
downloading wheels), where it stops, or finish as a read-only command that changed nothing."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import os
import re
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from alexnet.untrusted import Parser, printable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

COMMANDS = {  # name -> (module with main, argv before the options, positional values a valid call needs)
    "python -m alexnet train": ("alexnet.cli", ["train"], []),
    "python -m alexnet shapes": ("alexnet.cli", ["shapes"], []),
    "python -m alexnet tune": ("alexnet.cli", ["tune"], []),
    "python -m alexnet preflight": ("alexnet.cli", ["preflight"], []),
    "python -m ablations": ("ablations.__main__", [], []),
    "python -m ablations tune": ("ablations.__main__", ["tune"], ["relu:relu"]),
    "python -m ablations import": ("ablations.__main__", ["import"], ["{archive}"]),
    "python -m ablations compare": ("ablations.__main__", ["compare"], ["{claims}", "{claims}"]),
    "python -m ablations runs": ("ablations.__main__", ["runs"], []),
    "python -m ablations launch": ("ablations.__main__", ["launch", "--executor", "local", "--workers", "1"], []),
    "python -m bench": ("bench.__main__", [], []),
    "scripts/wheelhouse.py": ("wheelhouse", [], ["{tmp}/wheels"]),
}
# where a command's work begins: a valid case stops there (the work itself is tested elsewhere)
STARTS = [("alexnet.data", "load_fashion_mnist"), ("alexnet.train", "load_fashion_mnist"),
          ("alexnet.tracking", "Tracker"),  # a study's stores (imported where they are used)
          ("ablations.__main__", "load_fashion_mnist"),
          ("bench.__main__", "load_fashion_mnist"), ("ablations.node.transfer", "import_archive"),
          ("wheelhouse", "requirements"), ("ablations.launch", "Tracker"),  # launch: past its refusals, the store
          ("ablations.launch", "folder_of")]  # (--dry-run: the first thing it writes)
READ_ONLY = {"python -m alexnet shapes", "python -m ablations compare", "python -m ablations runs"}

INTS = ["0", "-0", "-1", str(2**63), str(-2**63 - 1), "9" * 30, "1e3", "0x10", "1_000", "+5", "x", "", "\u0663",
        " 7", "\uff17"]
FLOATS = ["0", "-0", "1e-320", "5e-324", "1e308", "-1e308", "1e309", "inf", "-inf", "+inf", "nan", "NaN", "-1",
          "0x1p3", "1_0.5", "x", "", "\u0663.5"]
TEXTS = ["", " ", "-", "--", "x" * 5000, "a\x1b[31mb", "\u202eevil", "<b>x</b>", "[red]x[/]", "a\nb", "\tx", "=1+1",
         "../../etc/passwd", "'", '"', "%s%n", "${HOME}", "~", "\uff58", "\udcff", "\u2028"]
PATHS = ["missing", "missing parent", "file for folder", "folder for file", "unwritable", "link loop", "dev null",
         "root", "dot", "long name", "other sqlite", "empty file"]
PATHLIKE = ("dir", "uri", "storage", "checkpoint", "json", "out", "csv", "parquet", "archive", "constraints",
            "reports")


class Started(Exception):
    """The command reached the start of its work."""


@dataclass(frozen=True)
class Case:
    command: str
    option: str  # the option string, or the positional's dest
    value: str | None  # None: the option given without its value
    kind: str  # int, float, choice, text, path, flag, positional

    def __str__(self):
        shown = "(no value)" if self.value is None else printable(self.value[:40])
        return f"{self.command} {self.option} {shown}"


def parsers() -> dict[str, Parser]:
    """Each command's parser, as its main builds it."""
    found = {}
    real = argparse.ArgumentParser.parse_args

    class Caught(Exception):
        pass

    def catch(self, *args, **kwargs):
        raise Caught(self)
    real_known = argparse.ArgumentParser.parse_known_args  # launch reads its own options, the rest are the suite's
    argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = catch
    try:
        for name, (module, head, _) in COMMANDS.items():
            try:
                importlib.import_module(module).main([*head, "--help"])
            except Caught as caught:
                parser = caught.args[0]
                if head and name.startswith("python -m alexnet"):
                    parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                                  ).choices[head[0]]
                found[name] = parser
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = real, real_known
    return found


PARSERS = parsers()


def kind(action: argparse.Action) -> str:
    if not action.option_strings:
        return "positional"
    if action.nargs == 0:
        return "flag"
    if action.choices:
        return "choice"
    if action.type in (int, float):
        return action.type.__name__
    if any(word in action.dest for word in PATHLIKE) or action.type is Path:
        return "path"
    return "text"


GPU_RUN = REPO / "scripts" / "gpu-run"


def gpu_run_cases() -> list[Case]:
    """The options of scripts/gpu-run, read from its option loop, and OUTDIR, with their values."""
    text = GPU_RUN.read_text()
    loop = text[text.index("while [[ $# -gt 0 ]]"):text.index("\ndone\n")]
    valued = re.search(r"^\s*(--[a-z-]+(?:\|--[a-z-]+)*)\)\n\s*\[\[ \$# -ge 2", loop, re.M).group(1).split("|")
    flags = [o for o in re.findall(r"^\s*(--[a-z-]+)\)", loop, re.M) if o not in valued]
    out = [Case("scripts/gpu-run", "OUTDIR", v, "positional") for v in PATHS + TEXTS if not v.startswith("-")]
    for option in valued:
        values = FLOATS + INTS if option == "--budget-min" else PATHS + TEXTS if "dir" in option else TEXTS
        out += [Case("scripts/gpu-run", option, v, "text") for v in values] + [Case("scripts/gpu-run", option, None,
                                                                                      "text")]
    return out + [Case("scripts/gpu-run", f, "x", "flag") for f in flags]


def options() -> list[tuple[str, str, str]]:
    """(command, option, kind) of every option and positional of every command."""
    return sorted({(c.command, c.option, c.kind) for c in cases()})


def cases() -> list[Case]:
    """Every case of every option of every command."""
    out = []
    out += gpu_run_cases()
    for name, parser in PARSERS.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            k = kind(action)
            option = action.option_strings[-1] if action.option_strings else action.dest
            choices = list(action.choices or [])
            values = {"int": INTS, "float": FLOATS, "text": TEXTS, "path": PATHS + TEXTS,
                      "choice": TEXTS[:12] + [*(str(c).upper() + "\u202e" for c in choices), *map(str, choices[:1])],
                      "flag": ["x"], "positional": PATHS + TEXTS}[k]
            out += [Case(name, option, v, k) for v in values]
            if action.option_strings and k != "flag":
                out.append(Case(name, option, None, k))
    return out


def path_value(value: str, tmp: Path) -> str:
    """A named kind of path, made for real under ``tmp``; other values as they are."""
    if value not in PATHS:
        return value
    (tmp / "a-file").write_text("x")
    (tmp / "a-folder").mkdir(exist_ok=True)
    loop = tmp / "loop"
    if not loop.is_symlink():
        loop.symlink_to(loop)
    if not (tmp / "other.db").exists():  # an SQLite database, not an MLflow store or an Optuna storage
        with contextlib.closing(sqlite3.connect(tmp / "other.db")) as con:
            con.execute("CREATE TABLE notes (x)")
    (tmp / "empty").touch()
    return {"missing": str(tmp / "missing"), "missing parent": str(tmp / "no" / "such" / "x"),
            "file for folder": str(tmp / "a-file"), "folder for file": str(tmp / "a-folder"),
            "unwritable": "/proc/alexnet-fuzz/x", "link loop": str(loop / "x"), "dev null": "/dev/null", "root": "/",
            "dot": ".", "long name": str(tmp / ("a" * 300)), "other sqlite": str(tmp / "other.db"),
            "empty file": str(tmp / "empty")}[value]


def argv_of(case: Case, tmp: Path) -> list[str]:
    module, head, positional = COMMANDS[case.command]
    fill = {"archive": str(tmp / "archive.tar.gz"), "claims": str(tmp / "claims.md"), "tmp": str(tmp)}
    positional = [p.format(**fill) for p in positional]
    value = None if case.value is None else path_value(case.value, tmp)
    if case.kind == "positional":
        at = 0 if case.command != "python -m ablations compare" else 1
        positional[at:at + 1] = [value if not value.startswith("-") else f"./{value}"]
        return [*head, *positional]
    if value is not None and case.option == "--tracking-uri" and case.value in PATHS:
        value = f"sqlite:///{value}"
    if value is not None and case.option == "--storage" and case.value in PATHS:
        value = f"sqlite:///{value}"
    option = [case.option] if value is None else [f"{case.option}={value}"]
    return [*head, *positional, *option]


def listing(*folders: Path) -> dict:
    """Every entry under ``folders``: a file's hash, or what else it is."""
    out = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = Path(root) / name
                out[str(path)] = ("link" if path.is_symlink() else "dir" if path.is_dir()
                                  else hashlib.sha256(path.read_bytes()).hexdigest())
    return out
