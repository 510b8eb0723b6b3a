"""The suite's subcommands: ``tune`` (an Optuna study of one arm), ``compare`` (two suites'
verdicts side by side), ``import`` (a GPU node's archive) and ``runs`` (the runs as a table)."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from ablations.claims import BY_ID, SCALES
from ablations.running.plan import arm_config
from alexnet.data import DataError
from alexnet.stores import TrackingError, sqlite_path
from alexnet.tracking import DEFAULT_URI, STORE_ERRORS, Tracker, store_uri
from alexnet.untrusted import Parser, first_line, redact, writable_file, writable_later

console = Console(stderr=True)
MAX_EPOCHS = 100_000  # far beyond any useful run; keeps every count within a 64-bit integer


def shown(text: str) -> str:
    """User or archive text as the console may print it: no rich markup, no control characters."""
    return escape("".join(c if c.isprintable() and not 0xD800 <= ord(c) < 0xE000 else "?" for c in str(text)))


def store_to_read(uri: str | None, what: str) -> Tracker:
    """The store as a command that writes nothing reads it (``what``: --plan, runs): nothing is made
    in it or beside it. An SQLite store that does not exist yet reads as an empty one (a temporary
    store, removed with the process), once its folder is known to be one that could be created."""
    uri = store_uri(uri)
    path = sqlite_path(uri)
    if path is None or not path.name or os.path.lexists(path):
        return Tracker(uri, create=False)
    writable_later(path.parent, f"MLflow store folder (from --tracking-uri {redact(uri)!r})")
    for name in ("mlflow", "alembic"):  # their INFO lines about creating the empty store's tables
        logging.getLogger(name).setLevel(logging.WARNING)
    tmp = tempfile.TemporaryDirectory(prefix="alexnet-read-")
    tracker = Tracker(f"sqlite:///{tmp.name}/mlflow.db", create=False)
    tracker.temporary, tracker.shown_uri = tmp, f"{redact(uri)} (none yet: {what} creates none)"
    return tracker


UNSAFE = ("sqlalchemy", "mlflow", "sqlite3", "threading.py", "logging")  # code an exception may leave locked


def terminate(signum, frame):
    """SIGTERM: a KeyboardInterrupt, so that the current MLflow runs end KILLED, not RUNNING. It is
    raised only outside the store's, SQLite's and threading's code: an exception thrown in there
    can leave one of their locks held, and the clean-up then waits on it for ever. Inside, it is
    tried again 20 ms later (SIGALRM)."""
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in UNSAFE):
            signal.signal(signal.SIGALRM, terminate)
            signal.setitimer(signal.ITIMER_REAL, 0.02)
            return
        frame = frame.f_back
    raise KeyboardInterrupt


def tune_arm(argv: list[str]) -> int:
    """``python -m ablations tune CLAIM:ARM``: an Optuna study of one arm of the claims table."""
    from alexnet.cli import add_tune_options, check_seed, tune_from

    p = Parser(prog="python -m ablations tune", description=tune_arm.__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    choices = ", ".join(f"{c.id}:{a}" for c in BY_ID.values() for a in c.arms)
    p.add_argument("arm", metavar="CLAIM:ARM", help=f"the arm whose config the trials start from: any of {choices}")
    p.add_argument("--scale", choices=list(SCALES), default="quick", help="the scale whose base config the arm uses")
    p.add_argument("--epochs", type=int, help="epochs per trial; None: the scale's")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    add_tune_options(p)
    args = p.parse_args(argv)
    check_seed(args, p)
    claim_id, _, arm = args.arm.partition(":")
    if claim_id not in BY_ID or arm not in BY_ID[claim_id].arms:
        p.error(f"invalid arm {args.arm!r}: expected one of {choices}")
    if args.epochs is not None and not 1 <= args.epochs <= MAX_EPOCHS:
        p.error(f"invalid --epochs {args.epochs}: expected an integer from 1 to {MAX_EPOCHS:,}")
    try:
        base = arm_config(BY_ID[claim_id], arm, SCALES[args.scale], args.device, args.epochs)
        return tune_from(base, args, p)
    except (ValueError, DataError) as exc:
        console.print(f"[red]error:[/] {shown(redact(str(exc)))}", highlight=False, soft_wrap=True)
        return 2


def compare_verdicts(argv: list[str]) -> int:
    """``python -m ablations compare A/claims.md B/claims.md``: the two suites' verdicts side by side
    (for instance the same suite at --threads 1 and 2, or on two CPU models). Exit 0 when every
    claim has the same verdict in both, 1 when one differs, 2 on a file that is not a claims.md."""
    from ablations.reporting.report import read_verdicts

    p = Parser(prog="python -m ablations compare", description=compare_verdicts.__doc__)
    p.add_argument("reports", type=Path, nargs=2, metavar="CLAIMS_MD", help="two claims.md files the suite wrote")
    p.add_argument("--out", type=Path, help="also write the comparison here (markdown)")
    args = p.parse_args(argv)
    try:
        a, b = (read_verdicts(path) for path in args.reports)  # read first: a refusal makes no folder
        if args.out:
            writable_file(args.out, "--out")  # a file: an earlier comparison there is replaced
    except ValueError as exc:
        console.print(f"[red]error:[/] {shown(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    rows = [(c, a.get(c, "—"), b.get(c, "—")) for c in dict.fromkeys([*a, *b])]
    differ = [c for c, x, y in rows if x != y]
    lines = [f"| claim | {args.reports[0]} | {args.reports[1]} | same |", "|---|---|---|---|"]
    lines += [f"| {c} | {x} | {y} | {'yes' if x == y else '**no**'} |" for c, x, y in rows]
    lines += ["", f"{len(rows) - len(differ)} of {len(rows)} verdicts the same"
              + (f"; different: {', '.join(differ)}" if differ else "")]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 1 if differ else 0


def import_node(argv: list[str]) -> int:
    """``python -m ablations import ARCHIVE``: merge a GPU node's archive (scripts/gpu-run) into the
    local MLflow store, keeping run ids, params, metrics, tags, parent links and artifacts, and copy
    its reports into the results folder. The archive is untrusted: its headers, rows and result
    files are checked first, and it comes in whole or not at all. Importing twice duplicates nothing."""
    from ablations.node.transfer import import_archive

    p = Parser(prog="python -m ablations import", description=import_node.__doc__)
    p.add_argument("archive", type=Path, help="the .tar.gz that scripts/gpu-run wrote")
    p.add_argument("--tracking-uri", help=f"the local store (default: $MLFLOW_TRACKING_URI, else {DEFAULT_URI}); "
                                          "a database URI, since run ids are kept")
    p.add_argument("--results-dir", default="results", help="where the node's reports go (default: results)")
    p.add_argument("--max-gb", type=float, default=2.0,
                   help="refuse an archive whose members declare more than this many GiB (default 2)")
    p.add_argument("--replace-results", action="store_true",
                   help="let the node's reports replace local ones that differ (default: refuse, naming them)")
    args = p.parse_args(argv)
    if not (math.isfinite(args.max_gb) and 0 < args.max_gb <= 1024):
        p.error(f"invalid --max-gb {args.max_gb}: expected a number of GiB in (0, 1024]")
    signal.signal(signal.SIGTERM, terminate)  # the temporary folder is removed, the transaction rolled back
    try:
        results = Path(args.results_dir)
        created = not os.path.exists(results)
        writable_later(results, "--results-dir")
        done = import_archive(args.archive, args.tracking_uri, results, max_bytes=int(args.max_gb * 2**30),
                              replace_results=args.replace_results)
    except (ValueError, TrackingError) as exc:
        console.print(f"[red]error:[/] {shown(redact(str(exc)))}", highlight=False, soft_wrap=True)
        return 2
    except STORE_ERRORS + (SQLAlchemyError,) as exc:  # the disk or the store failed mid-import: rolled back
        console.print(f"[red]error:[/] {exc.__class__.__name__}: {shown(redact(first_line(exc)))}; nothing was "
                      "imported, the store and the results folder are as they were", highlight=False, soft_wrap=True)
        return 3
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] nothing was imported; the store and the results folder are as "
                      "they were")
        return 130
    created_line = f"created the results folder {shown(results)}\n" if created else ""
    killed = len(done["killed"])
    Console(highlight=False).print(
        f"{created_line}imported {done['imported']} runs ({done['present']} already here) into "
        f"{shown(done['store'])}; reports: {shown(', '.join(done['reports']) or 'none new')}"
        + (f"; {killed} runs that were still RUNNING on the node came in as KILLED" if killed else ""))
    return 0


def list_runs(argv: list[str]) -> int:
    """``python -m ablations runs``: a suite's runs from the MLflow store as one tidy table (one row
    per claim x arm x seed x metric, as claims.csv), summarised per claim and arm, and written to a
    CSV or Parquet file for pandas, R or a spreadsheet."""
    from ablations.reporting.table import from_store, write_csv

    p = Parser(prog="python -m ablations runs", description=list_runs.__doc__)
    p.add_argument("--tracking-uri", help=f"the store (default: $MLFLOW_TRACKING_URI, else {DEFAULT_URI})")
    p.add_argument("--suite-run", help="the suite's MLflow run id (default: the newest finished suite)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", type=Path, help="write the table here as CSV")
    out.add_argument("--parquet", type=Path, help="write the table here as Parquet")
    args = p.parse_args(argv)
    try:
        table = from_store(store_to_read(args.tracking_uri, "runs"), args.suite_run)  # read first: a refusal
        for path, what in ((args.csv, "--csv"), (args.parquet, "--parquet")):      # makes no folder
            if path:
                writable_file(path, what)
    except (ValueError, TrackingError) as exc:
        console.print(f"[red]error:[/] {shown(redact(str(exc)))}", highlight=False, soft_wrap=True)
        return 2
    acc = table[table.metric == "test_acc"].astype({"value": float})
    summary = acc.groupby(["claim", "arm"], sort=False)["value"].agg(["count", "mean", "std"])
    text = (f"{len(table):,} rows: {table.claim.nunique()} claims, {table.run_id.nunique()} runs; final test "
            "accuracy per arm:\n" + summary.to_string(float_format=lambda x: f"{x:.4f}"))
    Console(highlight=False).print("\n".join(shown(line) for line in text.splitlines()))  # names from the store
    if args.csv:
        write_csv(table, args.csv)
    if args.parquet:
        table.astype({"value": float, "lr": float, "seed": int}).to_parquet(args.parquet, index=False)
    return 0
