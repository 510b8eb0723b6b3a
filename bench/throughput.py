"""Throughput of the core AlexNet: training and inference images/s per configuration.

Every case warms up, synchronises the device, times ``steps`` steps with a monotonic clock
``repeats`` times and keeps the median. Each step includes making its batch, so the two input
pipelines (device-resident vs the lecture's per-image DataLoader) compare end to end. FLOPs
per image come from the model's own count (training counted as 3x the forward pass: forward,
input gradients, weight gradients; the first layer needs no input gradient, so this slightly
overstates the work); the ceiling is the fastest of a few dense square matrix products at the
same precision, measured in the same run, large and long enough at every scale to be one (at
least 1024 and 2048 on a CPU, 4096 on a GPU, each timed over 15 products after 3 of warm-up). The
ceiling is a maximum, and one measured while the machine is busy understates it: when a case beats it,
its precision's ceiling is measured again after the sweep, the higher value kept and the fractions
recomputed (``ceiling_remeasured``). A case still more than ``CEILING_TOLERANCE`` above it is listed
in ``over_ceiling``, which ``python -m bench`` reports as an error, as it does a case that raised
(``failed``; the sweep goes on). A compiled case is skipped, with the
reason, where torch.compile cannot run (no triton for CUDA, no C++ compiler for the CPU).
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from dataclasses import asdict, dataclass, replace

import torch

from alexnet.config import Config
from alexnet.data import DeviceLoader, lecture_loader
from alexnet.env import compile_problem
from alexnet.model import flops_per_image
from alexnet.numerics import precision, sync
from alexnet.train import build, train_step

TRAIN_FLOP_FACTOR = 3  # backward costs about twice the forward
CEILING_TIMING = dict(warmup=3, repeats=5, steps=3)  # at least this much at every scale
# how far above its ceiling a case may run before the ceiling counts as mismeasured: on an idle 2-core
# machine the smoke sweep's 28-px NHWC inference ran at 69-99% of the ceiling, which itself varied 8% between
# runs, and at 101% in CI while the other test worker was busy (that ceiling was 15% below the idle ones)
CEILING_TOLERANCE = 1.10


@dataclass(frozen=True)
class Case:
    mode: str  # train | infer
    input_size: int
    batch_size: int
    precision: str
    channels_last: bool
    compile: bool
    pipeline: str  # device | lecture

    @property
    def label(self) -> str:
        return (f"{self.mode} {self.input_size}px b{self.batch_size} {self.precision}"
                f"{' NHWC' if self.channels_last else ''}{' compiled' if self.compile else ''}"
                f"{' lecture-pipeline' if self.pipeline == 'lecture' else ''}")


def timed(fn, device: torch.device, *, warmup: int, repeats: int, steps: int) -> list[float]:
    """Seconds per call of ``fn``, one value per repeat (each the mean over ``steps`` calls)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        sync(device)
        times.append((time.perf_counter() - start) / steps)
    return times


def matmul_ceiling(prec: str, device: torch.device, n: int, **timing) -> float:
    """FLOP/s of an n x n dense matrix product at ``prec`` (fp32 with TF32 off, tf32 on, bf16)."""
    dtype = torch.bfloat16 if prec == "bf16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    with precision(Config(precision="tf32" if prec == "tf32" else "fp32"), device):
        t = statistics.median(timed(lambda: a @ b, device, **timing))
    return 2 * n**3 / t


