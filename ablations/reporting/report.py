"""The suite's files: results/<scale>/<device>/claims.md and claims.csv (with the plots of
``ablations.reporting.plots``), the terminal's verdict and plan tables, and reading a claims.md back."""

from __future__ import annotations

import datetime
import math
import re
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ablations.reporting import plots, table
from ablations.reporting.record import summary_markdown
from ablations.running.plan import PlannedRun, workers_wall_s
from ablations.running.speed import duration, image_counts
from ablations.stats.significance import ALPHA
from ablations.verdicts.judge import ClaimReport, label
from ablations.verdicts.rules import describe_rules
from alexnet.untrusted import quoted

COLOURS = {"reproduced": "green", "contradicted": "red", "inconclusive": "yellow"}


def verdict_table(reports: list[ClaimReport], title: str) -> Table:
    table = Table(title=title, show_lines=True)
    table.add_column("claim")
    table.add_column("the lecture says")
    table.add_column("verdict")
    table.add_column("evidence")
    tuned = any(r.tuned for r in reports)
    if tuned:
        table.add_column("verdict at tuned lr")
    for r in reports:
        word, _, why = r.shown.partition(" — ")
        shown = f"[{COLOURS[r.verdict]}]{escape(word)}[/]" + (f"\n{escape(why)}" if why else "")
        row = [r.claim.id, r.claim.statement, shown, "\n".join(r.evidence)]
        if tuned:
            row.append(f"[{COLOURS[r.tuned.verdict]}]{r.tuned.verdict}[/]\n" + _lrs(r) if r.tuned else "")
        table.add_row(*row)
    return table


REASON_CHARS = 64  # the console summary's reason, cut to one short line


def deciding(r: ClaimReport) -> tuple[tuple[str, str], str]:
    """The comparison that decides the claim (its first with an interval) and its difference with
    the 95% interval (``relu − sigmoid +0.089 [+0.061, +0.117]``); ((), '') for a rule judged
    without one."""
    for (a, b), v in r.comparisons.items():
        if {"diff", "ci_low", "ci_high"} <= v.stats.keys():
            s = v.stats
            return (a, b), f"{a} − {b} {s['diff']:+.3f} [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]"
    return (), ""


