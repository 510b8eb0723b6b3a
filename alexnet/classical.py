"""The 2000s pipeline the lecture contrasts with AlexNet: hand-engineered features (HOG, or the
raw pixels) fed to a support vector machine, fitted once with scikit-learn.

The kind ``arch="svm"`` (registered at the end): ``fit(config, seed, data)`` is what
``alexnet.run`` does for it; it sees exactly the images the networks of that config see
(``alexnet.data.subsets``; at most ``svm_max_train``
of the training images, a stratified subset of them) and returns a ``TrainResult`` with one
epoch record like a network's (train_loss: the multiclass hinge loss; train_acc: from the
decision function's argmax; test_acc or val_acc, and train_eval_acc on the same training
sample as a network's, by ``predict``; examples_per_s: training images per second of the fit,
features included; epoch_time_s: features, fit and evaluation).
It is deterministic: the same images give the same model whatever the seed (LinearSVC solves
the primal, SVC uses no randomness), so every seed of a claim pairs the networks' seed with
the same SVM: a process fits each config once and hands the later seeds a copy of that fit
(its timings are the fit's own). ``params`` counts the numbers the fitted model stores;
``flops_per_image`` counts the classifier's prediction (kernel evaluations against the support vectors, or the linear
map), not the HOG extraction (about ``HOG_FLOPS_PER_PIXEL`` per pixel, measured in wall time).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import torch

from .config import TRAIN_IMAGES, Config, fail
from .data import FashionMNIST, stratified_subset, subsets, training_sample
from .env import environment
from .kinds import Kind, register
from .result import TrainResult, pack

HOG = dict(orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L2-Hys")
HOG_FLOPS_PER_PIXEL = 30  # gradients, magnitude, angle and binning: an estimate, not counted
PROBE_IMAGES = 400  # the estimate times a fit on this many training images and extrapolates
MEMO_SIZE = 16  # fits kept per process (a claim has three)
_FITTED: dict[tuple, tuple[FashionMNIST, TrainResult]] = {}  # (config key, data id) -> (data, the fit)


def features(images: torch.Tensor, kind: str) -> np.ndarray:
    """One row per 28-px uint8 image: its HOG descriptor (skimage.feature.hog with ``HOG``), or
    its pixels scaled to [0, 1]."""
    x = images.numpy().astype(np.float32) / 255.0
    if kind == "pixels":
        return x.reshape(len(x), -1)
    from skimage.feature import hog

    return np.stack([hog(image, **HOG) for image in x]).astype(np.float32)


def classifier(config: Config):
    """The scikit-learn estimator of ``config``'s kernel and C."""
    from sklearn.svm import SVC, LinearSVC

    if config.kernel == "linear":
        return LinearSVC(C=config.svm_c, dual=False, max_iter=5000)  # the primal: more images than features
    return SVC(C=config.svm_c, kernel="rbf", gamma="scale")


def size(model, dims: int) -> tuple[int, int]:
    """(stored numbers, prediction FLOPs per image) of a fitted ``classifier``."""
    if hasattr(model, "support_vectors_"):  # one RBF evaluation (about 3 FLOPs per dimension) per support vector
        sv = len(model.support_vectors_)
        stored = sv * dims + model.dual_coef_.size + model.intercept_.size
        return stored, sv * (3 * dims + 2 * model.dual_coef_.shape[0])
    return model.coef_.size + model.intercept_.size, 2 * model.coef_.size