def _batches(case: Case, images, labels, device):
    """An endless iterator of full batches (x, y) on ``device`` from the case's pipeline: an epoch's
    short last batch is dropped, since timing it as a full one overstates images/s (and under
    torch.compile its new shape recompiles inside a timed repeat)."""
    if len(labels) < case.batch_size:
        raise ValueError(f"{case.label}: the benchmark's {len(labels)} images do not fill one batch of "
                         f"{case.batch_size}; give it at least that many")
    if case.pipeline == "device":
        config = Config(input_size=case.input_size, batch_size=case.batch_size, channels_last=case.channels_last)
        loader = DeviceLoader(images, labels, config, device, train=True)
        for epoch in itertools.count():
            yield from ((x, y) for x, y in loader.epoch(epoch) if len(y) == case.batch_size)
    else:
        workers = min(8, max(1, torch.get_num_threads()))
        loader = lecture_loader(images, labels, batch_size=case.batch_size, input_size=case.input_size,
                                shuffle=True, workers=workers, drop_last=True)
        loader.pin_memory = device.type == "cuda"
        for _ in itertools.count():
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                if case.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                yield x, y.to(device, non_blocking=True)


def measure(case: Case, images, labels, device: torch.device, ceilings: dict, **timing) -> dict:
    config = Config(input_size=case.input_size, batch_size=case.batch_size, precision=case.precision,
                    channels_last=case.channels_last, compile=case.compile, device=device.type)
    if case.compile:  # a fresh Dynamo cache per case: no recompile limit reached, no shape made dynamic by another
        torch._dynamo.reset()
    sgd = build(config, device, seed=0)
    batches = _batches(case, images, labels, device)
    if case.mode == "train":
        sgd.model.train()

        def step():
            x, y = next(batches)
            train_step(sgd, x, y)
    else:
        sgd.model.eval()

        def step():
            x, _ = next(batches)
            with torch.no_grad(), precision(config, device):
                sgd.model(x)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = timed(step, device, **timing)
    step_s = statistics.median(times)
    images_per_s = case.batch_size / step_s
    flops = flops_per_image(sgd.net, case.input_size) * (TRAIN_FLOP_FACTOR if case.mode == "train" else 1)
    achieved = flops * images_per_s
    return {**asdict(case), "label": case.label, "status": "ok", "images_per_s": images_per_s,
            "step_ms": step_s * 1e3, "step_ms_spread": (max(times) - min(times)) * 1e3,
            "flops_per_image": flops, "tflops": achieved / 1e12,
            "fraction_of_ceiling": achieved / ceilings[case.precision],
            "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


SMOKE = [Case("train", 28, 8, "fp32", False, False, "device"), Case("train", 28, 8, "fp32", False, False, "lecture"),
         Case("infer", 28, 8, "fp32", True, False, "device")]  # every code path in seconds (tests)
NODE = [  # the GPU node's time-boxed sweep (scripts/gpu-run), most telling first
    Case("train", 224, 128, "fp32", False, False, "lecture"), Case("train", 224, 128, "fp32", False, False, "device"),
    Case("train", 224, 128, "tf32", False, False, "device"), Case("train", 224, 128, "bf16", True, False, "device"),
    Case("infer", 224, 1024, "bf16", True, False, "device"), Case("train", 224, 256, "bf16", True, False, "device"),
    Case("train", 224, 512, "bf16", True, False, "device"), Case("train", 224, 128, "bf16", True, True, "device")]


def grid(device: torch.device, quick: bool) -> list[Case]:
    """The configurations to measure: a sweep at batch 128 (32 on a CPU), a batch-size sweep of
    the fastest settings, and the two pipelines."""
    precisions = ["fp32", "bf16"] + (["tf32"] if device.type == "cuda" else [])
    compiles = [False] if quick else [False, True]
    base_batch = 32 if quick else 128
    cases = [Case(mode, size, base_batch, p, cl, c, "device")
             for mode, size, p, cl, c in itertools.product(("train", "infer"), (224, 28), precisions, (False, True),
                                                           compiles)]
    fast = Case("train", 224, base_batch, "bf16", True, not quick, "device")
    for batch in ([64] if quick else [32, 64, 256, 512, 1024]):
        cases += [replace(fast, batch_size=batch), replace(fast, mode="infer", batch_size=batch)]
    cases += [replace(fast, pipeline="lecture", compile=False), replace(fast, compile=False)]
    return list(dict.fromkeys(cases))


def settle_ceilings(rows: list[dict], ceilings: dict, measure_again) -> tuple[list[str], list[str]]:
    """Measures again (``measure_again(precision)``, after the sweep) the ceiling of every precision a
    case beat; keeps the higher value in ``ceilings`` and recomputes those rows' fractions. Returns the
    precisions measured again and the cases still above their ceiling by more than the tolerance."""
    ok = [r for r in rows if r["status"] == "ok"]
    beaten = sorted({r["precision"] for r in ok if r["fraction_of_ceiling"] > 1})
    for prec in beaten:
        ceilings[prec] = max(ceilings[prec], measure_again(prec))
        for r in ok:
            if r["precision"] == prec:
                r["fraction_of_ceiling"] = r["tflops"] * 1e12 / ceilings[prec]
    return beaten, [r["label"] for r in ok if r["fraction_of_ceiling"] > CEILING_TOLERANCE]


def sweep(device: torch.device, scale: str, images, labels, progress=None, budget_s: float = math.inf) -> dict:
    """``scale``: full (the GPU sweep), node (the GPU node's short list), quick (a CPU sweep) or
    smoke (three cases, for tests). Cases that would start after ``budget_s`` are listed as skipped."""
    deadline = time.perf_counter() + budget_s
    timing = {"full": dict(warmup=5, repeats=7, steps=10), "node": dict(warmup=5, repeats=5, steps=10),
              "quick": dict(warmup=2, repeats=5, steps=2), "smoke": dict(warmup=1, repeats=3, steps=1)}[scale]
    cuda = device.type == "cuda"
    # a CPU's fastest product needs n >= 2048 on some (an AVX-512 CPU under torch 2.11 ran a 28-px inference
    # case above the n = 1024 one)
    sizes = ((4096,) if cuda else (1024, 2048)) if scale == "smoke" else (4096, 8192) if cuda else (1024, 2048, 3072)
    ceiling_timing = {k: max(v, CEILING_TIMING[k]) for k, v in timing.items()}
    cases = {"smoke": SMOKE, "node": NODE}.get(scale) or grid(device, scale == "quick")
    ceilings = {p: max(matmul_ceiling(p, device, n, **ceiling_timing) for n in sizes)
                for p in dict.fromkeys(c.precision for c in cases) if p != "tf32" or cuda}  # the precisions used
    no_compile = compile_problem(device) if any(c.compile for c in cases) else None
    rows, oom = [], set()
    for case in cases:
        setting = (case.mode, case.input_size, case.precision, case.channels_last, case.compile, case.pipeline)
        skip = ("skipped after oom" if setting in oom else "skipped: budget" if time.perf_counter() > deadline
                else "skipped: no tf32 on cpu" if case.precision == "tf32" and device.type == "cpu"
                else f"skipped: {no_compile}" if case.compile and no_compile else None)
        if skip:  # a smaller batch ran out of memory, the time is up, or the device or its software lacks it
            rows.append({**asdict(case), "label": case.label, "status": skip})
            continue
        try:
            rows.append(measure(case, images, labels, device, ceilings, **timing))
        except torch.OutOfMemoryError:
            oom.add(setting)
            rows.append({**asdict(case), "label": case.label, "status": "oom"})
            torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001 - one broken case must not cost the others their numbers
            rows.append({**asdict(case), "label": case.label, "status": f"failed: {type(exc).__name__}: {exc}"[:300]})
        if progress:
            progress(case, rows[-1])
    remeasured, over = settle_ceilings(
        rows, ceilings, lambda prec: max(matmul_ceiling(prec, device, n, **ceiling_timing) for n in sizes))
    failed = [r["label"] for r in rows if r["status"].startswith("failed")]
    return {"ceilings_tflops": {p: c / 1e12 for p, c in ceilings.items()}, "matmul_sizes": sizes, "timing": timing,
            "ceiling_timing": ceiling_timing, "ceiling_remeasured": remeasured, "rows": rows, "over_ceiling": over,
            "failed": failed}