def short_reason(r: ClaimReport, pair: tuple = ()) -> str:
    """Why the verdict is what it is, in at most REASON_CHARS characters (cut at a word): the
    reason it is undecided, else its first caveat (claims.md has them whole); without the
    "A vs B" of the deciding ``pair``, which its line names already."""
    why = (r.reason or (r.caveats[0] if r.caveats else "")).removeprefix(" vs ".join(pair) + " " if pair else "")
    return why if len(why) <= REASON_CHARS else why[:REASON_CHARS - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def answer_rows(reports: list[ClaimReport]) -> list[list[str]]:
    """The one-screen answer, one row per claim: id, verdict (and at tuned lrs, with --tune-lr),
    the deciding difference and a short reason."""
    tuned = any(r.tuned for r in reports)

    def verdict(r: ClaimReport) -> str:
        return f"{r.verdict} / tuned lr: {r.tuned.verdict if r.tuned else '—'}" if tuned else r.verdict
    rows = []
    for r in reports:
        pair, diff = deciding(r)
        rows.append([r.claim.id, label(verdict(r), r.proxy), diff, short_reason(r, pair)])
    return rows


def where_lines(folder: Path, shown_uri: str) -> list[str]:
    """Where the rest of the answer is: the report's files and the command that shows the runs."""
    ui = f"open {shown_uri}" if shown_uri.startswith(("http://", "https://")) else \
        f"mlflow ui --backend-store-uri '{shown_uri}'"
    return [f"every claim's evidence: {folder}/claims.md; every run's numbers: {folder}/claims.csv; "
            f"plots: {folder}/*.png",
            f"the runs in MLflow: {ui}",
            "the evidence on this console: the same command with --verbose (it reuses every run)"]


def answer(reports: list[ClaimReport], title: str, colour: bool = False) -> list[str]:
    """The one-screen answer: a line per claim (its id, verdict with the scale, and the deciding
    difference), its reason indented below; rich markup when ``colour`` (a terminal), plain
    lines for a pipe or a log. ``verdict_table`` has every claim's full evidence."""
    rows = answer_rows(reports)
    iw, vw = (max((len(r[i]) for r in rows), default=0) for i in (0, 1))
    lines = [escape(title) if colour else title]
    for (claim, verdict, diff, why), r in zip(rows, reports):
        shown = f"[{COLOURS[r.verdict]}]{escape(verdict)}[/]" if colour else verdict
        lines.append(f"  {claim:<{iw}}  {shown}{' ' * (vw - len(verdict))}  {diff}".rstrip())
        if why:
            lines.append(f"  {' ' * iw}  {escape(why) if colour else why}")
    return lines


STATES = {"train": "train", "resume": "resume from epoch {from_epoch}", "reuse": "reuse (finished in the store)",
          "shared": "shared: {first_claim}'s run", "tune": "tune: {trials} lr trials"}


def plan_table(rows: list[PlannedRun], title: str, over: list[str] = ()) -> Table:
    """Every row of a plan: what happens to it, the images it processes and its estimate; the
    runs of the claims ``over`` the budget are not started."""
    table = Table(title=title)
    for name, justify in (("claim", "left"), ("arm", "left"), ("seed", "right"), ("what happens", "left"),
                          ("images (train + eval)", "right"), ("estimate", "right")):
        table.add_column(name, justify=justify)
    for r in rows:
        train, test = image_counts(r.config)
        epochs = (r.config.epochs - r.from_epoch) * max(1, r.trials)
        work = f"{epochs * train:,} + {epochs * test:,}" if r.to_do else "—"
        what = STATES[r.state].format(**vars(r)) + (" (lr found by its tuning)" if r.tuned else "")
        what = f"not started: over the budget ({what} next time)" if r.to_do and r.claim in over else what
        table.add_row(r.claim, r.arm, "" if r.seed < 0 else str(r.seed), what, work,
                      duration(r.seconds) if r.to_do else "—")
    return table


def plan_summary(rows: list[PlannedRun], device: str, over: list[str] = (), workers: int = 1,
                 probe_s: float = 0.0) -> list[str]:
    """Per-claim estimates, then the totals: runs to train, resumed, reused, shared; with several
    ``workers``, the wall time they need (``workers_wall_s``); then the claims ``over`` the budget,
    which the start would leave for the next one."""
    claims: dict[str, float] = {}
    for r in rows:
        claims[r.claim] = claims.get(r.claim, 0.0) + r.seconds
    count = {state: len({r.key for r in rows if r.state == state}) for state in STATES}
    per_claim = ", ".join(f"{c} {duration(s) if s else '—'}" for c, s in claims.items())
    return [f"per claim (each run counted with the first claim that needs it): {per_claim}",
            f"{count['train'] + count['resume']} runs to train ({count['resume']} of them resumed from a checkpoint)"
            + (f", {count['tune']} arms to tune" if count["tune"] else "")
            + f", {count['reuse']} reused from the store, {sum(r.state == 'shared' for r in rows)} shared between "
            f"claims: ~{duration(sum(r.seconds for r in rows))} on {device}"] + [
        f"with {workers} workers, one {device} each: ~{duration(workers_wall_s(rows, workers, probe_s))} per worker, "
        f"the probe of {duration(probe_s)} included (the longest run is "
        f"{duration(max([r.seconds for r in rows if r.to_do], default=0.0))}); give launch --time-min more than "
        "that"] * (workers > 1) + [
        f"the budget leaves {', '.join(over)} for the next start: their "
        f"{sum(r.to_do for r in rows if r.claim in over)} runs do not fit in what is left of it (whole claims "
        "first, in order)"] * bool(over)


def _lrs(r: ClaimReport) -> str:
    return ", ".join(f"{arm} lr {lr:.3g}" for arm, lr in r.tuned_lr.items())


def _numerics(reports: list[ClaimReport]) -> str:
    """The precisions the runs trained in (bf16 is the CUDA default; --precision fp32 keeps the lecture's)."""
    seen = sorted({(r.config.precision, r.config.channels_last) for rep in reports for r in rep.runs})
    names = {"fp32": "fp32 (TF32 off)", "tf32": "TF32", "bf16": "bf16 autocast"}
    return ", ".join(f"{names[p]}{' + channels_last' if cl else ''}" for p, cl in seen) or "no runs"


def code_block(text: str) -> list[str]:
    """A fenced block that shows ``text`` verbatim, whatever backticks or newlines it holds."""
    fence = "~" * max([3, *(len(run) + 1 for run in re.findall(r"~+", text))])
    return [fence + "sh", text, fence]


def timing_line(timing: dict, trained: int) -> str:
    """Estimated against actual time of the runs this invocation trained."""
    if not trained or not timing:
        return "Nothing was trained by this invocation, so there is no estimate to compare."
    ratio = timing["actual_s"] / timing["estimate_s"] if timing["estimate_s"] else math.nan
    return (f"Time of the {trained} runs trained here: estimated {duration(timing['estimate_s'])} from a "
            f"{timing['probe_s']:.0f}-s probe of this device, actual {duration(timing['actual_s'])} "
            f"(actual / estimated {ratio:.2f}).")


def _verdict_tables(reports: list[ClaimReport]) -> list[str]:
    """The verdicts at the scale's lr, then (--tune-lr) at the tuned lrs."""
    lines = ["| claim | the lecture says | measured | verdict |", "|---|---|---|---|"]
    for r in reports:
        evidence = "<br>".join(e.replace("|", "\\|") for e in r.evidence)
        word, dash, why = r.shown.partition(" — ")
        why = (dash + why).replace("|", "\\|") + (f" ({r.look})" if r.look else "")
        lines.append(f"| {r.claim.id} | {r.claim.statement} | {evidence} | **{word}**{why} |")
    tuned = [r for r in reports if r.tuned]
    if tuned:
        lines += ["", "## At tuned learning rates (fair mode, `--tune-lr`)", "",
                  "Each arm's lr was tuned by its own Optuna study on a validation split carved from the training "
                  "set; the seeds then ran at that lr.", "",
                  "| claim | tuned lr per arm | measured | verdict |", "|---|---|---|---|"]
        for r in tuned:
            evidence = "<br>".join(e.replace("|", "\\|") for e in r.tuned.evidence)
            lines.append(f"| {r.claim.id} | {_lrs(r)} | {evidence} | **{label(r.tuned.verdict, r.proxy)}** |")
    return lines


def _statistics(reports: list[ClaimReport], looks: list[str], alpha: float) -> list[str]:
    """How the comparisons were judged, and the numbers each verdict rests on."""
    if not any(r.comparisons for r in reports):
        return []
    judged = [v.stats["family"] for r in reports for v in r.comparisons.values() if "family" in v.stats]
    family = judged[0] if judged else "the"  # none judged: every comparison lacked a second seed
    lines = ["", "## Statistics of the comparisons", "",
             f"All {family} comparisons of this invocation (at the scale's lr and, with --tune-lr, at tuned lrs) "
             "form one family: each p is Holm–Bonferroni adjusted over them (family-wise α = 0.05) and the verdict "
             "uses the adjusted p. Arms run the same seeds, and a seed fixes the data order, the augmentation "
             "draws and the initial weights, so each comparison is judged on the per-seed differences: a paired "
             "t interval at every number of seeds (a bootstrap-t covers about 93% on heavy-tailed differences from "
             "10 to 100 pairs, where the t interval keeps 95%); Welch's test only where arms cannot pair. Printed "
             "intervals are unadjusted 95%; decisions use the Holm-adjusted p. P(A better): the "
             "chance a run of the first arm beats a run of the second. An arm whose test accuracy is within "
             "chance's noise on every seed did not train, and its comparisons say they measure the other arm "
             "against chance. A comparison whose differences have no spread decides nothing. An inconclusive "
             "verdict names what it lacks, and what would decide it: the power of its rule at its seeds "
             "(better and no_gain: at a true gain m from the bound, 0 or 2m; same: at a true difference of 0, "
             "exactly for normal differences) at α = 0.05 / the family's size (Bonferroni, conservative beside "
             "Holm), and the seeds 80% power needs, both as a range over the 95% interval of the true spread "
             "(a few seeds say little about it).", ""]
    if looks:
        lines += [f"Seeds: `--seeds auto` — {len(looks)} looks ({'; '.join(looks)}). Each look judged at "
                  f"family-wise α = {alpha:.3g} (0.05 divided over the planned looks: Bonferroni alpha "
                  "spending), so stopping at the first decisive look keeps the false-positive rate at most "
                  "0.05.", ""]
    lines += summary_markdown(reports).splitlines()
    return lines


def write_markdown(reports: list[ClaimReport], path: Path, *, scale, command: str, env: dict, trained: int,
                   timing: dict, unfinished: dict[str, list[str]], looks: list[str], alpha: float) -> None:
    lines = [f"# Claims of the d2l AlexNet lecture — {scale.name} scale", "",
             f"Produced on {datetime.date.today().isoformat()} by:", "", *code_block(command), "",
             f"Scale: {scale.description}.", "", f"Versus the lecture: {scale.versus_lecture()}."
             + ("" if scale.name == "full" else " These verdicts are a CPU proxy of the lecture's claims: the same "
                "comparisons on a smaller, shorter training; `--scale full` runs the lecture's settings."), "",
             f"Environment: device {env['device']} (CPU {env.get('cpu', 'unknown')}), torch {env['torch']}, "
             f"CUDA {env['cuda']}, "
             f"Python {env['python']}, git commit {env['git_commit']}. Numerics: {_numerics(reports)}. "
             f"Runs trained by this invocation: {trained} (the rest were found finished in the MLflow store). "
             + timing_line(timing, trained), ""]
    if unfinished:
        lines += ["## Not judged yet: the time budget ran out", "",
                  "Re-run the same command (with a new `--budget-min`) to continue; finished runs are reused and "
                  "a stopped run resumes from its checkpoint.", ""]
        lines += [f"- **{c}**: {len(left)} runs left ({', '.join(left)})" for c, left in unfinished.items()] + [""]
    lines += _verdict_tables(reports)
    lines += ["", "## How each claim is measured", ""]
    for r in reports:
        arms = "; ".join(f"`{a}`: {str(o) or 'the scale’s base config'}" for a, o in r.claim.arms.items())
        lines.append(f"- **{r.claim.id}** ({r.claim.rule}, minimum effect {r.claim.min_effect}): "
                     f"{r.claim.measures}. Arms: {arms or 'none (computed from the models)'}.")
    lines += _statistics(reports, looks, alpha)
    lines += ["", describe_rules(), "",
              "Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in sorted(path.parent.glob("*.png")))]
    path.write_text("\n".join(lines) + "\n")


VERDICT_ROW = re.compile(r"^\| (?P<claim>[a-z0-9_]+) \| .* \| "
                         r"\*\*(?P<verdict>reproduced|contradicted|inconclusive)( \([a-z]+ proxy\))?\*\*")
MAX_REPORT_BYTES = 10 * 2**20


def read_verdicts(path: Path) -> dict[str, str]:
    """claim id -> verdict, from the first table of a claims.md that ``write_markdown`` wrote (the
    verdicts at the scale's lr; the tuned-lr table follows it). Untrusted: size-bounded, text only."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_REPORT_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_REPORT_BYTES:
        raise ValueError(f"{path} is over {MAX_REPORT_BYTES // 2**20} MiB: not a claims.md the suite wrote")
    lines = raw.decode("utf-8", errors="replace").splitlines()
    try:
        start = lines.index("| claim | the lecture says | measured | verdict |")
    except ValueError:
        raise ValueError(f"{path} has no verdict table: expected a claims.md written by python -m ablations") from None
    verdicts = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        row = VERDICT_ROW.match(line)
        if not row:
            raise ValueError(f"{path}: a verdict row without a verdict: {line[:80]!r}")
        verdicts[row["claim"]] = row["verdict"]
    return verdicts


class ReportBlocked(ValueError):
    """Something other than a regular file stands where the suite writes a report."""


def write_results(reports: list[ClaimReport], folder: Path, *, scale, device: str, command: str, env: dict,
                  trained: int, timing: dict | None = None, unfinished: dict | None = None,
                  looks: list[str] | None = None, alpha: float = ALPHA) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    foreign = sorted(str(p) for p in (*folder.glob("*.png"), folder / "claims.md", folder / "claims.csv")
                     if p.is_symlink() or p.exists() and not p.is_file())
    if foreign:  # the plot step deletes old PNGs and writes over the rest: regular files only
        raise ReportBlocked(f"cannot write the reports: {quoted(foreign[0])} is not a regular file (a folder or a link "
                            "where the suite writes a report); move it away and re-run the same command (every run is "
                            "in the store: nothing trains again)")
    table.write_csv(table.from_reports(reports, scale.name, device), folder / "claims.csv")
    plots.draw(reports, folder)
    write_markdown(reports, folder / "claims.md", scale=scale, command=command, env=env, trained=trained,
                   timing=timing or {}, unfinished=unfinished or {}, looks=looks or [], alpha=alpha)
    return sorted(folder.iterdir())
