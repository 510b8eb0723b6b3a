"""The tracking layer: the only module that imports mlflow.

Runs nest as suite -> claim -> arm x seed. An arm x seed run is identified by its tags
``config_key`` (hash of every Config field), ``seed`` and ``code_version`` (hash of the
training code), so a finished one is found again and never trained twice.

Several workers may share one store. Every run a worker opens carries its owner
(``lease.owner`` = host:pid:token) and a ``lease.heartbeat`` (unix time) that a background
thread refreshes every lease / 4 seconds; a RUNNING run whose owner is gone (a dead pid on
this host, or no heartbeat for $ALEXNET_LEASE_S, default 120, seconds) is marked KILLED by whoever finds it."""

from __future__ import annotations

import http.client
import os
import posixpath
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .result import TrainResult
from .stores import TrackingError, cannot_open, check_uri, sqlite_lock, writers_lock
from .untrusted import env_number, redact, writable_dir

DEFAULT_URI = "sqlite:///mlflow.db"  # embedded store in the working folder
EXPERIMENT = "alexnet-claims"
FIND_PAGE = 1000  # runs per query page of find
IMPORTED = "import.time"  # tag of a run an archive brought (ms since the epoch of its import)
HOST = socket.gethostname()


def store_uri(uri: str | None = None) -> str:
    """The tracking store to use: ``uri``, else $MLFLOW_TRACKING_URI, else the embedded SQLite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def lease_s() -> float:
    """Seconds without a heartbeat after which a run's owner counts as dead ($ALEXNET_LEASE_S)."""
    return env_number("ALEXNET_LEASE_S", 120.0, low=1.0)


STORE_ERRORS = (MlflowException, OSError)  # a store that went away or a full disk, as MLflow reports them


class RunStopped(Exception):
    """A run stopped on purpose before its end (a spent budget): it ends KILLED, as on an
    interrupt, and resumes from its checkpoint next time."""


def key_name(name: str) -> str:
    """A name as MLflow allows it in a param or metric key ('p=0.5' -> 'p_0.5', '− ReLU' -> '_ ReLU'); its
    '/' kept only where the name is a normalised path ('3x3/2'; 'http://x' -> 'http:__x'), as MLflow requires."""
    key = re.sub(r"[^\w\-. /:]", "_", name)
    return key if posixpath.normpath(key) == key and "//" not in key else key.replace("/", "_")


