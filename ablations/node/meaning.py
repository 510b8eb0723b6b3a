"""An archive's values checked for meaning, not only form (``ablations.node.archive`` checks the form):
what a training, a suite and a node can write, and nothing that would change what the local
store reports or does. Each refusal is one line naming the run, the field and the value.

- **result.json**: ``TrainResult.parse`` (accuracies in [0, 1], losses, times and images/s
  finite and >= 0, epochs 1..n in order, gradient norms finite, bounded and of the network's
  own layers); an environment whose values do not start like a spreadsheet formula; for a run
  a suite would reuse, a test-set result whose config and seed are those its tags and its
  params name.
- **verdict.json**: its fields, printable text, arms that do not start like a formula, and
  arm runs that are the archive's own.
- **rows** (metric rows are bounded by ``ablations.node.archive`` before they are read): parent links
  only between the archive's runs; none of the import's own ``import.*`` tags
  (``alexnet.tracking.IMPORTED``: how a suite tells local runs, which always come first, from
  imported ones)."""

from __future__ import annotations

import json
from pathlib import Path

from ablations.node.archive import ArchiveError, NodeStore, artifacts
from ablations.verdicts import verdict_file
from alexnet.config import Config
from alexnet.result import TrainResult
from alexnet.untrusted import first_line, formula_free, printable, quoted

REUSE_TAGS = ("config_key", "seed", "code_version")  # the tags by which a suite finds a run to reuse
IMPORT_TAG_PREFIX = "import."  # the tags the import sets on the runs it brings


def check(root: Path, store: NodeStore, archive: Path) -> None:
    """The archive's rows and artifacts checked for meaning; ArchiveError naming the first bad value."""
    name = f"invalid archive {str(archive)!r}"
    ids = {r["run_uuid"] for r in store.runs}
    for t in store.rows["tags"]:
        if t["key"] == "mlflow.parentRunId":
            store.links.setdefault(t["run_uuid"], set()).add(t["value"])
        if t["key"].startswith(IMPORT_TAG_PREFIX) or (t["key"] == "mlflow.parentRunId" and t["value"] not in ids):
            raise ArchiveError(f"{name}: run {t['run_uuid']}'s tag {quoted(t['key'])} "
                               + ("is the import's own (a node writes none)" if t["key"].startswith(IMPORT_TAG_PREFIX)
                                  else f"links to {quoted(t['value'])}, which is not a run of the archive"))
    _artifacts(root, store, name)


def _artifacts(root: Path, store: NodeStore, name: str) -> None:
    """Every run's ``result.json`` and ``verdict.json``, where present, against their schema; a
    finished arm run without its ``result.json`` (which the suite would reuse) is refused."""
    params: dict[str, dict] = {}
    for r in store.rows["params"]:
        params.setdefault(r["run_uuid"], {})[r["key"]] = r["value"]
    verdict = _verdict(store)
    for run in store.runs:
        folder = artifacts(root, run)
        if folder.exists() and not folder.resolve().is_relative_to((root / "mlruns").resolve()):
            raise ArchiveError(f"{name}: run {run['run_uuid']}'s artifacts lead outside it")
        key = {k: store.tag(run["run_uuid"], k) for k in REUSE_TAGS}
        reused = run["status"] == "FINISHED" and (None not in key.values() or store.tag(run["run_uuid"], "kind")
                                                  == "arm")  # what a suite finds by its run key and reuses
        checks = (("result.json", _reusable(key, params.get(run["run_uuid"], {})) if reused else _result),
                  ("verdict.json", lambda d, run_id=run["run_uuid"]: verdict(d, run_id)))
        for file, check in checks:
            path = folder / file
            if reused and file == "result.json" and not path.is_file():
                raise ArchiveError(f"{name}: finished run {run['run_uuid']}, which a suite would reuse, has no "
                                   "result.json file")
            if not path.exists() and not path.is_symlink():
                continue
            try:
                if not path.is_file() or path.stat().st_size > 2**24:
                    raise ValueError("not a file of at most 16 MiB")
                check(json.loads(path.read_text()))
            except Exception as exc:  # noqa: BLE001  any failure to parse or check untrusted JSON is a refusal
                raise ArchiveError(f"{name}: run {run['run_uuid']}'s {file} is malformed ({_why(exc)})") from None


def _result(d) -> TrainResult:
    """A result.json from the archive: ``TrainResult.parse``, and an environment whose values do not
    start like a spreadsheet formula (no torch version, commit or device name does)."""
    result = TrainResult.parse(d)
    odd = next((k for k, v in result.env.items() if not formula_free(v)), None)
    if odd:
        raise ValueError(f"env.{odd} {quoted(result.env[odd])}: expected a value that does not start with "
                         "= + - @, a tab or a carriage return (a spreadsheet formula)")
    return result


def _reusable(key: dict, params: dict):
    """The check of a result the suite will reuse by its run key: it parses, it scored the test set,
    its config and seed are the ones the run's tags name, and the run's params say the same."""
    def check(d) -> None:
        result = _result(d)
        if result.eval_split != "test":
            raise ValueError("eval_split: expected 'test' for a run the suite reuses")
        if key["config_key"] is not None and (Config(**result.config).key() != key["config_key"]
                                              or str(result.seed) != key["seed"]):
            raise ValueError(f"config and seed: expected those its tags name ({key['config_key']}, seed {key['seed']})")
        logged = {**{k: str(v) for k, v in result.config.items()}, "seed": str(result.seed)}
        bad = next((k for k, v in logged.items() if params.get(k) != v), None)
        if bad:
            raise ValueError(f"param {bad} {quoted(params.get(bad))}: expected {quoted(logged[bad])}, as its "
                             "result.json's config says")
    return check


def _verdict(store: NodeStore):
    """The check of a claim run's verdict.json: its schema (``ablations.verdicts.verdict_file``:
    fields, printable text, arms that do not start like a formula), and arm runs that are the
    archive's own, each once (``python -m ablations runs`` loads each by its id)."""
    ids = {r["run_uuid"] for r in store.runs}

    def check(d, run_id: str) -> None:
        runs = verdict_file.parse(d).runs
        stray = next((r.run_id for r in runs if r.run_id not in ids), False)
        if stray is not False:
            raise ValueError(f"runs: run_id {quoted(stray)} is not a run of this archive")
        if len({r.run_id for r in runs}) != len(runs):
            raise ValueError("runs: a run_id repeats")
        store.links.setdefault(run_id, set()).update(r.run_id for r in runs)
    return check


def _why(exc: BaseException) -> str:
    return printable(first_line(exc, 200))
