"""What a suite costs on this machine: a short probe of each distinct configuration (a few
training steps with warm-up and device sync, one evaluation batch), turned into per-run
estimates. The probe uses the trainer's own step (``alexnet.train.train_step``) and data
pipeline, so what it times is what the runs will do."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from statistics import median

import torch

from alexnet.config import TEST_IMAGES, TRAIN_IMAGES, Config
from alexnet.data import DeviceLoader, FashionMNIST
from alexnet.kinds import kind_of
from alexnet.numerics import sync
from alexnet.train import build, evaluate, train_step

PROBE_S = 30.0  # the whole probe's time budget
PROBE_SHARE = 0.1  # at most this share of a configuration's planned work is spent timing it
PROBE_IMAGES = 400  # a fitted kind without its own ``timed`` is timed on at most this many images
MAX_STEPS = 5  # timed steps per configuration at most (after one warm-up step)
STORE_CALLS_PER_RUN = 30  # tracking-store round trips of one run: lookups, reservation, params, tags, result
STORE_CALLS_PER_EPOCH = 2  # the epoch's metrics and the lease heartbeat


@dataclass(frozen=True)
class Speed:
    """One configuration's measured costs on this device, in seconds."""
    step_s: float  # one training step at the config's batch size, data pipeline included (median)
    eval_batch_s: float  # one evaluation batch
    first_step_s: float  # a run's first step: warm-up, and compilation when ``compile`` is on
    setup_s: float  # building and initialising the model
    steps: int  # steps timed after the warm-up (0: a small plan, for which the warm-up step stands in)
    batch_size: int

    @property
    def train_images_per_s(self) -> float:
        return self.batch_size / self.step_s

    @property
    def eval_images_per_s(self) -> float:
        return self.batch_size / self.eval_batch_s


def speed_key(config: Config) -> str:
    """The fields that change a step's cost, as a name (``28px-b32-fp32``). Activation, pooling
    type, dropout and the optimiser's settings change the numbers, not the time, so arms that
    differ only in those share one probe. Augmentation (``aug``) adds a host-side draw and a copy
    per batch, which on a GPU is not free beside a short step: it gets its own probe.
    A fitted kind names its own cost (the SVM's grows faster than its images: ``svm-hog-rbf-c10-n4000``);
    one without a name, by its kind and images."""
    kind = kind_of(config)
    if not kind.sgd:
        return kind.cost_name(config) if kind.cost_name else f"{config.arch}-n{image_counts(config)[0]}"
    parts = ([] if config.arch == "alexnet" else [config.arch]) + [f"{config.input_size}px", f"b{config.batch_size}",
                                                                   config.precision]
    parts += [f"w{config.width:g}"] * (config.arch == "alexnet" and config.width != 1)
    parts += ["lrn"] * config.lrn + ["aug"] * config.augment + ["compile"] * config.compile
    parts += [] if config.channels_last else ["nchw"]
    if (config.pool_kernel, config.pool_stride) != (3, 2):
        parts.append(f"pool{config.pool_kernel}s{config.pool_stride}")
    return "-".join(parts)


def image_counts(config: Config) -> tuple[int, int]:
    """(training images, evaluation images) of one epoch of a run with this config."""
    train = config.train_size or TRAIN_IMAGES - (config.validation_size or 0)
    return train, config.validation_size or config.test_size or TEST_IMAGES


def run_seconds(config: Config, speed: Speed, store_s: float, from_epoch: int = 0) -> float:
    """A run's estimated wall time from epoch ``from_epoch`` (0: from the start)."""
    epochs = config.epochs - from_epoch
    if epochs <= 0:
        return 0.0
    train, test = image_counts(config)
    # the trainer evaluates twice an epoch: the evaluation set, and a training sample as large (train_eval_acc)
    eval_batches = math.ceil(test / config.batch_size) + math.ceil(min(train, test) / config.batch_size)
    epoch = math.ceil(train / config.batch_size) * speed.step_s + eval_batches * speed.eval_batch_s
    return (speed.setup_s + max(0.0, speed.first_step_s - speed.step_s) + epochs * epoch
            + store_s * (STORE_CALLS_PER_RUN + STORE_CALLS_PER_EPOCH * epochs))


