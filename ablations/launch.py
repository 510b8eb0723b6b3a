"""``python -m ablations launch``: N workers of one suite command, started through submitit as a
Slurm job array (``--executor slurm``) or as processes of this machine (``--executor local``).

Every worker runs the same ``python -m ablations ...`` against the same MLflow store and
checkpoint folder, so the suite's own reservations split the runs between them (each trained
once) and its leases hand a dead or preempted worker's run to another. Nothing here coordinates
runs. ``--wait`` follows the workers with a status line, then writes the one report from the store
(``python -m ablations ... --report-only``, which trains nothing).

What cannot work is refused before anything is submitted, in one line: a store or Optuna storage
on this machine's disk with Slurm, a checkpoint folder that does not exist with Slurm, a password
in a URI (it would sit in the job's files and logs), submitit not installed."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import typing
import urllib.parse
from pathlib import Path

import torch

from ablations.claims import SCALES
from ablations.commands import console, shown
from ablations.options import MAX_WORKERS, parse
from ablations.running.plan import select_claims
from alexnet.stores import TrackingError
from alexnet.tracking import STORE_ERRORS, Tracker, store_uri
from alexnet.tune import STORAGE_ENV
from alexnet.untrusted import Parser, expanded, first_line, has_secret, printable, redact

LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "ip6-localhost"}
SET_BY_LAUNCH = {"time", "mem", "gpus_per_node", "partition", "job_name", "map_count", "additional_parameters"}
BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
LISTS = {"setup", "teardown", "srun_args"}  # --slurm-setup LINE may be given several times
JOB_NAME = "alexnet-claims"
SERVER_RECIPE = "docs/cluster.md#the-store"
SEE = "See python -m ablations launch --help."
STOPPED = 130  # the suite's exit status after SIGTERM or Ctrl-C: its run ended KILLED, resumable
STOP_S = 60.0  # a worker's suite, told to stop, gets this long to end its run before it is killed


class Refused(ValueError):
    """What cannot work, named before anything is submitted (one line)."""


def parser() -> Parser:
    p = Parser(prog="python -m ablations launch", formatter_class=argparse.RawDescriptionHelpFormatter,
               description=__doc__ + "\n\nEvery other option is the suite's (python -m ablations --help) and "
               "passes to each worker; --plan prints the plan with the per-worker estimate and submits nothing. "
               "--slurm-KEY VALUE passes any other submitit Slurm parameter (e.g. --slurm-account A, "
               "--slurm-qos Q, --slurm-constraint C, --slurm-cpus-per-task N, --slurm-setup 'module load cuda', "
               "the last one repeatable).")
    p.add_argument("--executor", choices=["slurm", "local"], default="slurm",
                   help="slurm: a job array, one task per worker (default); local: processes of this machine")
    p.add_argument("--workers", type=int, required=True, metavar="N", help="workers to start")
    p.add_argument("--gpus-per-worker", type=int, metavar="G",
                   help="GPUs of each worker (default: 1 with slurm; local: 1 when this machine has CUDA, else 0); "
                        "a worker trains one run at a time, so more than 1 is only for a larger --batch-size")
    p.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    p.add_argument("--time-min", type=int, default=240, metavar="M",
                   help="each worker's time limit in minutes (default 240): more than --plan's per-worker estimate; "
                        "a worker stopped at its limit loses at most its current run's last epoch")
    p.add_argument("--mem-gb", type=int, metavar="GB", help="memory of each worker (default: the cluster's)")
    p.add_argument("--folder", help="the workers' logs and submitit's job files (default: launches/<date-time>); "
                        "with slurm it must be on a disk every node mounts")
    p.add_argument("--wait", action="store_true",
                   help="follow the workers with a status line, then write the report once (trains nothing)")
    p.add_argument("--status-every", type=float, default=30.0, metavar="S",
                   help="seconds between status lines with --wait (default 30)")
    p.add_argument("--dry-run", action="store_true",
                   help="write the sbatch script submitit would submit (slurm) or list the workers' commands "
                        "(local) into --folder, and submit nothing")
    return p


def parse_launch(argv: list[str]):
    """(launch options, the suite's arguments, the --slurm-* parameters), each checked."""
    odd = next((a for a in argv if not a.isprintable()), None)
    if odd is not None:  # a newline would end a line of the job script and start a command of its own
        raise Refused(f"argument '{printable(odd[:80])}' holds a control character: every launch argument becomes "
                      "part of one line of the job script")
    argv, slurm = slurm_parameters(argv)
    p = parser()
    args, suite_argv = p.parse_known_args(argv)
    if not 1 <= args.workers <= MAX_WORKERS:
        p.error(f"invalid --workers {args.workers}: expected an integer from 1 to {MAX_WORKERS:,}")
    if args.gpus_per_worker is None:
        args.gpus_per_worker = 1 if args.executor == "slurm" or torch.cuda.is_available() else 0
    if not 0 <= args.gpus_per_worker <= 64:
        p.error(f"invalid --gpus-per-worker {args.gpus_per_worker}: expected an integer from 0 to 64")
    if not 1 <= args.time_min <= 366 * 24 * 60:
        p.error(f"invalid --time-min {args.time_min}: expected minutes from 1 to 527,040 (a year)")
    if args.mem_gb is not None and not 1 <= args.mem_gb <= 1 << 20:
        p.error(f"invalid --mem-gb {args.mem_gb}: expected GB from 1 to 1,048,576")
    if not 1 <= args.status_every <= 3600:
        p.error(f"invalid --status-every {args.status_every}: expected seconds from 1 to 3,600")
    if slurm and args.executor != "slurm":
        p.error(f"--slurm-{next(iter(slurm)).replace('_', '-')} is for --executor slurm, not {args.executor}")
    args.suite = parse(suite_argv, prog="python -m ablations launch")  # the suite's own checks
    if args.suite.report_only:
        p.error("--report-only is not for launch: with --wait, the launcher writes the report once the workers end")
    args.folder = expanded(args.folder or f"launches/{datetime.datetime.now():%Y%m%d-%H%M%S}", "--folder").absolute()
    return args, suite_argv, slurm


def slurm_parameters(argv: list[str]) -> tuple[list[str], dict]:
    """argv without its ``--slurm-KEY VALUE`` (or ``--slurm-KEY=VALUE``) pairs, and those as submitit
    Slurm parameters; a key submitit does not know, or one the launch options set, is refused."""
    rest, params, tokens = [], {}, iter(argv)
    allowed = slurm_keys() if any(t.startswith("--slurm-") for t in argv) else {}
    for token in tokens:
        if not token.startswith("--slurm-"):
            rest.append(token)
            continue
        name, has_value, value = token[len("--slurm-"):].partition("=")
        key = name.replace("-", "_")
        if not has_value:
            value = next(tokens, None)
            if value is None:
                raise Refused(f"{token} needs a value (--slurm-{name} VALUE). {SEE}")
        if key not in allowed:
            raise Refused(f"unknown {token.split('=')[0]}: submitit's Slurm parameters are "
                          f"{', '.join(sorted(k.replace('_', '-') for k in allowed))}; the launch options set the "
                          "time, memory, GPUs, partition and job name")
        params[key] = params.get(key, []) + [value] if key in LISTS else typed(key, allowed[key], value, token)
    return rest, params


def submitit():
    """The submitit package, or a Refused line saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise Refused("python -m ablations launch needs submitit: pip install -e '.[cluster]'") from None
    return submitit


def slurm_keys() -> dict[str, set]:
    """submitit's Slurm parameters that --slurm-* may set: name -> the types its value may take."""
    submitit()
    from submitit.slurm.slurm import _get_default_parameters, _make_sbatch_string  # what update_parameters takes

    hints = typing.get_type_hints(_make_sbatch_string)
    return {k: set(typing.get_args(hints[k]) or [hints[k]]) - {type(None)} for k in _get_default_parameters()
            if k not in SET_BY_LAUNCH}


def typed(key: str, kinds: set, value: str, token: str):
    """A --slurm-* value as submitit's signature types it (``kinds``): a bool (true/false), a count, or text."""
    name = token.split("=")[0]
    if bool in kinds and value.lower() in BOOLS:
        return BOOLS[value.lower()]
    if int in kinds:
        low = 0 if key == "signal_delay_s" else 1
        if value.isascii() and value.isdigit() and low <= int(value) <= 1_000_000:
            return int(value)
        raise Refused(f"invalid {name} {printable(value[:40])!r}: expected an integer from {low} to 1,000,000")
    if str not in kinds:
        raise Refused(f"invalid {name} {printable(value[:40])!r}: expected true or false")
    return value


def refusals(args, uri: str) -> None:
    """What cannot work, as one Refused line, before anything is submitted."""
    submitit()
    storage = args.suite.storage
    for what, text in (("--tracking-uri", uri), ("--storage", storage), ("--folder", str(args.folder))):
        if not text.isprintable():  # from $MLFLOW_TRACKING_URI, $ALEXNET_OPTUNA_STORAGE or the working folder
            raise Refused(f"{what} '{printable(text[:120])}' holds a control character: it becomes part of one line "
                          "of the job script")
    for what, url in (("--tracking-uri", uri), ("--storage", storage)):
        if has_secret(url):
            raise Refused(f"{what} holds a password (not shown here), which would sit in every worker's job file and "
                          f"log: give MLflow's login as MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD and a "
                          f"database's as PGPASSWORD or ~/.pgpass, in the environment the jobs inherit")
    if args.executor != "slurm":
        return
    if scheme(uri) in ("", "file", "sqlite"):
        raise Refused(f"--tracking-uri {uri} is a store on this machine's disk: workers on other nodes cannot share "
                      f"it (SQLite over a network file system corrupts). Start an MLflow server on PostgreSQL and "
                      f"pass its URL, e.g. --tracking-uri https://SERVER:5000 ({SERVER_RECIPE})")
    if urllib.parse.urlsplit(uri).hostname in LOOPBACK:  # one node's Slurm can use it; a cluster's nodes cannot
        console.print(f"[yellow]warning:[/] --tracking-uri {uri} is this machine's loopback: only workers on this "
                      "node reach it; on a cluster, pass the server's name as the nodes see it", highlight=False)
    claims = select_claims(args.suite.only, SCALES[args.suite.scale or "full"])
    if scheme(storage) == "sqlite" and (args.suite.tune_lr or any(c.tuned_arms for c in claims)):
        raise Refused(f"--storage {storage} is an Optuna database on this machine's disk, and these claims tune "
                      f"learning rates in it from every worker: pass a PostgreSQL URL (--storage "
                      f"postgresql+psycopg://USER@HOST/optuna, or ${STORAGE_ENV}; {SERVER_RECIPE})")
    checkpoints = Path(args.suite.checkpoint_dir)
    if not checkpoints.is_dir():
        raise Refused(f"--checkpoint-dir {shown(checkpoints)} does not exist: with --executor slurm it must be a "
                      "folder every node mounts (e.g. --checkpoint-dir /shared/alexnet-checkpoints), made before the "
                      "launch, so that a worker taking over a dead one's run resumes it from its last epoch")
    if not args.dry_run and shutil.which("srun") is None:
        raise Refused("--executor slurm found no srun here: launch from a Slurm login node, or --dry-run to write "
                      "the sbatch script")


def scheme(url: str) -> str:
    """A URL's scheme without its driver (``sqlite+pysqlite`` -> ``sqlite``); "" for a path."""
    return urllib.parse.urlsplit(url).scheme.split("+")[0].lower()


def worker_argv(suite_argv: list[str], uri: str, folder: Path, index: int) -> list[str]:
    """A worker's suite arguments: the user's, the one store, its own results folder (the launcher
    writes the report), and --yes (its time limit is the job's, not --max-hours)."""
    return [*without(suite_argv, "--results-dir", "--tracking-uri"), "--tracking-uri", uri,
            "--results-dir", str(folder / f"worker-{index}"), "--yes"]


def without(argv: list[str], *options: str) -> list[str]:
    """argv less these options and their values (``--opt V`` or ``--opt=V``)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in options:
            skip = True
        elif token.split("=", 1)[0] not in options:
            out.append(token)
    return out


def worker(index: int, argv: list[str], status: str, gpus: str | None) -> int:
    """One worker, as submitit runs it on its node: ``python -m ablations ARGV`` (its output goes to
    the job's log); its exit status is written to ``status`` as JSON, which the launcher reads (no
    pickle). A failed suite fails the job, so squeue/sacct show it. When submitit stops the job (out
    of time, preempted), the suite gets SIGTERM first, so its run is handed over without waiting
    for its lease to expire."""
    env = dict(os.environ) if gpus is None else {**os.environ, "CUDA_VISIBLE_DEVICES": gpus}
    begin = time.monotonic()
    suite = subprocess.Popen([sys.executable, "-m", "ablations", *argv], env=env)
    try:
        code = suite.wait()
    except BaseException:  # submitit's handlers: out of time (USR2 before the limit) or preempted (requeued)
        suite.terminate()  # the suite ends its run KILLED at once (its checkpoint kept) for another worker to take
        try:
            suite.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            suite.kill()
        raise
    finally:
        Path(status).write_text(json.dumps({"worker": index, "exit": suite.wait(), "host": socket.gethostname(),
                                            "seconds": round(time.monotonic() - begin, 1)}))
    if code:
        raise RuntimeError(f"worker {index}: python -m ablations exited with status {code}")
    return code


def worker_status(path: Path) -> str:
    """A worker's end as one phrase, from its status file (untrusted: a plain file's first 10 kB as
    JSON, of which only an integer exit status and a host name are read)."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):  # not a link, a fifo or a device
            raise ValueError(path)
        with path.open("rb") as f:
            data = json.loads(f.read(10_000))
        code, host = data["exit"], str(data["host"])[:64]
        if type(code) is not int or not -255 <= code <= 255:
            raise ValueError(code)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return "ended without a status (killed, preempted or out of time): its run goes to another worker's lease"
    if code == 0:
        return f"finished on {shown(host)}"
    if code == STOPPED:
        return f"stopped on {shown(host)} (out of time or preempted): its run was handed over, its checkpoint kept"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-code}"
        return f"killed by {name} on {shown(host)}: its unfinished run goes to another worker's lease"
    return f"exited with status {code} on {shown(host)} (its log says why)"


