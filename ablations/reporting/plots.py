"""The claims' plots: a registry that claims name (``Claim.plots``) and the PNGs the report draws.

A plot is one decorated function, here or anywhere else (a test, a plugin):

    @plot("curves", "curves_{claim}.png")
    def plot_curves(report, path) -> None: ...

It gets the claim's report (its runs, and ``values``: the per-seed numbers the judge used) and
the path to write."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from statistics import mean, stdev

from ablations.running.speed import image_counts
from ablations.stats import ladder
from ablations.stats.significance import mean_sd
from ablations.verdicts.evidence import arm_costs
from ablations.verdicts.judge import ClaimReport, label
from alexnet.plots import plt, save

PLOTS: dict[str, tuple[Callable, str]] = {}  # name -> (function, file name with {claim})


def plot(name: str, filename: str):
    """Register a plot written to RESULTS/<scale>/<device>/``filename`` (``{claim}`` is the claim id)."""
    def register(fn):
        PLOTS[name] = (fn, filename)
        return fn
    return register


def draw(reports: list[ClaimReport], folder: Path) -> None:
    """Every claim's plots (those with runs), then the final accuracy of every arm; old PNGs go first."""
    for old in folder.glob("*.png"):
        old.unlink()
    for r in reports:
        for name in r.claim.plots if r.runs else ():
            fn, filename = PLOTS[name]
            fn(r, folder / filename.format(claim=r.claim.id))
    plot_final_accuracy(reports, folder / "final_accuracy.png")


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
    fig.suptitle(f"{report.claim.id} — {label(report.verdict, report.proxy)} (mean ± std over seeds)")
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
            m, s = mean_sd([run.result.final("test_acc") for run in r.runs if run.arm == arm])
            ax.bar(x, m, yerr=s, capsize=4, color=f"C{i}")
            ax.text(x, 0.01, arm, rotation=90, ha="center", va="bottom", fontsize=8, color="white")
            labels.append((x, r.claim.id))
            x += 1
        x += 0.6
    ax.set_xticks([sum(p for p, c in labels if c == r.claim.id) / len(r.claim.arms) for r in trained])
    ax.set_xticklabels([f"{r.claim.id}\n{label(r.verdict, r.proxy)}" for r in trained])
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
        step = 3 * runs[0].result.flops_per_image * image_counts(runs[0].config)[0]  # training FLOPs per epoch
        m, s = zip(*(mean_sd(per_epoch[e]) for e in epochs))
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
        m, s = mean_sd(cost["acc"])
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
    values = report.values("test_acc")
    att = ladder.attribute(values, report.claim.arms)
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
           f"a time ({label(report.verdict, report.proxy)}; 95% CI over paired seeds)")
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
