"""Claim reports -> results/<scale>/<device>/: claims.md, claims.csv and PNG plots."""

from __future__ import annotations

import csv
import datetime
import math
import re
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev

from rich.markup import escape
from rich.table import Table

from alexnet.plots import plt, save
from alexnet.tracking import key_name

from . import ladder
from .estimate import duration, images
from .evidence import PLOTS, arm_costs, per_arm, plot
from .judge import ClaimReport
from .plan import PlannedRun
from .stats import ALPHA, t_half_width

CSV_METRICS = ("test_acc", "train_acc", "train_eval_acc", "train_loss", "gap")
COLOURS = {"reproduced": "green", "contradicted": "red", "inconclusive": "yellow"}


def _mean_sd(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return (mean(xs), stdev(xs) if len(xs) > 1 else 0.0) if xs else (math.nan, math.nan)


def _interval(xs: list[float]) -> tuple[float, float]:
    """95% t interval of the mean of xs."""
    if len(xs) < 2:
        return math.nan, math.nan
    half = t_half_width(xs)
    return mean(xs) - half, mean(xs) + half


def claim_metrics(report: ClaimReport) -> dict[str, float]:
    """What a claim run logs as metrics, so the MLflow UI shows seed aggregates and error bars:
    per arm and metric the mean, std, n and 95% interval (``test_acc.relu.mean``); per comparison
    the difference, interval, raw and Holm-adjusted p, P(A > B) and the power figures (the first
    comparison's unprefixed too); and the numbers the claim's evidence computed."""
    metrics = dict(report.stats)
    for name in dict.fromkeys((report.claim.metric, "test_acc")):
        for arm, by_seed in per_arm(report.runs, name).items():
            xs = list(by_seed.values())
            if xs:
                low, high = _interval(xs)
                k = f"{name}.{key_name(arm)}"
                metrics |= {f"{k}.mean": mean(xs), f"{k}.std": stdev(xs) if len(xs) > 1 else 0.0, f"{k}.n": len(xs),
                            f"{k}.ci_low": low, f"{k}.ci_high": high}
    for a, b in report.claim.versus:  # the first comparison's are the unprefixed ones
        metrics |= {f"{key_name(a)} vs {key_name(b)}.{k}": x for k, x in report.comparisons[(a, b)].stats.items()}
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}


SUMMARY_COLUMNS = ("claim", "comparison", "seeds", "difference [95% CI]", "P(A better)", "p", "Holm p", "power",
                   "seeds for 80%", "verdict", "lacks")


def summary_rows(reports: list[ClaimReport]) -> list[list[str]]:
    """One row per comparison judged: the numbers the verdict rests on."""
    rows = []
    for r in reports:
        for (a, b), v in r.comparisons.items():
            s = v.stats
            if "p" not in s:
                rows.append([r.claim.id, f"{a} vs {b}", "", "", "", "", "", "", "", v.verdict, v.evidence])
                continue
            need = s["seeds_needed"]
            rows.append([r.claim.id, f"{a} vs {b}", str(s["n_a"]),
                         f"{s['diff']:+.4f} [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]", f"{s['p_improvement']:.2f}",
                         f"{s['p']:.3g}", f"{s['p_holm']:.3g}", "" if math.isnan(s["power"]) else f"{s['power']:.0%}",
                         "" if math.isnan(need) else "> 10,000" if need > 10_000 else f"{need:,}", v.verdict,
                         s.get("lacks", "")])
    return rows


NOTE_LIMIT = 7_900  # characters: MLflow keeps tag values up to 8,000


def claim_section(report: ClaimReport) -> str:
    """The claim's part of claims.md, as its MLflow run's description (the run page renders it as
    markdown): verdict and why, the statement, what is measured, the evidence."""
    lines = [f"**{report.claim.id}: {report.verdict}**" + (f" — {report.reason}" if report.reason else ""), "",
             f"The lecture says: {report.claim.statement}.", "", f"Measured: {report.claim.measures}.", ""]
    lines += [f"- {e}" for e in report.evidence]
    text = "\n".join(lines)
    return text if len(text) <= NOTE_LIMIT else text[:NOTE_LIMIT - 40] + "\n\n… (the rest is in claims.md)"


