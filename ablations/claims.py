"""The lecture's claims as data: what it says, the arms that test it, and the verdict rule.

An arm (``Arm``) is a set of overrides of the scale's base Config (which is the lecture's Config
at the ``full`` scale), with what else it is: its role in a ladder, its epochs (a factor, or
those that match another arm's training FLOPs) and the scales that leave it out. Arms with equal
configs are trained once and shared between claims. ``ablations.running.plan.validate`` checks every
name a claim or scale uses before any training."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from alexnet.config import LENET, TEST_IMAGES, TRAIN_IMAGES, Config

# metric -> True when higher is better
METRICS = {"test_acc": True, "train_acc": True, "train_eval_acc": True, "train_loss": False, "gap": False}


@dataclass(frozen=True)
class Arm:
    overrides: dict = field(default_factory=dict)  # Config fields on top of the scale's base config
    role: str = ""  # the ladder's: "rung" (adds ``change`` to the rung below) or "without" (AlexNet less ``change``)
    change: str = ""  # the ladder's change this arm adds or removes
    epochs_factor: int = 1  # multiplies the scale's epochs
    match_flops: str | None = None  # the arm whose training FLOPs its epochs match
    dropped_at: tuple[str, ...] = ()  # scales that leave it out

    def __str__(self) -> str:
        """Its overrides as the reports print them (``{'augment': True, 'epochs_factor': 3}``)."""
        shown = {**self.overrides, **({"epochs_factor": self.epochs_factor} if self.epochs_factor != 1 else {}),
                 **({"match_flops": self.match_flops} if self.match_flops else {})}
        return str(shown) if shown else ""


def rung(change: str, overrides: dict, **kw) -> Arm:
    """A ladder rung: the rung below it plus ``change``."""
    return Arm(overrides, role="rung", change=change, **kw)


def without(change: str, overrides: dict, **kw) -> Arm:
    """A ladder arm: the top rung without ``change`` (leave-one-out)."""
    return Arm(overrides, role="without", change=change, **kw)


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str  # what the lecture (or the AlexNet paper) says
    rule: str  # a name in ablations.verdicts.rules.RULES: better | no_gain | same | matches | ladder | size | shapes
    arms: dict[str, Arm] = field(default_factory=dict)  # first arm: the one the claim favours (a dict: its overrides)
    metric: str = "test_acc"
    min_effect: float = 0.0  # smallest difference worth calling an effect, in the metric's units
    optional: bool = False  # run only when named with --only, or at scales listing it
    measures: str = ""
    context_metrics: tuple[str, ...] = ()  # compared between the arms beside ``metric``, not judged
    evidence: tuple[str, ...] = ()  # names in ablations.verdicts.evidence.EVIDENCE: more lines, or verdicts that count
    plots: tuple[str, ...] = ("curves",)  # names in ablations.reporting.plots.PLOTS, drawn when the claim has runs
    versus: tuple[tuple[str, str], ...] = ()  # comparisons judged by the same rule beside (first arm, second arm)
    printed: dict = field(default_factory=dict)  # matches: metric -> (printed value, tolerance)
    tuned_arms: tuple[str, ...] = ()  # arms the scale's lr cannot train: run at the lr of their own study

    def __post_init__(self):
        object.__setattr__(self, "arms", {name: arm if isinstance(arm, Arm) else Arm(dict(arm))
                                          for name, arm in self.arms.items()})

    def comparisons(self) -> list[tuple[str, str]]:
        """(favoured arm, other arm) pairs the rule judges: the first two arms, then ``versus``."""
        arms = list(self.arms)
        return [(arms[0], arms[1]), *self.versus] if len(arms) >= 2 else []


# the 2000s pipeline (alexnet.classical): an SVM on hand-engineered features, fitted once on the 28-px images
SVM = {"arch": "svm", "input_size": 28, "epochs": 1}

CLAIMS = [
    Claim("relu", "ReLU instead of sigmoid (as in LeNet) mitigates vanishing gradients and trains better",
          "better", {"relu": {}, "sigmoid": {"activation": "sigmoid"}}, "test_acc", 0.02,
          measures="final test accuracy; per-layer gradient norms over the first epoch",
          evidence=("grad_norms",), plots=("curves", "grad_norms")),
    Claim("dropout", "dropout (p=0.5) after the dense layers controls overfitting",
          "better", {"p=0.5": {}, "p=0": {"dropout": 0.0}}, "gap", 0.005,
          measures="train - test accuracy gap of the last epoch, both in eval mode (train accuracy on a fixed "
                   "sample of the training subset the test set's size, dropout off, as test accuracy is measured; "
                   "d2l's running train accuracy, with dropout on, would lower the p=0.5 arm's by itself); test "
                   "accuracy beside it; testable only where the arm without dropout overfits (its gap's 95% "
                   "interval over seeds above the minimum effect)", context_metrics=("test_acc",),
          evidence=("overfits",)),
    Claim("maxpool", "max pooling (instead of LeNet's average pooling)",
          "better", {"max": {}, "avg": {"pool": "avg"}}, "test_acc", 0.01,
          measures="final test accuracy"),
    Claim("input224", "resizing 28-px Fashion-MNIST to 224 adds no information, only compute",
          "no_gain", {"224 px": {"input_size": 224}, "28 px": {"input_size": 28},
                      "28 px, equal FLOPs": Arm({"input_size": 28}, match_flops="224 px")}, "test_acc", 0.01,
          measures="final test accuracy at equal epochs, and against a 28-px arm trained for the 224-px arm's "
                   "training FLOPs (its epochs times the ratio of the models' own forward-FLOP counts, rounded: "
                   "3.96 at width 1, 4.35 at width 1/4); FLOPs per image and training images/s", evidence=("compute",),
          plots=("curves", "flops_vs_accuracy"), versus=(("224 px", "28 px, equal FLOPs"),)),
    Claim("augment", "data augmentation (here: random flips and 2-px shifts) improves generalisation",
          "better", {"augment": {"augment": True}, "none": {}}, "test_acc", 0.005,
          measures="final test accuracy and train - test gap", context_metrics=("gap",)),
    Claim("augment_long", "data augmentation pays off with longer training (3x the scale's epochs)",
          "better", {"augment": Arm({"augment": True}, epochs_factor=3), "none": Arm({}, epochs_factor=3)},
          "test_acc", 0.005, optional=True, measures="final test accuracy after 3x the epochs",
          context_metrics=("gap",)),
    Claim("features", "learned CNN features beat the hand-engineered features + SVM of the 2000s (SIFT/HOG and "
          "kernel methods): features and classifier trained together", "better",
          {"AlexNet": {}, "HOG + RBF SVM": {**SVM, "features": "hog"},
           "HOG + linear SVM": {**SVM, "features": "hog", "kernel": "linear", "svm_c": 1.0},
           "RBF SVM on pixels": {**SVM, "features": "pixels"}}, "test_acc", 0.01,
          versus=(("AlexNet", "HOG + linear SVM"), ("AlexNet", "RBF SVM on pixels")),
          measures="final test accuracy of the scale's AlexNet (the shared baseline run) against each classical "
                   "pipeline on the same training images (the SVM on at most 10,000 of them, a stratified subset: an "
                   "exact RBF SVM on 60,000 takes 30-60 CPU-minutes): HOG (9 orientations, 4x4-px cells, 2x2-cell "
                   "blocks) + RBF SVM (C=10, Fashion-MNIST's benchmark setting), HOG + linear SVM (C=1, "
                   "scikit-learn's default), RBF SVM (C=10) on the pixels. Reproduced only when AlexNet beats every "
                   "one, so the best of them; contradicted when any beats it. The SVMs are deterministic: each seed "
                   "pairs AlexNet's run of that seed with the same fit, compared image by image on the same test "
                   "images, so that the test set's own noise counts beside the seeds'. Cost beside accuracy: wall "
                   "time on this machine and FLOPs per image", evidence=("cost",), plots=("accuracy_vs_cost",)),
    Claim("size", "AlexNet is a bigger, deeper LeNet: about 10x the parameters and 260x the compute",
          "size", measures="parameter and forward-FLOP counts of both models, from the modules"),
    Claim("d2l", "train_ch6(lr=0.01, 10 epochs, batch 128) prints about loss 0.331, train acc 0.878, "
                 "test acc 0.883", "matches", {"lecture": {}},
          measures="the baseline's per-seed means against the printed numbers (tolerance: "
                   "±0.05 loss, ±0.02 accuracy); comparable only at the full scale",
          printed={"train_loss": (0.331, 0.05), "train_acc": (0.878, 0.02), "test_acc": (0.883, 0.02)}),
    Claim("lenet", "the LeNet lecture: d2l's LeNet (sigmoid, average pooling) trained by train_ch6(lr=0.9, 10 epochs, "
                   "batch 256) prints about loss 0.469, train acc 0.823, test acc 0.779", "matches",
          {"LeNet": dict(LENET)}, optional=True,
          measures="LeNet-5's per-seed means against the LeNet lecture's printout (tolerance: ±0.05 loss, ±0.02 "
                   "accuracy); comparable only at the full scale (LeNet's own settings on all 60,000 images)",
          printed={"train_loss": (0.469, 0.05), "train_acc": (0.823, 0.02), "test_acc": (0.779, 0.02)}),
    Claim("ladder", "AlexNet beats LeNet: what makes it better — ReLU, max pooling, depth and width, dropout, "
                    "224-px input — one change at a time", "ladder",
          {"LeNet": Arm({"arch": "lenet", "input_size": 28, "activation": "sigmoid", "pool": "avg", "dropout": 0.0},
                        epochs_factor=10),
           "+ ReLU": rung("ReLU", {"arch": "lenet", "input_size": 28, "pool": "avg", "dropout": 0.0}),
           "+ max pooling": rung("max pooling", {"arch": "lenet", "input_size": 28, "dropout": 0.0}),
           "+ depth and width": rung("depth and width", {"input_size": 28, "dropout": 0.0}),
           "+ dropout (AlexNet at 28 px)": rung("dropout", {"input_size": 28}),
           "+ 224 px (the lecture's AlexNet)": rung("224 px", {"input_size": 224}, dropped_at=("quick", "smoke")),
           "− ReLU": without("ReLU", {"activation": "sigmoid"}, epochs_factor=10, dropped_at=("quick",)),
           "− max pooling": without("max pooling", {"pool": "avg"}),
           "− depth and width": without("depth and width", {"arch": "lenet", "input_size": 28}),
           "− dropout": without("dropout", {"dropout": 0.0}),
           "− 224 px": without("224 px", {"input_size": 28}, dropped_at=("quick", "smoke"))},
          "test_acc", 0.02, optional=True,
          measures="final test accuracy of each rung from d2l's LeNet-5 (sigmoid, average pooling) to the lecture's "
                   "AlexNet, one change at a time, and of AlexNet without each change, at the scale's optimiser "
                   "settings, except the two sigmoid nets (LeNet, − ReLU), which at the scale's epochs and lr stay "
                   "at chance: they train 10x the epochs, at the lr their own Optuna study finds on a validation "
                   "split of the training set (--tune-lr N: every arm also at its tuned lr); judged: AlexNet beats "
                   "LeNet; each change's gain attributed both ways with paired intervals (the ReLU step also "
                   "shortens training 10x). '− depth and width' is LeNet-5 with ReLU, max pooling and dropout, at "
                   "28 px", evidence=("attribution",), plots=("curves", "waterfall"),
          tuned_arms=("LeNet", "− ReLU")),
    Claim("shapes", "the layer-by-layer output shapes printed for a 1x1x224x224 input", "shapes",
          measures="the model's own shape trace against the lecture's printout"),
    Claim("notes", "the lecture notes' own layer table beside the code: input (3, 224, 224); Conv1 11x11/4 -> "
          "(96, 55, 55); MaxPool1 3x3/2 -> (256, 27, 27); Conv2 5x5/2 -> (384, 13, 13); MaxPool2 3x3/2 -> (384, 13, "
          "13); Conv3-5 3x3; MaxPool3 3x3; dense 4096, 4096, 1000", "layers",
          measures="each row of the table against the code's own network (its modules and its shape trace for a "
                   "1x224x224 input), and each row that differs against the 2012 paper's ImageNet network: the "
                   "paper's where it agrees with it, a slip of the notes where it agrees with neither"),
    Claim("overlap", "AlexNet paper: overlapping pooling (3x3, stride 2) beats non-overlapping (2x2, stride 2)",
          "better", {"3x3/2": {}, "2x2/2": {"pool_kernel": 2, "pool_stride": 2}}, "test_acc", 0.004,
          optional=True, measures="final test accuracy (the paper reports 0.4% lower top-1 error)"),
    Claim("precision", "this suite's GPU default, bf16 autocast + channels_last, reaches the same accuracy as the "
          "lecture's fp32 (so it changes no verdict)", "same",
          {"bf16": {"precision": "bf16"}, "fp32": {"precision": "fp32"}}, "test_acc", 0.01, optional=True,
          measures="final test accuracy of the scale's baseline in bf16 autocast and in fp32 (TF32 off); "
                   "equivalence: the 95% interval of the difference inside ± the minimum effect"),
    Claim("lrn", "AlexNet paper: local response normalisation improves accuracy",
          "better", {"lrn": {"lrn": True}, "none": {}}, "test_acc", 0.005, optional=True,
          measures="final test accuracy (the paper reports 1.4% lower top-1 error)"),
]
BY_ID = {c.id: c for c in CLAIMS}

# The lecture's numbers, quoted from its text and printout.
STATED_RATIOS = {"params": 10, "flops": 260}
LECTURE_TRACE = [
    ("Conv2d", (1, 96, 54, 54)), ("ReLU", (1, 96, 54, 54)), ("MaxPool2d", (1, 96, 26, 26)),
    ("Conv2d", (1, 256, 26, 26)), ("ReLU", (1, 256, 26, 26)), ("MaxPool2d", (1, 256, 12, 12)),
    ("Conv2d", (1, 384, 12, 12)), ("ReLU", (1, 384, 12, 12)),
    ("Conv2d", (1, 384, 12, 12)), ("ReLU", (1, 384, 12, 12)),
    ("Conv2d", (1, 256, 12, 12)), ("ReLU", (1, 256, 12, 12)), ("MaxPool2d", (1, 256, 5, 5)),
    ("Flatten", (1, 6400)), ("Linear", (1, 4096)), ("ReLU", (1, 4096)), ("Dropout", (1, 4096)),
    ("Linear", (1, 4096)), ("ReLU", (1, 4096)), ("Dropout", (1, 4096)), ("Linear", (1, 10)),
]

# The lecture notes' layer table, quoted as written (notes), and the same rows of the 2012 paper's
# ImageNet network (Krizhevsky et al. 2012: RGB input, 96-256-384-384-256 channels, 55x55 after the
# stem, which needs a 227-px input, 1,000 classes). Fields: kernel, stride, shape (C, H, W), units.
NOTES_TABLE = [
    ("input", {"shape": (3, 224, 224)}, {"shape": (3, 224, 224)}),
    ("Conv1", {"kernel": 11, "stride": 4, "shape": (96, 55, 55)}, {"kernel": 11, "stride": 4, "shape": (96, 55, 55)}),
    ("MaxPool1", {"kernel": 3, "stride": 2, "shape": (256, 27, 27)}, {"kernel": 3, "stride": 2, "shape": (96, 27, 27)}),
    ("Conv2", {"kernel": 5, "stride": 2, "shape": (384, 13, 13)}, {"kernel": 5, "stride": 1, "shape": (256, 27, 27)}),
    ("MaxPool2", {"kernel": 3, "stride": 2, "shape": (384, 13, 13)},
     {"kernel": 3, "stride": 2, "shape": (256, 13, 13)}),
    ("Conv3", {"kernel": 3}, {"kernel": 3}), ("Conv4", {"kernel": 3}, {"kernel": 3}),
    ("Conv5", {"kernel": 3}, {"kernel": 3}), ("MaxPool3", {"kernel": 3}, {"kernel": 3}),
    ("Dense1", {"units": 4096}, {"units": 4096}), ("Dense2", {"units": 4096}, {"units": 4096}),
    ("Dense3", {"units": 1000}, {"units": 1000}),
]


@dataclass(frozen=True)
class Scale:
    name: str
    description: str
    base: dict  # overrides of the lecture's Config for every arm
    seeds: int
    per_claim: dict = field(default_factory=dict)  # claim id -> extra overrides at this scale
    claim_seeds: dict = field(default_factory=dict)  # claim id -> its seeds, where not ``seeds`` (--seeds N: N)
    optional: tuple[str, ...] = ()  # optional claims this scale runs by default
    cannot_test: dict = field(default_factory=dict)  # claim id -> why this scale cannot judge it
    validation_size: int = 5000  # images held out of the training set to tune lr (the fair-lr mode)
    tune_trials: int = 6  # trials of the lr study of a claim's tuned_arms (--tune-lr N: N)
    at_lecture: dict = field(default_factory=dict)  # claim id -> what may change at the lecture's scale (proxies)

    def at_lecture_note(self, claim_id: str, verdict: str) -> list[str]:
        """The sentence a proxy's decided verdict carries: what may change at the lecture's scale."""
        note = self.at_lecture.get(claim_id)
        return [f"at the lecture's scale: {note}"] if note and verdict != "inconclusive" else []

    def versus_lecture(self) -> str:
        """How this scale's runs differ from the lecture's, computed from the two configs:
        ``width 0.25 (lecture 1), ..., 375 SGD steps per run (lecture 4,690)``."""
        base, lecture = Config(**self.base), Config()
        if base == lecture and not self.per_claim:
            return "the lecture's settings"

        def steps(c: Config) -> int:
            return math.ceil((c.train_size or TRAIN_IMAGES) / c.batch_size) * c.epochs

        labels = {"width": "width {:g}", "input_size": "{}-px input", "train_size": "{:,} training images",
                  "test_size": "{:,} test images", "epochs": "{} epochs", "batch_size": "batch {}", "lr": "lr {:g}",
                  "momentum": "momentum {:g}"}
        defaults = {"train_size": TRAIN_IMAGES, "test_size": TEST_IMAGES}  # None: the whole set
        parts = []
        for name, label in labels.items():
            ours, theirs = (defaults.get(name) if getattr(c, name) is None else getattr(c, name)
                            for c in (base, lecture))
            if ours != theirs:
                parts.append(f"{label.format(ours)} (lecture: {label.format(theirs)})")
        if steps(base) != steps(lecture):
            parts.append(f"{steps(base):,} SGD steps per run (lecture: {steps(lecture):,})")
        parts += [f"{claim} arms: " + ", ".join(f"{k} {v}" for k, v in over.items())
                  for claim, over in self.per_claim.items()]
        return ", ".join(parts)


SCALES = {
    "full": Scale("full", "the lecture's settings: 60,000 images at 224 px, 10 epochs, batch 128, SGD lr 0.01 "
                  "(for a GPU; bf16 autocast + channels_last there unless --precision fp32)", {}, 3,
                  optional=("augment_long", "overlap", "lrn", "precision", "lenet")),
    "quick": Scale(
        "quick", "a CPU proxy of the lecture's claims: AlexNet at 1/4 width (conv channels 24-64-96-96-64, "
        "dense 1,024) on the native 28-px images (3x3 stem), a 4,000-image stratified training subset, 3 epochs "
        "of batch 32 (375 SGD steps), SGD lr 0.01 with momentum 0.9, 1,000 test images, 5 seeds (relu 3, its gain "
        "is about 30 seed spreads; maxpool 8 and augment 12, whose effects are a few: at 5 seeds augment's verdict "
        "changed with the thread count); "
        "input224 on 1,200 training and 500 test images, its 224-px arm at the same width; dropout where there is "
        "overfitting to control: the same 375 steps on 1,000 training images (12 epochs), where the arm without "
        "dropout overfits by about 6 points (its train - test gap: 0.061-0.068 over the 6 seeds measured to choose "
        "it, against 0.022 on 4,000 images), 12 seeds (the gap's reduction by dropout measured 0.006-0.036 there, "
        "an effect of a few spreads); the ladder on its "
        "28-px rungs, without the tuned sigmoid AlexNet ('− ReLU': the relu claim measures that change), its "
        "sigmoid LeNet trained 10x the epochs (30: at 3 it stays at chance; it leaves chance after 6-12, at lr "
        "0.01-0.1, still 3.5x less training compute than AlexNet-1/4's 3 epochs); features' SVMs on the same "
        "4,000 training images",
        {"input_size": 28, "width": 0.25, "train_size": 4000, "test_size": 1000, "epochs": 3, "batch_size": 32,
         "momentum": 0.9},
        5, per_claim={"input224": {"train_size": 1200, "test_size": 500},
                      "dropout": {"train_size": 1000, "epochs": 12}},
        claim_seeds={"relu": 3, "maxpool": 8, "augment": 12, "dropout": 12},
        validation_size=1000, optional=("ladder",),
        cannot_test={"d2l": "the printed numbers are for 60,000 images at 224 px and 10 epochs; run --scale full",
                     "lenet": "the printed numbers are for 60,000 images and 10 epochs; run --scale full"},
        at_lecture={
            "features": "the lecture's own AlexNet prints test accuracy 0.883 after 4,690 steps at full width and "
                        "224 px, against this proxy's AlexNet-1/4 after 375; --scale full decides the lecture's "
                        "comparison",
            "augment": "the lecture trains 10 epochs on 60,000 images; what augmentation costs after 375 steps need "
                       "not hold there (augment_long tests 3x the epochs)",
            "dropout": "judged where the arm without dropout overfits (1,000 images, 12 epochs); whether the "
                       "lecture's 60,000-image run overfits at all, the full scale shows",
            "ladder": "LeNet trains 10x the epochs of the other rungs here, at its own tuned lr (the others at the "
                      "scale's 0.01), so the ReLU step also changes both; several LeNet-sized rungs beat AlexNet-1/4, "
                      "which after 375 steps is under-trained beside the lecture's AlexNet"}),
    "smoke": Scale(
        "smoke", "CI-sized: every code path in a few minutes, no meaningful verdicts (100 images, 1 epoch)",
        {"input_size": 28, "train_size": 100, "test_size": 100, "epochs": 1, "batch_size": 32, "momentum": 0.9},
        2, cannot_test={"d2l": "the printed numbers are for the full scale",
                        "lenet": "the printed numbers are for the full scale"}, validation_size=100,
        optional=("ladder",), tune_trials=2),
}
