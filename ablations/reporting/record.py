"""What the store holds about a verdict: a claim run's metrics (seed aggregates, comparisons,
the evidence's numbers), its note (the claim's part of claims.md) and the suite run's summary
table, logged through the tracking layer."""

from __future__ import annotations

import math
from statistics import mean, stdev

from ablations.stats.significance import t_interval
from ablations.verdicts.judge import ClaimReport, label
from ablations.verdicts.verdict_file import ArmRunEntry, VerdictFile
from alexnet.tracking import Tracker, key_name


def claim_metrics(report: ClaimReport) -> dict[str, float]:
    """What a claim run logs as metrics, so the MLflow UI shows seed aggregates and error bars:
    per arm and metric the mean, std, n and 95% interval (``test_acc.relu.mean``); per comparison
    the difference, interval, raw and Holm-adjusted p, P(A > B) and the power figures (the first
    comparison's unprefixed too); and the numbers the claim's evidence computed."""
    metrics = dict(report.stats)
    for name in dict.fromkeys((report.claim.metric, "test_acc")):
        for arm, by_seed in report.values(name).items():
            xs = list(by_seed.values())
            if xs:
                low, high = t_interval(xs)
                k = f"{name}.{key_name(arm)}"
                metrics |= {f"{k}.mean": mean(xs), f"{k}.std": stdev(xs) if len(xs) > 1 else 0.0, f"{k}.n": len(xs),
                            f"{k}.ci_low": low, f"{k}.ci_high": high}
    for a, b in report.claim.versus:  # the first comparison's are the unprefixed ones
        metrics |= {f"{key_name(a)} vs {key_name(b)}.{k}": x for k, x in report.comparisons[(a, b)].stats.items()}
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


SUMMARY_COLUMNS = ("claim", "comparison", "seeds", "difference [95% CI]", "P(A better)", "p", "Holm p",
                   "power (undecided)", "seeds for 80% (undecided)", "verdict", "lacks")


def summary_rows(reports: list[ClaimReport]) -> list[list[str]]:
    """One row per comparison judged: the numbers the verdict rests on."""
    rows = []
    for r in reports:
        for (a, b), v in r.comparisons.items():
            s = v.stats
            if "p" not in s:
                rows.append([r.claim.id, f"{a} vs {b}", "", "", "", "", "", "", "", v.outcome, v.evidence])
                continue
            power = ("", "")
            if "power_low" in s:  # undecided: what would decide it
                power = (_span(*(f"{x:.0%}" if x >= 0.01 else "<1%" for x in (s["power_low"], s["power_high"]))),
                         _span(_seeds(s["seeds_needed_low"]), _seeds(s["seeds_needed_high"])))
            rows.append([r.claim.id, f"{a} vs {b}", str(s["n_a"]),
                         f"{s['diff']:+.4f} [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]", f"{s['p_improvement']:.2f}",
                         f"{s['p']:.3g}", f"{s['p_holm']:.3g}", *power, v.outcome, s.get("lacks", "")])
    return rows


def _seeds(n: int) -> str:
    return "> 10,000" if n > 10_000 else f"{n:,}"


def _span(low: str, high: str) -> str:
    return low if low == high else f"{low}–{high}"


NOTE_LIMIT = 7_900  # characters: MLflow keeps tag values up to 8,000


def claim_section(report: ClaimReport) -> str:
    """The claim's part of claims.md, as its MLflow run's description (the run page renders it as
    markdown): verdict and why, the statement, what is measured, the evidence."""
    word, dash, why = report.shown.partition(" — ")
    lines = [f"**{report.claim.id}: {word}**{dash}{why}", "",
             f"The lecture says: {report.claim.statement}.", "", f"Measured: {report.claim.measures}.", ""]
    lines += [f"- {e}" for e in report.evidence]
    text = "\n".join(lines)
    return text if len(text) <= NOTE_LIMIT else text[:NOTE_LIMIT - 40] + "\n\n… (the rest is in claims.md)"


def summary_markdown(reports: list[ClaimReport]) -> str:
    rows = [list(SUMMARY_COLUMNS)] + summary_rows(reports)
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(SUMMARY_COLUMNS))
    return "\n".join(lines) + "\n"




def log_verdicts(tracker: Tracker, reports: list[ClaimReport], suite_id: str) -> None:
    """Each verdict on its claim's run (reopened: its arm runs may have finished elsewhere) — tags,
    the note, metrics and verdict.json — and the one-table summary on the suite's run (reopened)."""
    for report in reports:
        runs = report.runs + (report.tuned.runs if report.tuned else [])
        with tracker.open_run("", {}, parent=suite_id, run_id=report.run_id):
            tracker.set_tags({"verdict": report.verdict, "statement": report.claim.statement,
                              "mlflow.runName": f"{report.claim.id} — {label(report.verdict, report.proxy)}",
                              "mlflow.note.content": claim_section(report),
                              **({"verdict_reason": report.reason} if report.reason else {}),
                              **({"verdict_tuned_lr": report.tuned.verdict} if report.tuned else {})})
            tracker.log_metrics(claim_metrics(report))
            tracker.log_dict(VerdictFile.model_construct(  # its schema, not checked here: the import checks it
                verdict=report.verdict, evidence=report.evidence, tuned_lr=report.tuned_lr,
                verdict_tuned_lr=report.tuned.verdict if report.tuned else None,
                runs=[ArmRunEntry.model_construct(arm=r.arm, seed=r.seed, lr=r.config.lr, run_id=r.run_id,
                                                  reused=r.reused) for r in runs]).model_dump(), "verdict.json")
    if reports:
        with tracker.open_run("", {}, run_id=suite_id):  # reopened too: the suite's run has ended
            tracker.log_text(summary_markdown(reports), "summary.md")