def summary_markdown(reports: list[ClaimReport]) -> str:
    rows = [list(SUMMARY_COLUMNS)] + summary_rows(reports)
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(SUMMARY_COLUMNS))
    return "\n".join(lines) + "\n"


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
        why = f"\n{escape(r.reason)}" if r.reason else ""
        row = [r.claim.id, r.claim.statement, f"[{COLOURS[r.verdict]}]{r.verdict}[/]{why}", "\n".join(r.evidence)]
        if tuned:
            row.append(f"[{COLOURS[r.tuned.verdict]}]{r.tuned.verdict}[/]\n" + _lrs(r) if r.tuned else "")
        table.add_row(*row)
    return table


STATES = {"train": "train", "resume": "resume from epoch {from_epoch}", "reuse": "reuse (finished in the store)",
          "shared": "shared: {first_claim}'s run", "tune": "tune: {trials} lr trials"}


def plan_table(rows: list[PlannedRun], title: str) -> Table:
    """Every row of a plan: what happens to it, the images it processes and its estimate."""
    table = Table(title=title)
    for name, justify in (("claim", "left"), ("arm", "left"), ("seed", "right"), ("what happens", "left"),
                          ("images (train + eval)", "right"), ("estimate", "right")):
        table.add_column(name, justify=justify)
    for r in rows:
        train, test = images(r.config)
        epochs = (r.config.epochs - r.from_epoch) * max(1, r.trials)
        work = f"{epochs * train:,} + {epochs * test:,}" if r.to_do else "—"
        what = STATES[r.state].format(**vars(r)) + (" (lr found by its tuning)" if r.tuned else "")
        table.add_row(r.claim, r.arm, "" if r.seed < 0 else str(r.seed), what, work,
                      duration(r.seconds) if r.to_do else "—")
    return table


def plan_summary(rows: list[PlannedRun], device: str) -> list[str]:
    """Per-claim estimates, then the totals: runs to train, resumed, reused, shared."""
    claims: dict[str, float] = {}
    for r in rows:
        claims[r.claim] = claims.get(r.claim, 0.0) + r.seconds
    count = {state: len({r.key for r in rows if r.state == state}) for state in STATES}
    per_claim = ", ".join(f"{c} {duration(s) if s else '—'}" for c, s in claims.items())
    return [f"per claim (each run counted with the first claim that needs it): {per_claim}",
            f"{count['train'] + count['resume']} runs to train ({count['resume']} of them resumed from a checkpoint)"
            + (f", {count['tune']} arms to tune" if count["tune"] else "")
            + f", {count['reuse']} reused from the store, {sum(r.state == 'shared' for r in rows)} shared between "
            f"claims: ~{duration(sum(r.seconds for r in rows))} on {device}"]


def _lrs(r: ClaimReport) -> str:
    return ", ".join(f"{arm} lr {lr:.3g}" for arm, lr in r.tuned_lr.items())