def fit(config: Config, seed: int, data: FashionMNIST, on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Fit ``config``'s pipeline on its training subset; one epoch record, as ``train`` returns."""
    key = (config.key(), id(data))
    if key not in _FITTED:  # the data is kept with the fit, so its id names it while the entry lives
        if len(_FITTED) >= MEMO_SIZE:
            del _FITTED[next(iter(_FITTED))]  # the oldest
        _FITTED[key] = data, _fit(config, data)
    result = copy.deepcopy(_FITTED[key][1])
    result.config, result.seed = config.to_dict(), seed  # the fields beside the key may differ
    if on_epoch:
        on_epoch(result.epochs[0])
    return result


def _fit(config: Config, data: FashionMNIST) -> TrainResult:
    from sklearn.metrics import hinge_loss


    start = time.perf_counter()
    train_x, train_y, eval_x, eval_y, split, fit_x, fit_y = subsets(config, data)
    if len(train_y) > config.svm_max_train:
        train_x, train_y = stratified_subset(train_x, train_y, config.svm_max_train)
        fit_x, fit_y = training_sample(train_x, train_y, len(eval_y))  # a sample of what the SVM fits
    x = features(train_x, config.features)
    model = classifier(config).fit(x, train_y.numpy())
    fit_s = time.perf_counter() - start
    stored, flops = size(model, x.shape[1])
    import skimage
    import sklearn

    env = {**environment(torch.device("cpu")), "sklearn": sklearn.__version__, "skimage": skimage.__version__}
    result = TrainResult(config.to_dict(), 0, env, split, stored, flops,
                         len(train_y), len(eval_y))

    def right(images, labels) -> np.ndarray:
        return model.predict(features(images, config.features)) == labels.numpy()

    def accuracy(images, labels) -> float:
        return float(right(images, labels).mean())

    scores = model.decision_function(x)  # one-vs-rest: its argmax is the prediction (ties aside)
    record = {"epoch": 1, "train_loss": float(hinge_loss(train_y.numpy(), scores, labels=np.arange(10))),
              "train_acc": float((model.classes_[scores.argmax(1)] == train_y.numpy()).mean()),
              "train_eval_acc": accuracy(fit_x, fit_y),
              "examples_per_s": len(train_y) / fit_s, "fit_s": fit_s}
    outcomes = right(eval_x, eval_y)
    record[result.eval_key], result.eval_correct = float(outcomes.mean()), pack([outcomes])
    record["epoch_time_s"] = time.perf_counter() - start
    result.epochs.append(record)
    result.status = "finished"
    return result


def timed(config: Config, data: FashionMNIST, train_images: int, eval_images: int) -> tuple[float, float]:
    """(fit seconds, evaluation seconds) of ``config`` on ``train_images`` training and
    ``eval_images`` evaluation images, extrapolated from a fit on PROBE_IMAGES of them: features
    and prediction per image, an RBF fit growing with the square of the images (a linear one in
    proportion), and an RBF prediction with them (its support vectors)."""
    n = min(train_images, config.svm_max_train)
    k = min(n, PROBE_IMAGES)
    x, y = stratified_subset(data.train_images, data.train_labels, k)
    start = time.perf_counter()
    f = features(x, config.features)
    per_image = (time.perf_counter() - start) / k
    start = time.perf_counter()
    model = classifier(config).fit(f, y.numpy())
    fit_k = time.perf_counter() - start
    start = time.perf_counter()
    model.decision_function(f)
    predict = (time.perf_counter() - start) / k * (n / k if config.kernel == "rbf" else 1)
    growth = (n / k) ** (2 if config.kernel == "rbf" else 1)
    return n * per_image + fit_k * growth + n * predict, 2 * eval_images * (per_image + predict)


def _check(config: Config) -> None:
    """The classical pipeline: native 28-px images, fitted once, no augmentation."""
    for name, value, allowed in (("input_size", 28, "28 with arch='svm' (HOG of the native images)"),
                                 ("epochs", 1, "1 with arch='svm' (an SVM is fitted once)"),
                                 ("augment", False, "False with arch='svm' (the SVM sees each image once)"),
                                 ("validation_size", None, "None with arch='svm' (its C is not tuned here)")):
        if getattr(config, name) != value:
            fail(name, getattr(config, name), allowed)


def cost_name(config: Config) -> str:
    """Its cost grows faster than its images, so the estimate's name says them: ``svm-hog-rbf-c10-n4000``."""
    images = min(config.train_size or TRAIN_IMAGES, config.svm_max_train)
    return f"svm-{config.features}-{config.kernel}-c{config.svm_c:g}-n{images}"


# the fields that change its fit: the same SVM on the same images is one run whatever the rest says
KEY_FIELDS = ("arch", "features", "kernel", "svm_c", "svm_max_train", "input_size", "epochs", "augment", "train_size",
              "test_size", "validation_size")
register(Kind("svm", "the 2000s pipeline: HOG or pixel features and a support vector machine (scikit-learn), "
              "fitted once", fit=fit, check=_check, key_fields=KEY_FIELDS, timed=timed, cost_name=cost_name))
