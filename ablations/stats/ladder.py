"""The ladder claim: from LeNet to AlexNet one change at a time, and AlexNet minus each change.

Arms say their role (``claims.Arm``): the first arm is the bottom rung (LeNet); each ``rung``
arm adds its ``change`` to the rung before it, the last rung being the lecture's AlexNet; each
``without`` arm is that AlexNet without its ``change`` (leave-one-out).
Every arm runs the same seeds, so each change's gain is a paired per-seed difference: forward
(the rung minus the rung below it; the forward gains add up exactly to the total, AlexNet minus
LeNet) and leave-one-out (AlexNet minus AlexNet without it). Where the two orders give a change
different gains (the 95% interval of their per-seed difference excludes 0) the change interacts
with the others."""

from __future__ import annotations

from dataclasses import dataclass

from ablations.stats.significance import ALPHA, FLAT_SE, Difference, holm, paired


def roles(arms: dict) -> tuple[list[str], dict[str, str]]:
    """(rungs from the bottom up, change -> its leave-one-out arm) of a claim's arms (name -> Arm)."""
    names = list(arms)
    rungs = names[:1] + [n for n in names[1:] if arms[n].role == "rung"]
    return rungs, {arms[n].change: n for n in names if arms[n].role == "without"}


def _aligned(a: dict[int, float], b: dict[int, float]) -> tuple[list[float], list[float]]:
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


def _gain(a: dict[int, float], b: dict[int, float]) -> tuple[dict[int, float], Difference | None]:
    """Per-seed a - b on the seeds both finished, and its paired estimate (None below 2 pairs)."""
    diffs = {s: a[s] - b[s] for s in sorted(set(a) & set(b))}
    xa, xb = _aligned(a, b)
    return diffs, paired(xa, xb) if len(diffs) >= 2 else None


@dataclass
class Change:
    change: str
    forward: Difference | None  # the rung minus the rung below it
    without: Difference | None  # AlexNet minus AlexNet without the change (None: no such arm)
    interaction: Difference | None  # forward minus leave-one-out, per seed


@dataclass
class Attribution:
    rungs: list[str]
    total: Difference | None  # top rung minus bottom rung
    steps: list[Change]


def attribute(values: dict[str, dict[int, float]], arms: dict) -> Attribution:
    """Each change's gain in ``values`` (arm -> seed -> metric), both orders, with intervals, from
    the claim's arms (name -> Arm)."""
    rungs, removed = roles(arms)
    top = rungs[-1]
    steps = []
    for below, rung in zip(rungs, rungs[1:]):
        change = arms[rung].change
        forward_diffs, forward = _gain(values[rung], values[below])
        without, interaction = None, None
        if change in removed:
            loo_diffs, without = _gain(values[top], values[removed[change]])
            _, interaction = _gain(forward_diffs, loo_diffs)
        steps.append(Change(change, forward, without, interaction))
    return Attribution(rungs, _gain(values[top], values[rungs[0]])[1], steps)


def _fmt(d: Difference | None) -> str:
    if d is None:
        return "n/a (fewer than 2 paired seeds)"
    low, high = d.interval()
    return f"{d.diff:+.4f} [{low:+.4f}, {high:+.4f}]"


def describe(att: Attribution, metric: str) -> list[str]:
    """The report's lines: forward attribution with shares, leave-one-out, interactions."""
    total = att.total.diff if att.total else 0.0

    def share(d: Difference | None) -> str:
        return f" ({d.diff / total:.0%} of the total)" if d and total else ""

    lines = [f"attribution of {metric} (95% CI, paired by seed), {att.rungs[0]} → {att.rungs[-1]}: total "
             f"{_fmt(att.total)}; " + "; ".join(f"{s.change} {_fmt(s.forward)}{share(s.forward)}" for s in att.steps)]
    loo = [s for s in att.steps if s.without is not None]
    if loo:
        lines.append(f"leave-one-out ({att.rungs[-1]} minus it without the change): "
                     + "; ".join(f"{s.change} {_fmt(s.without)}" for s in loo))
        adjusted = interactions(att)
        found = [s for s in loo if adjusted.get(s.change, 1.0) < ALPHA]
        lines.append(f"interactions (the two orders disagree: forward − leave-one-out differs from 0 at Holm-adjusted "
                     f"p < {ALPHA} over the {len(adjusted)} testable changes): "
                     + ("; ".join(f"{s.change} forward {s.forward.diff:+.4f} vs leave-one-out {s.without.diff:+.4f} "
                                  f"(difference {_fmt(s.interaction)}, p {s.interaction.p_differs():.3g}, "
                                  f"Holm-adjusted {adjusted[s.change]:.3g})" for s in found)
                        if found else "none detected (Holm-adjusted p: "
                        + ", ".join(f"{c} {p:.3g}" for c, p in adjusted.items()) + ")"))
    return lines


def interactions(att: Attribution) -> dict[str, float]:
    """change -> Holm-adjusted p of its interaction (forward minus leave-one-out is 0), over the
    changes whose interaction can be tested (a leave-one-out arm and a spread in the differences)."""
    return holm({s.change: s.interaction.p_differs() for s in att.steps
                 if s.interaction is not None and s.interaction.se > FLAT_SE})