def write_csv(reports: list[ClaimReport], path: Path, scale: str, device: str) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["claim", "arm", "lr", "seed", "metric", "value", "status", "config_key", "run_id", "scale",
                    "device", "code_version", "torch", "git_commit"])
        for r in reports:
            for run in r.runs + (r.tuned.runs if r.tuned else []):
                env = run.result.env
                values = {m: run.result.final(m) for m in CSV_METRICS}
                values["flops_per_image"] = run.result.flops_per_image
                values["params"] = run.result.params
                speeds = sorted(e["examples_per_s"] for e in run.result.epochs)
                if speeds:
                    values["train_images_per_s"] = speeds[len(speeds) // 2]
                    values["wall_s"] = run.result.wall_s
                for name, layer_norm in run.result.grad_norms.items():
                    values[f"grad_norm_epoch1.{name}"] = layer_norm
                for m, v in values.items():
                    w.writerow([r.claim.id, run.arm, run.config.lr, run.seed, m, v, run.result.status,
                                run.config.key(), run.run_id, scale, device, env["code_version"], env["torch"],
                                env["git_commit"]])


@plot("curves", "curves_{claim}.png")
def plot_curves(report: ClaimReport, path: Path) -> None:
    """Test accuracy and train loss per epoch, mean ± std over seeds, one line per arm."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for arm in report.claim.arms:
        per_epoch = defaultdict(lambda: defaultdict(list))
        for run in report.runs:
            if run.arm == arm:
                for e in run.result.epochs:
                    per_epoch["test_acc"][e["epoch"]].append(e["test_acc"])
                    per_epoch["train_loss"][e["epoch"]].append(e["train_loss"])
        for ax, key in ((ax_acc, "test_acc"), (ax_loss, "train_loss")):
            epochs = sorted(per_epoch[key])
            if not epochs:
                continue
            m = [mean(per_epoch[key][e]) for e in epochs]
            s = [stdev(per_epoch[key][e]) if len(per_epoch[key][e]) > 1 else 0 for e in epochs]
            ax.plot(epochs, m, marker="o", label=arm)
            ax.fill_between(epochs, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], alpha=0.2)
    for ax in (ax_acc, ax_loss):
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title=f"{report.claim.id}: test accuracy")
    ax_loss.set(xlabel="epoch", ylabel="train loss", title=f"{report.claim.id}: train loss")
    ax_acc.legend()
    fig.suptitle(f"{report.claim.id} — {report.verdict} (mean ± std over seeds)")
    save(fig, path)


def plot_final_accuracy(reports: list[ClaimReport], path: Path) -> None:
    """Final test accuracy of every arm of every trained claim, with std error bars."""
    trained = [r for r in reports if r.runs and len(r.claim.arms) >= 2]
    if not trained:
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(trained)), 4))
    x, labels = 0, []
    for r in trained:
        for i, arm in enumerate(r.claim.arms):
            m, s = _mean_sd([run.result.final("test_acc") for run in r.runs if run.arm == arm])
            ax.bar(x, m, yerr=s, capsize=4, color=f"C{i}")
            ax.text(x, 0.01, arm, rotation=90, ha="center", va="bottom", fontsize=8, color="white")
            labels.append((x, r.claim.id))
            x += 1
        x += 0.6
    ax.set_xticks([sum(p for p, c in labels if c == r.claim.id) / len(r.claim.arms) for r in trained])
    ax.set_xticklabels([f"{r.claim.id}\n{r.verdict}" for r in trained])
    ax.set(ylabel="final test accuracy", title="final test accuracy per arm (mean ± std over seeds)", ylim=(0, 1))
    save(fig, path)


@plot("flops_vs_accuracy", "{claim}_flops_vs_accuracy.png")
def plot_flops_vs_accuracy(report: ClaimReport, path: Path) -> None:
    """Test accuracy after each epoch against the training FLOPs spent so far (3x the forward
    FLOPs per training image: forward, and a backward pass of about twice its cost), mean ± std
    over seeds: arms of different cost compared at equal compute."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, arm in enumerate(report.claim.arms):
        runs = [run for run in report.runs if run.arm == arm and run.result.epochs]
        if not runs:
            continue
        per_epoch = defaultdict(list)
        for run in runs:
            for e in run.result.epochs:
                per_epoch[e["epoch"]].append(e["test_acc"])
        epochs = sorted(per_epoch)
        step = 3 * runs[0].result.flops_per_image * images(runs[0].config)[0]  # training FLOPs per epoch
        m, s = zip(*(_mean_sd(per_epoch[e]) for e in epochs))
        x = [e * step for e in epochs]
        ax.plot(x, m, marker="o", color=f"C{i}", label=f"{arm} ({runs[0].config.epochs} epochs)")
        ax.fill_between(x, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=f"C{i}", alpha=0.2)
    ax.set_xscale("log")
    ax.set(xlabel="cumulative training FLOPs (log; 3x forward per image)", ylabel="test accuracy",
           title=f"{report.claim.id}: accuracy against training compute")
    ax.legend()
    save(fig, path)


@plot("accuracy_vs_cost", "{claim}_accuracy_vs_cost.png")
def plot_accuracy_vs_cost(report: ClaimReport, path: Path) -> None:
    """Each arm's test accuracy (mean ± std over seeds) against its wall time per run on this
    machine (median over seeds; log scale): what each pipeline's accuracy costs."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (arm, cost) in enumerate(arm_costs(report.runs, list(report.claim.arms)).items()):
        m, s = _mean_sd(cost["acc"])
        ax.errorbar([cost["wall_s"]], [m], yerr=[s], marker="o", color=f"C{i}", capsize=3, label=arm)
        ax.annotate(f" {m:.3f}", (cost["wall_s"], m), fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="wall time per run on this machine, s (log; median over seeds)", ylabel="test accuracy",
           title=f"{report.claim.id}: accuracy against cost")
    ax.legend(fontsize=8)
    save(fig, path)


@plot("waterfall", "{claim}_waterfall.png")
def plot_waterfall(report: ClaimReport, path: Path) -> None:
    """The ladder: the bottom rung's accuracy, each change's forward gain as a floating bar with its
    95% interval, the top rung; each change's leave-one-out gain drawn beside it as a hollow bar."""
    values = per_arm(report.runs, "test_acc")
    arms = list(report.claim.arms)
    att = ladder.attribute(values, arms)
    fig, ax = plt.subplots(figsize=(1.4 * len(att.steps) + 4, 4.5))
    base = mean(values[att.rungs[0]].values())
    ax.bar(0, base, color="C7")
    level, labels = base, [att.rungs[0]]
    for i, step in enumerate(att.steps, start=1):
        labels.append(step.change)
        if step.forward is None:
            continue
        low, high = step.forward.interval()
        gain = step.forward.diff
        ax.bar(i - 0.18, gain, bottom=level, width=0.36, color="C2" if gain >= 0 else "C3",
               yerr=[[gain - low], [high - gain]], capsize=3, label="forward" if i == 1 else None)
        if step.without is not None:
            ax.bar(i + 0.18, step.without.diff, bottom=level, width=0.36, fill=False, edgecolor="k",
                   label="leave-one-out" if not any(s.without for s in att.steps[:i - 1]) else None)
        level += gain
    ax.bar(len(att.steps) + 1, mean(values[att.rungs[-1]].values()), color="C0")
    labels.append(att.rungs[-1])
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.set(ylabel="final test accuracy", title=f"{report.claim.id}: {att.rungs[0]} → {att.rungs[-1]}, one change at "
           f"a time ({report.verdict}; 95% CI over paired seeds)")
    ax.legend(fontsize=8)
    save(fig, path)


@plot("grad_norms", "{claim}_grad_norms.png")
def plot_grad_norms(report: ClaimReport, path: Path) -> None:
    """Mean first-epoch gradient norm of each layer's weights: vanishing gradients made visible."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, arm in enumerate(report.claim.arms):
        norms = defaultdict(list)
        for run in report.runs:
            if run.arm == arm:
                for layer, g in run.result.grad_norms.items():
                    norms[layer].append(g)
        layers = list(norms)
        ax.plot(range(len(layers)), [mean(norms[n]) for n in layers], marker="o", color=f"C{i}", label=arm)
        ax.set_xticks(range(len(layers)), layers, rotation=30, fontsize=8)
    ax.set_yscale("log")
    ax.set(ylabel="mean gradient L2 norm, epoch 1 (log)",
           title=f"{report.claim.id}: per-layer gradient norms ({' vs '.join(report.claim.arms)})")
    ax.legend()
    save(fig, path)


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
    lines += ["| claim | the lecture says | measured | verdict |", "|---|---|---|---|"]
    for r in reports:
        evidence = "<br>".join(e.replace("|", "\\|") for e in r.evidence)
        why = (f" — {r.reason}".replace("|", "\\|") if r.reason else "") + (f" ({r.look})" if r.look else "")
        lines.append(f"| {r.claim.id} | {r.claim.statement} | {evidence} | **{r.verdict}**{why} |")
    tuned = [r for r in reports if r.tuned]
    if tuned:
        lines += ["", "## At tuned learning rates (fair mode, `--tune-lr`)", "",
                  "Each arm's lr was tuned by its own Optuna study on a validation split carved from the training "
                  "set; the seeds then ran at that lr.", "",
                  "| claim | tuned lr per arm | measured | verdict |", "|---|---|---|---|"]
        for r in tuned:
            evidence = "<br>".join(e.replace("|", "\\|") for e in r.tuned.evidence)
            lines.append(f"| {r.claim.id} | {_lrs(r)} | {evidence} | **{r.tuned.verdict}** |")
    lines += ["", "## How each claim is measured", ""]
    for r in reports:
        arms = "; ".join(f"`{a}`: {o or 'the scale’s base config'}" for a, o in r.claim.arms.items())
        lines.append(f"- **{r.claim.id}** ({r.claim.rule}, minimum effect {r.claim.min_effect}): "
                     f"{r.claim.measures}. Arms: {arms or 'none (computed from the models)'}.")
    if any(r.comparisons for r in reports):
        family = sum(len(r.comparisons) for r in reports)
        lines += ["", "## Statistics of the comparisons", "",
                  f"All {family} comparisons above form one family: each p is Holm–Bonferroni adjusted over them "
                  "(family-wise α = 0.05) and the verdict uses the adjusted p. Arms run the same seeds, and a seed "
                  "fixes the data order, the augmentation draws and the initial weights, so each comparison is "
                  "judged on the per-seed differences: a paired t interval below 10 seeds, a seeded bootstrap-t "
                  "(10,000 resamples) from 10 (the t interval where ties leave resamples without spread); Welch's "
                  "test only where arms cannot pair. Printed intervals are unadjusted 95%; decisions use the "
                  "Holm-adjusted p. P(A better): the chance a run of the first arm beats a run of the second. "
                  "Power: of the rule as applied (better: at a true gain of twice the minimum effect; no_gain and "
                  "same: at a true difference of 0), at α = 0.05 / the family's size (Bonferroni, conservative "
                  "beside Holm), given the spread of the differences (the t-test's figure; from 10 seeds, where "
                  "the decision uses the bootstrap-t, it runs a few points high: 82% printed against about 78% "
                  "simulated for 'same' at 13 seeds); seeds for 80%: the seeds at which the rule reaches 80%. A "
                  "comparison whose differences have no spread decides nothing. An inconclusive "
                  "verdict names what it lacks: spread, effect, seeds, or significance after the correction.", ""]
        if looks:
            lines += [f"Seeds: `--seeds auto` — {len(looks)} looks ({'; '.join(looks)}). Each look judged at "
                      f"family-wise α = {alpha:.3g} (0.05 divided over the planned looks: Bonferroni alpha "
                      "spending), so stopping at the first decisive look keeps the false-positive rate at most "
                      "0.05.", ""]
        lines += summary_markdown(reports).splitlines()
    lines += ["", "Verdict rules (every test is against the minimum effect m, one-sided with its p doubled, so that "
              "Holm-adjusted p < 0.05 says the 95% interval lies beyond the bound): *better* — reproduced when the "
              "favoured arm's gain is significantly above m, contradicted when its loss is significantly above m, "
              "else inconclusive; *no_gain* — reproduced when the gain is significantly below m, contradicted when "
              "it is significantly above m; *same* — reproduced when the difference is significantly inside ±m "
              "(two one-sided tests), contradicted when significantly outside; *matches* — reproduced when the "
              "95% interval of every seed mean lies inside its tolerance of the printed number (a single run of "
              "the lecture's), contradicted when one lies wholly outside; *size* — measured ratios within a "
              "factor of 2 of the stated ones; *ladder* — the top rung beats the bottom one by the *better* rule, "
              "with each change's gain attributed both ways and interactions Holm-corrected among themselves.", "",
              "Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in sorted(path.parent.glob("*.png")))]
    path.write_text("\n".join(lines) + "\n")


VERDICT_ROW = re.compile(r"^\| (?P<claim>[a-z0-9_]+) \| .* \| "
                         r"\*\*(?P<verdict>reproduced|contradicted|inconclusive)\*\*")
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


def write_results(reports: list[ClaimReport], folder: Path, *, scale, device: str, command: str, env: dict,
                  trained: int, timing: dict | None = None, unfinished: dict | None = None,
                  looks: list[str] | None = None, alpha: float = ALPHA) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    write_csv(reports, folder / "claims.csv", scale.name, device)
    for r in reports:
        for name in r.claim.plots if r.runs else ():
            draw, filename = PLOTS[name]
            draw(r, folder / filename.format(claim=r.claim.id))
    plot_final_accuracy(reports, folder / "final_accuracy.png")
    write_markdown(reports, folder / "claims.md", scale=scale, command=command, env=env, trained=trained,
                   timing=timing or {}, unfinished=unfinished or {}, looks=looks or [], alpha=alpha)
    return sorted(folder.iterdir())
