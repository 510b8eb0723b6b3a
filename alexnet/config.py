"""Run configuration: one frozen dataclass whose defaults are the lecture's.

Variants are made with ``dataclasses.replace(config, field=value)``; every value is
validated in ``__post_init__`` so a bad one fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from .kinds import KINDS, kind_of

ARCHS = KINDS  # the registered kinds of arm (alexnet.kinds): alexnet, lenet and svm are built in
FEATURES = ("hog", "pixels")  # what the SVM of arch="svm" sees
KERNELS = ("linear", "rbf")
ACTIVATIONS = ("relu", "sigmoid", "tanh")
POOLS = ("max", "avg")
INPUT_SIZES = (224, 28)  # 224: the lecture's 11x11/4 stem; 28: the adapted 3x3/1 stem
PRECISIONS = ("fp32", "tf32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000  # Fashion-MNIST, 6,000 and 1,000 per class
STEM_OUTPUT = {224: 54, 28: 28}  # side after the 11x11/4 (224 px) or 3x3/1 (28 px) stem
ALEXNET_CHANNELS = (96, 256, 384, 384, 256, 4096)  # the five convolutions' channels, then the hidden dense units


def _opt(default, help, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class Config:
    """One run's configuration; every default is the lecture's (AlexNet at 224 px, SGD lr 0.01,
    batch 128, 10 epochs). Make variants with ``dataclasses.replace``; a bad value fails here,
    naming the field, the value and what is allowed. ``arch`` names a registered kind of arm."""

    # model
    arch: str = _opt("alexnet", "network: alexnet, or d2l's LeNet-5 (28 px only; its 2x2 pooling, no pool_kernel, "
                     "pool_stride or lrn), or svm: the 2000s pipeline, hand-engineered features and a support vector "
                     "machine (scikit-learn; 28 px, 1 epoch: fitted once; the SGD and network fields are unused)",
                     ARCHS)
    activation: str = _opt("relu", "hidden-layer activation", ACTIVATIONS)
    dropout: float = _opt(0.5, "dropout probability after each hidden dense layer, in [0, 1)")
    pool: str = _opt("max", "pooling type", POOLS)
    pool_kernel: int = _opt(3, "pooling window in px (3 with stride 2 overlaps, as in AlexNet)")
    pool_stride: int = _opt(2, "pooling stride in px")
    input_size: int = _opt(224, "input side: 224 (resized, lecture stem) or 28 (native, 3x3 stem)", INPUT_SIZES)
    lrn: bool = _opt(False, "local response normalisation after conv1 and conv2 (AlexNet paper)")
    width: float = _opt(1.0, "AlexNet width multiplier: every convolution's channels and the two hidden dense "
                        "layers' units times this, rounded, at least 1 (1: the lecture's 96-256-384-384-256, 4096; "
                        "0.25: 24-64-96-96-64, 1024); LeNet ignores it")
    # the classical pipeline (arch="svm")
    features: str = _opt("hog", "the SVM's input: HOG descriptors (9 orientations, 4x4-px cells, 2x2-cell blocks) "
                         "or the raw pixels scaled to [0, 1]", FEATURES)
    kernel: str = _opt("rbf", "the SVM's kernel: linear (LinearSVC) or rbf (SVC, gamma 'scale')", KERNELS)
    svm_c: float = _opt(10.0, "the SVM's regularisation C, a finite number > 0")
    svm_max_train: int = _opt(10_000, "the SVM fits on at most this many of the training images (a stratified "
                              "subset of them; an exact RBF SVM on 60,000 takes 30-60 CPU-minutes), a multiple of 10")
    # optimisation
    lr: float = _opt(0.01, "SGD learning rate, > 0")
    momentum: float = _opt(0.0, "SGD momentum, in [0, 1)")
    weight_decay: float = _opt(0.0, "SGD weight decay (L2), >= 0")
    batch_size: int = _opt(128, "minibatch size, > 0")
    epochs: int = _opt(10, "training epochs, > 0")
    # data
    augment: bool = _opt(False, "random horizontal flips and shifts of up to 2 px (on the 28-px image)")
    train_size: int | None = _opt(None, "stratified training subset (first N/10 per class); None: all 60,000")
    test_size: int | None = _opt(None, "stratified subset of the test set; None: all 10,000")
    validation_size: int | None = _opt(None, "hold out the last N/10 training images of each class and report "
                                       "val_acc on them instead of test_acc (for tuning: the test set stays unseen)")
    # execution (recorded with every run; bf16 and tf32 change numerics)
    precision: str = _opt("fp32", "fp32, tf32 (CUDA only) or bf16 autocast", PRECISIONS)
    channels_last: bool = _opt(True, "NHWC memory layout for model and inputs (faster on CPU and GPU; "
                               "same numbers up to float rounding)")
    compile: bool = _opt(False, "torch.compile the model")
    device: str = _opt("auto", "auto picks CUDA when present", DEVICES)

    def __post_init__(self) -> None:
        for name in ("arch", "activation", "pool", "input_size", "precision", "device", "features", "kernel"):
            choices = self.__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in choices:
                fail(name, getattr(self, name), "one of " + ", ".join(map(str, choices)))
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", self.dropout, "a probability in [0, 1)")
        if isinstance(self.width, bool) or not (isinstance(self.width, (int, float)) and 0 < self.width <= 4
                                                  and math.isfinite(self.width)):
            fail("width", self.width, "a number in (0, 4] (1: the lecture's AlexNet; 0.25: a quarter of its channels)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            fail("lr", self.lr, "a finite number > 0")
        if not 0.0 <= self.momentum < 1.0:
            fail("momentum", self.momentum, "a number in [0, 1)")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            fail("weight_decay", self.weight_decay, "a finite number >= 0")
        for name in ("batch_size", "epochs", "pool_kernel", "pool_stride"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) > 0):
                fail(name, getattr(self, name), "an integer > 0")
        for name in ("train_size", "test_size", "validation_size"):
            n = getattr(self, name)
            if n is not None and not (isinstance(n, int) and n >= 10 and n % 10 == 0):
                fail(name, n, "a multiple of 10 (equal images per class), at least 10, or None for all")
        self._check_sizes()
        if not (isinstance(self.svm_c, (int, float)) and not isinstance(self.svm_c, bool) and self.svm_c > 0
                and math.isfinite(self.svm_c)):
            fail("svm_c", self.svm_c, "a finite number > 0 (the SVM's C; 10 fits Fashion-MNIST)")
        if not (isinstance(self.svm_max_train, int) and self.svm_max_train >= 10 and self.svm_max_train % 10 == 0):
            fail("svm_max_train", self.svm_max_train, "a multiple of 10 (equal images per class), at least 10")
        kind_of(self).check(self)  # what this kind of arm cannot take

    def _check_sizes(self) -> None:
        """Subsets that exist in Fashion-MNIST, and a batch no larger than the training data."""
        if self.validation_size is not None and self.validation_size >= TRAIN_IMAGES:
            fail("validation_size", self.validation_size, f"fewer than the {TRAIN_IMAGES:,} training images")
        available = TRAIN_IMAGES - (self.validation_size or 0)
        if self.train_size is not None and self.train_size > available:
            fail("train_size", self.train_size, f"at most {available:,} (the training images"
                  + (f" left after validation_size={self.validation_size})" if self.validation_size else ")"))
        if self.test_size is not None and self.test_size > TEST_IMAGES:
            fail("test_size", self.test_size, f"at most the {TEST_IMAGES:,} test images")
        if self.batch_size > (self.train_size or available):
            fail("batch_size", self.batch_size, f"at most the {self.train_size or available:,} training images")

    def feature_side(self) -> int:
        """Side of the last feature map (the first dense layer takes the last convolution's channels
        * side**2 inputs); each of the three pooling layers needs a map at least as wide as its window."""
        side = STEM_OUTPUT[self.input_size]
        for _ in range(3):  # the convolutions between poolings keep the side
            if side < self.pool_kernel:
                fail("pool_kernel", self.pool_kernel, f"a window that fits the {side}-px map it pools "
                      f"(input_size={self.input_size}, pool_stride={self.pool_stride}); the lecture's is 3")
            side = (side - self.pool_kernel) // self.pool_stride + 1
        return side

    @property
    def sgd(self) -> bool:
        """Trained by SGD (a network), so ``lr`` and the optimiser's fields mean something; a fitted
        kind (the SVM) is not, and its result does not depend on the seed (it is fitted once)."""
        return kind_of(self).sgd

    def channels(self) -> tuple[int, ...]:
        """AlexNet's five convolutions' output channels and its hidden dense units, at ``width``."""
        return tuple(max(1, round(c * self.width)) for c in ALEXNET_CHANNELS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """A short stable hash of every field: equal configs give equal keys. A field added later
        (``LATER_FIELDS``) is left out of the hash at its default, so configs keep the keys they had
        before it existed (an older result still matches its config when imported or resumed; a
        run is reused only under the same ``code_version`` too). A kind that declares its
        ``key_fields`` (the SVM) hashes only those: the same SVM on the same images is one run
        whatever the device, precision or optimiser settings beside it."""
        fields = self.to_dict()
        if kind_of(self).key_fields is not None:
            fields = {name: fields[name] for name in kind_of(self).key_fields}
        for name, default in LATER_FIELDS.items():
            if fields.get(name, default) == default:
                fields.pop(name, None)
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


LATER_FIELDS = {"width": 1, "features": "hog", "kernel": "rbf", "svm_c": 10.0, "svm_max_train": 10_000}

# d2l's LeNet lecture: LeNet-5 with sigmoid and average pooling, trained by train_ch6 at lr 0.9,
# batch 256, 10 epochs; it prints loss 0.469, train acc 0.823, test acc 0.779.
LENET = {"arch": "lenet", "input_size": 28, "activation": "sigmoid", "pool": "avg", "dropout": 0.0, "lr": 0.9,
         "batch_size": 256}


def fail(name: str, value, allowed: str) -> None:
    """Refuse ``name=value`` in one line that says what is allowed (a kind's ``check`` uses it too)."""
    raise ValueError(f"invalid {name}={value!r}: expected {allowed}")