def executor(args, folder: Path, slurm: dict):
    """submitit's executor for --executor, its parameters set (with --dry-run, a Slurm one that
    needs no srun: it only writes the script)."""
    package = submitit()
    if args.executor == "local":
        local = package.LocalExecutor(folder)
        local.update_parameters(timeout_min=args.time_min)
        return local

    class ScriptOnly(package.SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:  # writing the script needs no srun
            return 1

    ex = (ScriptOnly if args.dry_run else package.SlurmExecutor)(folder)
    comment = (f"# each array task runs (through submitit.core._submit below): python -m ablations "
               f"{shlex.join(worker_argv(args.suite_argv, args.uri, folder, 'I'))} with I its task id")
    optional = {"gpus_per_node": args.gpus_per_worker or None, "partition": args.partition,
                "mem": args.mem_gb and f"{args.mem_gb}GB"}
    ex.update_parameters(job_name=JOB_NAME, time=args.time_min, **{k: v for k, v in optional.items() if v},
                         **{**slurm, "setup": [comment, *slurm.get("setup", [])]})
    return ex


def sbatch_script(ex, workers: int) -> str:
    """The script submitit's SlurmExecutor hands to sbatch for ``workers`` jobs: its own text, made
    the way its array submission makes it (map_count set on a copy of its parameters)."""
    ex.parameters = {**ex.parameters, **({"map_count": workers} if workers > 1 else {})}
    return ex._make_submission_file_text(ex._submitit_command_str, "dry-run")


def local_gpus(workers: int, per_worker: int) -> list[str]:
    """--executor local: each worker's CUDA_VISIBLE_DEVICES, this machine's GPUs split between them."""
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = ([g for g in seen.split(",") if g] if seen is not None
               else [str(i) for i in range(torch.cuda.device_count())])
    if workers * per_worker > len(visible):
        raise Refused(f"--workers {workers} x --gpus-per-worker {per_worker} needs {workers * per_worker} GPUs; this "
                      f"machine shows {len(visible)}: fewer workers, or --gpus-per-worker 0 for the CPU")
    return [",".join(visible[i * per_worker:(i + 1) * per_worker]) for i in range(workers)]


def follow(jobs: list, tracker: Tracker, since_ms: int, every: float) -> None:
    """A status line every ``every`` seconds until every worker's job has ended: the workers, and the
    arm x seed runs the store holds from this launch on (the MLflow UI shows the same)."""
    while True:
        running = sum(not job.done() for job in jobs)
        try:
            runs = [r for r in tracker.find({"kind": "arm"}, statuses=("FINISHED", "RUNNING", "KILLED"))
                    if (r.info.start_time or 0) >= since_ms]
            count = {s: sum(r.info.status == s for r in runs) for s in ("FINISHED", "RUNNING", "KILLED")}
            store = (f"runs since the launch: {count['FINISHED']} finished, {count['RUNNING']} training"
                     + (f", {count['KILLED']} killed (taken over)" if count["KILLED"] else ""))
        except STORE_ERRORS as exc:
            store = f"the store did not answer ({redact(first_line(exc, 120))})"
        console.print(f"{datetime.datetime.now():%H:%M:%S} workers: {running} running, {len(jobs) - running} ended; "
                      f"{store}", highlight=False)
        if not running:
            return
        time.sleep(every)


def folder_of(folder: Path) -> Path:
    """The launch folder, made private (0700); or an earlier one of this user's that nobody else can
    write and a link does not lead to: submitit keeps the jobs' pickles in it, which the workers load."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
    except FileExistsError:
        st = folder.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022 or not os.access(folder,
                                                                                                      os.W_OK):
            raise Refused(f"--folder {shown(folder)} exists, but is not a folder of yours that only you can write "
                          "(a link, another's, or group- or world-writable): submitit keeps the jobs' pickles there, "
                          "which the workers load. Pass a new folder") from None
    except OSError as exc:
        raise Refused(f"--folder {shown(folder)}: cannot create it ({exc.strerror or exc}); pass a folder you can "
                      "write to") from None
    return folder


def launch(argv: list[str]) -> int:
    """``python -m ablations launch``: submit, print where to watch, and with --wait follow the
    workers and write the report."""
    try:
        args, args.suite_argv, slurm = parse_launch(argv)
        args.uri = store_uri(args.suite.tracking_uri)
        refusals(args, args.uri)
        if args.suite.plan:  # the plan with the per-worker estimate, timed on this machine
            return subprocess.run([sys.executable, "-m", "ablations", *args.suite_argv,
                                   "--workers", str(args.workers)]).returncode
        gpus = local_gpus(args.workers, args.gpus_per_worker) if args.executor == "local" else [None] * args.workers
        tracker = None if args.dry_run else Tracker(args.uri)  # reachable, made once, before any worker starts
        folder = folder_of(args.folder)  # the first thing written
        ex = executor(args, folder, slurm)
        if args.dry_run:
            return dry_run(args, ex, folder)
    except (Refused, ValueError, TrackingError) as exc:
        console.print(f"[red]error:[/] {shown(redact(str(exc)))}", highlight=False, soft_wrap=True)
        return 2
    since_ms = int(time.time() * 1000)
    indices = list(range(args.workers))
    try:
        jobs = ex.map_array(worker, indices, [worker_argv(args.suite_argv, args.uri, folder, i) for i in indices],
                            [str(folder / f"worker-{i}.status.json") for i in indices], gpus)
    except Exception as exc:  # noqa: BLE001  sbatch's refusal (a partition, an account, a limit), as submitit raises it
        console.print(f"[red]error:[/] the submission failed: {shown(redact(first_line(exc, 500)))}",
                      highlight=False, soft_wrap=True)
        return 3
    report = ["python", "-m", "ablations", *without(args.suite_argv, "--tracking-uri"), "--tracking-uri", args.uri,
              "--report-only"]
    array = jobs[0].job_id.split("_")[0]
    watch = (f"squeue --job {array}; tail -f {folder}/{array}_*_0_log.out" if args.executor == "slurm"
             else f"tail -f {folder}/*_0_log.out")
    console.print(f"submitted {args.workers} workers ({args.executor}): job ids {', '.join(j.job_id for j in jobs)}\n"
                  f"logs: {folder}/\nwatch them: {watch}\nthe store: {tracker.shown_uri} (mlflow ui)\n"
                  f"the report, once they end: {shlex.join(report)}", highlight=False, soft_wrap=True)
    if not args.wait:
        return 0
    try:
        follow(jobs, tracker, since_ms, args.status_every)
    except KeyboardInterrupt:  # local workers share this terminal's Ctrl-C: they stop too, their runs resumable
        left = (f"the workers keep running ({watch}); the report, once they end" if args.executor == "slurm" else
                "the local workers got the Ctrl-C too and stop, their runs ended KILLED and resumable; to go on, "
                "run the same launch again; the report of what finished")
        console.print(f"[yellow]stopped following:[/] {left}: {shlex.join(report)}", highlight=False, soft_wrap=True)
        return 130
    for i in indices:
        console.print(f"worker {i}: {worker_status(folder / f'worker-{i}.status.json')}", highlight=False)
    return subprocess.run([sys.executable, *report[1:]]).returncode


def dry_run(args, ex, folder: Path) -> int:
    """--dry-run: the sbatch script (slurm) or the workers' commands (local), written and shown."""
    if args.executor == "slurm":
        path, text = folder / "launch.sbatch", sbatch_script(ex, args.workers)
    else:
        path = folder / "workers.txt"
        text = "".join(f"python -m ablations {shlex.join(worker_argv(args.suite_argv, args.uri, folder, i))}\n"
                       for i in range(args.workers))
    path.write_text(text)
    console.print(f"{text}\nwritten to {path}; nothing submitted", highlight=False, soft_wrap=True, markup=False)
    return 0