def probe(work: dict[str, tuple[Config, int]], data: FashionMNIST, device: torch.device,
          budget_s: float = PROBE_S, on_start=None) -> dict[str, Speed]:
    """speed key -> Speed, for ``work``: speed key -> (a config with that key, training steps the
    plan has for it). Each key gets its share of ``budget_s``, and at most PROBE_SHARE of its
    planned work; ``on_start(key)`` is called as each probe starts."""
    speeds, start = {}, time.perf_counter()
    networks = [config for config, _ in work.values() if config.sgd]
    if networks:  # the process's first build pays one-off start-up costs that runs do not
        build(networks[0], device, seed=0)
    for i, (key, (config, planned_steps)) in enumerate(work.items()):
        if on_start:
            on_start(key)
        share = (budget_s - (time.perf_counter() - start)) / (len(work) - i)
        speeds[key] = _probe_one(config, data, device, share, planned_steps)
    return speeds


def _probe_one(config: Config, data: FashionMNIST, device: torch.device, share: float, planned_steps: int) -> Speed:
    n = config.batch_size
    if not config.sgd:  # fitted once, on the CPU: its time per batch of the config's size
        train, test = image_counts(config)
        fit_s, eval_s = fitted_seconds(config, data, train, test)
        return Speed(fit_s * n / train, eval_s * n / test, fit_s * n / train, 0.0, 0, n)
    x_all, y_all = data.train_images[:n * (MAX_STEPS + 1)], data.train_labels[:n * (MAX_STEPS + 1)]
    begin = time.perf_counter()
    step = build(config, device, seed=0)
    setup = time.perf_counter() - begin
    loader = DeviceLoader(x_all, y_all, config, device, train=True, seed=0)
    batches = (batch for epoch in range(1, 1000) for batch in loader.epoch(epoch))

    def one_step() -> None:
        x, y = next(batches)  # the batch's resize and augmentation count: a run does them too
        train_step(step, x, y, global_batch=len(y))

    first = step_times(one_step, device, 1)[0]  # warm-up (and compilation): a run's first step, waited for
    limit = min(share / 2, PROBE_SHARE * planned_steps * first)
    steps = min(MAX_STEPS, int(limit // first))  # none when even one more step is over: the warm-up stands in
    times = step_times(one_step, device, steps) if steps else []
    eval_loader = DeviceLoader(x_all[:n], y_all[:n], config, device)
    sync(device)
    t = time.perf_counter()
    evaluate(step.model, eval_loader, config, device)  # ends in .item(): synchronised
    return Speed(median(times) if times else first, time.perf_counter() - t, first, setup, len(times), n)


def fitted_seconds(config: Config, data: FashionMNIST, train: int, test: int) -> tuple[float, float]:
    """(fit seconds, evaluation seconds) of a fitted kind: its own ``timed``, else a fit on at most
    PROBE_IMAGES training and evaluation images, taken as linear in the images."""
    kind = kind_of(config)
    if kind.timed:
        return kind.timed(config, data, train, test)
    small = replace(config, train_size=min(train, PROBE_IMAGES), test_size=min(test, PROBE_IMAGES))
    start = time.perf_counter()
    kind.fit(small, 0, data, None)
    per_image = (time.perf_counter() - start) / (small.train_size + small.test_size)
    return per_image * train, per_image * test


def step_times(fn, device: torch.device, steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` run back to back as a run runs them: the host
    queues the next step while the device works, and nothing waits between steps. On CUDA, events
    recorded between the calls and read after one sync at the end (a sync per step would remove
    that overlap and overstate the step); on a CPU, which runs each call to its end, the clock."""
    sync(device)
    if device.type == "cuda":
        marks = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        marks[0].record()
        for mark in marks[1:]:
            fn()
            mark.record()
        sync(device)
        return [a.elapsed_time(b) / 1e3 for a, b in zip(marks, marks[1:])]  # elapsed_time is in ms
    clock = [time.perf_counter()]
    for _ in range(steps):
        fn()
        clock.append(time.perf_counter())
    return [b - a for a, b in zip(clock, clock[1:])]


def duration(seconds: float) -> str:
    """``52 s``, ``5.5 min``, ``3.2 h``, ``9.1 d``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
