"""The schema of a claim run's ``verdict.json``, stated once: ``ablations.reporting.record``
writes it, the archive import (``ablations.node.meaning``) checks an untrusted one against it
(``parse``: one ValueError line naming the first bad field and what it allows)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from alexnet.untrusted import formula_free, one_line

VERDICTS = ("contradicted", "inconclusive", "reproduced", "unfinished")


def _no_formula(text: str) -> str:
    if not formula_free(text):
        raise ValueError("starts like a spreadsheet formula")
    return text


def _not_past_int64(value):
    """An integer as the store keeps numbers: below 2**63 in size (a float is range-checked after)."""
    if type(value) is int and abs(value) >= 2**63:
        raise ValueError("an integer past 2**63")
    return value


Text = Annotated[str, Field(max_length=8000), AfterValidator(one_line)]  # one printable line
LearningRate = Annotated[float, BeforeValidator(_not_past_int64), Field(gt=0, allow_inf_nan=False)]
Seed = Annotated[int, Field(strict=True, gt=-2**63, lt=2**63)]


class ArmRunEntry(BaseModel):
    """One arm run the verdict rests on (``python -m ablations runs`` loads it by ``run_id``)."""
    model_config = ConfigDict(strict=True, extra="ignore")
    arm: Annotated[Text, AfterValidator(_no_formula)]
    seed: Seed
    lr: LearningRate
    run_id: str | None = None
    reused: bool = False


class VerdictFile(BaseModel):
    """``verdict.json``: the claim's verdict, its evidence lines, the tuned lrs and its arm runs."""
    model_config = ConfigDict(strict=True, extra="ignore")
    verdict: Literal[VERDICTS]
    evidence: list[Text]
    tuned_lr: dict[Text, LearningRate] | None = None
    verdict_tuned_lr: Literal[VERDICTS] | None = None
    runs: list[ArmRunEntry]  # required: the runs table reads it


EXPECTED = {  # field -> what it allows, as a refusal says it
    "verdict": "one of " + ", ".join(VERDICTS),
    "evidence": "a list of printable lines",
    "tuned_lr": "arm -> a finite learning rate > 0",
    "verdict_tuned_lr": "one of " + ", ".join(VERDICTS) + ", or null",
    "runs": "a list of {arm (printable, not starting like a formula), seed, lr (finite, > 0), run_id}",
}


def parse(d) -> VerdictFile:
    """``d`` as a VerdictFile; ValueError naming the first bad field."""
    try:
        return VerdictFile.model_validate(d)
    except ValidationError as exc:
        loc = exc.errors(include_url=False)[0]["loc"]
        name = str(loc[0]) if loc else "verdict"  # not an object at all
        raise ValueError(f"{name}: expected {EXPECTED[name]}") from None