def _flat(prefix: str, d: dict) -> dict:
    return {f"{prefix}{k}": v for k, v in d.items()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process, or no such pid at all
        return False
    except PermissionError:
        return True
    return True


def local_folder(location: str) -> Path | None:
    """The local folder an artifact location names (a path or file: URI); None for a server's
    mlflow-artifacts:/, s3://, ..."""
    parsed = urllib.parse.urlparse(location)
    return Path(urllib.parse.unquote(parsed.path)) if parsed.scheme in ("", "file") else None


def _quoted(value) -> str:
    """A tag value as an MLflow filter literal (values are untrusted: a study name may hold a quote). A value
    holding both quote characters cannot be written in MLflow's filter grammar."""
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ValueError(f"invalid tag value {text!r}: it holds both ' and \", which MLflow's search cannot express")


class Tracker:
    def __init__(self, uri: str | None = None, experiment: str = EXPERIMENT, create: bool = True):
        """``create=False``: nothing is made (a store without ``experiment``: experiment_id None, no runs)."""
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar per result.json read
        self.uri = store_uri(uri)
        self.shown_uri = redact(self.uri)  # what may be printed or recorded: the password replaced by ***
        self.lease = lease_s()
        check_uri(self.uri, create)
        if self.uri.startswith(("http://", "https://")):  # fail in seconds, not after MLflow's retries
            try:
                urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=10).read()
            except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, timed out, or a bad URL
                raise TrackingError(f"MLflow server {self.shown_uri} is unreachable ({redact(str(exc))}): start it "
                                    "(mlflow server --backend-store-uri ... --host ... --port ...) or pass another "
                                    "--tracking-uri") from None
        self.owner = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._open: set[str] = set()  # runs this process holds, kept alive by the heartbeat thread
        self._beat: threading.Thread | None = None
        try:  # opening a fresh SQLite store creates its schema (a store not to be written to: nothing locked)
            with sqlite_lock(self.uri) if create else nullcontext():
                mlflow.set_tracking_uri(self.uri)
                self.client = MlflowClient(self.uri)
                self.experiment_id = self._experiment(experiment, create)
        except Exception as exc:  # noqa: BLE001  any failure to open the store, as MLflow or SQLAlchemy raise it
            raise cannot_open(self.uri, exc) from None
        if create:
            self._check_artifacts()

    def store_lock(self, exclusive: bool = False):
        """This store's writers' lock (``stores.writers_lock``)."""
        return writers_lock(self.uri, exclusive)

    def _experiment(self, name: str, create: bool) -> str | None:
        found = self.client.get_experiment_by_name(name)
        if found or not create:
            return found and found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # another worker created it in between
            return self.client.get_experiment_by_name(name).experiment_id

    def _check_artifacts(self) -> None:
        """Artifacts (result.json, plots) go to a local folder with embedded stores: check it is
        writable now, so that no training is lost to it later."""
        folder = local_folder(self.client.get_experiment(self.experiment_id).artifact_location)
        if folder is not None:  # not a server's mlflow-artifacts:/, s3://, ...
            try:
                writable_dir(folder, "MLflow artifact folder")
            except ValueError as exc:
                raise TrackingError(f"{exc} (the artifact folder of the store {self.shown_uri}; run from a "
                                    "writable folder or use an MLflow server)") from None

    def _lease(self) -> dict:
        return {"lease.owner": self.owner, "lease.heartbeat": f"{time.time():.0f}"}

    def dead(self, run) -> bool:
        """Whether a RUNNING run's owner is gone: a dead process on this host (or an earlier
        tracker of this process), or no heartbeat for ``lease`` seconds. Runs this tracker holds live."""
        if run.info.run_id in self._open:
            return False
        owner = run.data.tags.get("lease.owner")
        if owner is None:
            return True  # opened by a worker that did not hold leases
        parts = owner.rsplit(":", 2)  # host:pid:token, but tags are untrusted: any shape is possible
        host, pid = parts[0], int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
        if host == HOST and pid is not None and (not _pid_alive(pid) or (pid == os.getpid() and owner != self.owner)):
            return True
        try:
            beat = float(run.data.tags.get("lease.heartbeat", 0))
        except ValueError:
            beat = 0.0  # a malformed heartbeat counts as none
        return not time.time() - beat <= self.lease

    def reap(self, tags: dict | None = None) -> list:
        """Mark KILLED every RUNNING run of this experiment (carrying ``tags``) whose owner is gone;
        return the live ones."""
        live = []
        for run in self.find(tags or {}, statuses=("RUNNING",)):
            if self.dead(run):
                self.client.set_tag(run.info.run_id, "lease.reaped_by", self.owner)
                self.terminate(run.info.run_id, "KILLED")
            else:
                live.append(run)
        return live

    def _heartbeat(self) -> None:
        while True:
            time.sleep(self.lease / 4)
            for run_id in list(self._open):
                try:
                    self.client.set_tag(run_id, "lease.heartbeat", f"{time.time():.0f}")
                except Exception:  # noqa: BLE001  the store is away: the next logging call reports it
                    pass

    def _hold(self, run_id: str) -> None:
        if self._beat is None:
            self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="mlflow-heartbeat")
            self._beat.start()
        self._open.add(run_id)

    def create(self, name: str, tags: dict, parent: str | None = None) -> str:
        """A new RUNNING run held by this tracker (a claim that ``run(run_id=...)`` then fills)."""
        tags = {**{k: str(v) for k, v in tags.items()}, **self._lease(), "mlflow.runName": name}
        if parent:
            tags["mlflow.parentRunId"] = parent
        run_id = self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
        self._hold(run_id)
        return run_id

    def abandon(self, run_id: str) -> None:
        """Give up a claim that lost a race: KILLED and deleted, so it never counts as a run."""
        self._open.discard(run_id)
        self.terminate(run_id, "KILLED")
        self.client.delete_run(run_id)

    @contextmanager
    def open_run(self, name: str, tags: dict, parent: str | None = None, run_id: str | None = None):
        """An MLflow run (``run_id`` reopens an existing one); ends FINISHED, KILLED on an interrupt
        or a ``RunStopped``, FAILED on an error (left RUNNING only if the process dies, until ``reap``
        finds it)."""
        tags = {**{k: str(v) for k, v in tags.items()}, **self._lease()}
        active = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else self.experiment_id,
                                  run_name=None if run_id else name, parent_run_id=parent,
                                  nested=parent is not None or mlflow.active_run() is not None, tags=tags)
        self._hold(active.info.run_id)
        try:
            yield active.info.run_id
        except (KeyboardInterrupt, RunStopped):
            self._end("KILLED")
            raise
        except BaseException:
            self._end("FAILED")
            raise
        self._end("FINISHED")

    def _end(self, status: str) -> None:
        run_id = mlflow.active_run().info.run_id
        self._open.discard(run_id)
        mlflow.end_run(status)  # pops the run locally first: if the store is away, it stays RUNNING until reaped

    def find(self, tags: dict, statuses=("FINISHED",)) -> list:
        """Runs of this experiment carrying every tag in ``tags`` (deleted ones never): the store's own, newest
        first, then imported ones (``IMPORTED``), the latest import first: never shadowing local ones. All of
        them, page by page: no number of runs of another status or imported ones pushes a local one out."""
        runs = []
        for status in statuses if self.experiment_id is not None else ():
            clauses = " and ".join([*(f"tags.{k} = {_quoted(v)}" for k, v in tags.items()),
                                    f"attributes.status = {_quoted(status)}"])
            token = None
            while True:
                page = self.client.search_runs([self.experiment_id], clauses, max_results=FIND_PAGE,
                                               order_by=["attributes.start_time DESC"], page_token=token)
                runs += page
                if not (token := page.token):
                    break
        runs.sort(key=lambda r: -(r.info.start_time or 0))
        return sorted(runs, key=lambda r: (
            IMPORTED in r.data.tags, -int(t) if (t := r.data.tags.get(IMPORTED, "")).isdigit() else 0))

    def log_params(self, params: dict) -> None:
        mlflow.log_params({k: str(v) for k, v in params.items()})

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: dict) -> None:
        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_train_start(self, result_config: dict, env: dict, seed: int) -> None:
        self.log_params({**result_config, "seed": seed})
        self.set_tags(_flat("env.", env))

    def log_epoch(self, record: dict) -> None:
        self.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])

    def log_result(self, result: TrainResult) -> None:
        """Final numbers of a training run, and the whole result as ``result.json``."""
        final = result.epochs[-1] if result.epochs else {}
        self.log_metrics({f"final_{k}": v for k, v in final.items() if k != "epoch"})
        self.log_metrics({"params": result.params, "flops_per_image": result.flops_per_image})
        self.log_metrics(_flat("grad_norm.", result.grad_norms), step=1)
        self.set_tags({"status": result.status})
        mlflow.log_dict(result.to_dict(), "result.json")

    def log_dict(self, d: dict, name: str) -> None:
        mlflow.log_dict(d, name)

    def log_text(self, text: str, name: str) -> None:
        mlflow.log_text(text, name)

    def run(self, run_id: str):
        return self.client.get_run(run_id)

    def load_dict(self, run, name: str) -> dict:
        """A JSON artifact the suite logged on ``run`` (``verdict.json``)."""
        return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{name}")

    def load_result(self, run) -> TrainResult:
        """A finished run's ``result.json``, checked field by field (a store can be written by others)."""
        try:
            return TrainResult.parse(mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/result.json"))
        except (ValueError, TypeError, KeyError) as exc:
            raise TrackingError(f"run {run.info.run_id}'s result.json in {self.shown_uri} is malformed ({exc}): "
                                f"delete that run (mlflow runs delete --run-id {run.info.run_id}) and re-run, which "
                                "trains it again") from None

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        mlflow.log_artifact(str(path), folder)

    def terminate(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)
