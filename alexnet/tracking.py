"""The tracking layer: the only module that imports mlflow.

Runs nest as suite -> claim -> arm x seed. An arm x seed run is identified by its tags
``config_key`` (hash of every Config field), ``seed`` and ``code_version`` (hash of the
training code), so a finished one is found again and never trained twice.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from .env import code_version  # noqa: F401  (re-exported for callers)

DEFAULT_URI = "sqlite:///mlflow.db"  # embedded store in the working folder
EXPERIMENT = "alexnet-claims"


def _flat(prefix: str, d: dict) -> dict:
    return {f"{prefix}{k}": v for k, v in d.items()}


class Tracker:
    def __init__(self, uri: str | None = None, experiment: str = EXPERIMENT):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar per result.json read
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)

    @contextmanager
    def run(self, name: str, tags: dict, parent: str | None = None, run_id: str | None = None):
        """An MLflow run (``run_id`` reopens a finished one); ends FINISHED, KILLED on an interrupt,
        FAILED on an error (never left RUNNING unless the process is killed with SIGKILL)."""
        active = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else self.experiment_id,
                                  run_name=None if run_id else name, parent_run_id=parent,
                                  nested=parent is not None or mlflow.active_run() is not None,
                                  tags={k: str(v) for k, v in tags.items()})
        try:
            yield active.info.run_id
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            raise
        except BaseException:
            mlflow.end_run("FAILED")
            raise
        mlflow.end_run("FINISHED")

    def find(self, tags: dict, statuses=("FINISHED",)) -> list:
        """Runs of this experiment carrying every tag in ``tags``, newest first."""
        clauses = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
        runs = mlflow.search_runs([self.experiment_id], clauses, output_format="list",
                                  order_by=["attributes.start_time DESC"])
        return [r for r in runs if r.info.status in statuses]

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

    def log_result(self, result: dict) -> None:
        """Final numbers of a training run, and the whole result as ``result.json``."""
        final = result["epochs"][-1] if result["epochs"] else {}
        self.log_metrics({f"final_{k}": v for k, v in final.items() if k != "epoch"})
        self.log_metrics({"params": result["params"], "flops_per_image": result["flops_per_image"]})
        self.log_metrics(_flat("grad_norm.", result["grad_norms"]), step=1)
        self.set_tags({"status": result["status"]})
        mlflow.log_dict(result, "result.json")

    def log_dict(self, d: dict, name: str) -> None:
        mlflow.log_dict(d, name)

    def load_result(self, run) -> dict:
        return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/result.json")

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        mlflow.log_artifact(str(path), folder)

    def terminate(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)
