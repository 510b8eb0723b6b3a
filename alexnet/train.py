"""``train(config, seed) -> TrainResult``: the lecture's ``train_ch6`` with checkpoints.

Semantics follow d2l: Xavier-uniform init, SGD on the mean cross-entropy of each minibatch,
train loss and accuracy accumulated over the epoch in train mode (dropout on), test accuracy
after each epoch in eval mode. Beside d2l's numbers, ``train_eval_acc``: the accuracy in eval
mode (dropout off, as test accuracy is measured) on a fixed, evenly spaced sample of the training
subset as large as the evaluation set, after each epoch; the train - test gap uses it, so that
dropout does not lower one arm's train accuracy by itself. Returns plain numbers; tracking is the
caller's business (``alexnet.tracking``)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint as ckpt
from .config import Config
from .data import DeviceLoader, FashionMNIST, load_fashion_mnist, subsets
from .env import check_runtime, environment
from .model import build_model, count_params, flops_per_image, init_weights
from .numerics import autocast, fp32_precision, precision, sync
from .progress import EpochBars
from .result import TrainResult, pack

DIVERGENCE_CHECK_EVERY = 20  # batches between reads of the running loss (each read syncs the device)


def distributed(config: Config) -> tuple[int, int]:
    """(rank, world size) of a run launched by torchrun (its process group is started here:
    NCCL on GPUs, gloo on the CPU), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        cuda = config.device != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if cuda else "gloo")
    if config.batch_size < world:
        raise ValueError(f"invalid batch_size={config.batch_size}: expected at least the {world} ranks "
                         "(the batch is the global one, split across ranks)")
    return dist.get_rank(), dist.get_world_size()


def _all_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t)
    return t


def evaluate(model: nn.Module, loader: DeviceLoader, config: Config, device: torch.device,
             per_image: list | None = None) -> float:
    """Accuracy on the whole set (each rank scores its slice of every batch; the counts are summed).
    ``per_image``: a list the per-image outcomes (bool tensors, one per batch) are appended to."""
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad(), precision(config, device):
        for x, y in loader.epoch():
            right = model(x).argmax(1) == y
            correct += right.sum()
            if per_image is not None:
                per_image.append(right)
    model.train()
    return _all_sum(correct, loader.world).item() / len(loader.labels)


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def build(config: Config, device: torch.device, seed: int, rank: int = 0, world: int = 1) -> TrainState:
    """The initialised network; the model that trains it (wrapped in DistributedDataParallel
    across ranks, compiled when asked); SGD — as the ``TrainState`` every training step takes."""
    torch.manual_seed(seed)  # weights (the same on every rank), then dropout masks
    net = build_model(config)
    init_weights(net)
    net.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    model = net
    if world > 1:
        torch.manual_seed(seed * 1_000_003 + rank)  # each rank its own dropout masks, reproducible per world size
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return TrainState(net, torch.compile(model) if config.compile else model, optimizer, config, device, world)


@dataclass(frozen=True)
class TrainState:
    """What every SGD step of a run shares."""
    net: nn.Sequential  # the bare network (its state is what a checkpoint saves)
    model: nn.Module  # the network as trained: DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    config: Config
    device: torch.device
    world: int = 1


def train_step(step: TrainState, x: torch.Tensor, y: torch.Tensor, *, global_batch: int = 0,
               after_backward: Callable[[], None] | None = None):
    """One SGD step on the mean cross-entropy of a minibatch; returns (loss, logits), unsynchronised.

    Across ``step.world`` ranks the local loss is the sum over the rank's slice times world /
    global_batch, so DDP's average of the ranks' gradients is the gradient of the global mean."""
    with fp32_precision(step.config):  # the backward's kernels read the flags too
        with autocast(step.config, step.device):  # the forward only, as autocast's docs require
            logits = step.model(x)
            if step.world == 1:
                loss = F.cross_entropy(logits.float(), y)
            else:
                loss = F.cross_entropy(logits.float(), y, reduction="sum") * (step.world / global_batch)
        step.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward:
            after_backward()
        step.optimizer.step()
    return loss, logits


class GradNorms:
    """Per-layer gradient norms of every Conv2d/Linear weight, summed over the first epoch's
    batches on the device (no sync per batch); ``means`` divides by the batch count."""

    def __init__(self, net: nn.Sequential, device: torch.device):
        self.weighted = [(f"{i}.{m.__class__.__name__}", m.weight) for i, m in enumerate(net)
                         if isinstance(m, (nn.Conv2d, nn.Linear))]
        self.sums = torch.zeros(len(self.weighted), device=device)

    def add(self) -> None:
        self.sums.add_(torch.stack([w.grad.detach().float().norm() for _, w in self.weighted]))

    def means(self, batches: int) -> dict[str, float]:
        return {name: g / batches for (name, _), g in zip(self.weighted, self.sums.tolist())}


def train(config: Config = Config(), seed: int = 0, *, data: FashionMNIST | None = None,
          data_dir: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
          on_epoch: Callable[[dict], None] | None = None, progress: bool | None = None) -> TrainResult:
    """Train one network (AlexNet, LeNet: ``config.arch``); return its per-epoch numbers, status and environment.

    ``checkpoint``: a file written at the end of every epoch; if it exists when called, the
    run resumes from it and gives the same numbers as an uninterrupted run.
    ``on_epoch``: called with each epoch's record as soon as it is measured.
    The SGD loop only: ``alexnet.run`` runs any kind of arm (a fitted one by its own ``fit``)."""
    rank, world = distributed(config)
    device = check_runtime(config)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    if rank:  # one rank reports
        on_epoch, progress = None, False
    train_loader, eval_loader, eval_split, fit_loader = loaders(config, data or load_fashion_mnist(data_dir), seed,
                                                                device, (rank, world))
    step = build(config, device, seed, rank, world)
    norms = GradNorms(step.net, device)
    result = TrainResult(config.to_dict(), seed, environment(device), eval_split, count_params(step.net),
                         flops_per_image(step.net, config.input_size), len(train_loader.labels),
                         len(eval_loader.labels), world)
    ckpt_path = Path(checkpoint) if checkpoint else None
    with ExitStack() as stack:
        if ckpt_path and rank == 0:  # one writer per checkpoint path
            stack.enter_context(ckpt.lock(ckpt_path))
        if ckpt_path and ckpt_path.exists():
            resume(ckpt_path, step, result, rank)
        bars = stack.enter_context(EpochBars(progress, config.epochs, len(train_loader), len(result.epochs)))
        step.model.train()
        for epoch in range(len(result.epochs) + 1, config.epochs + 1):
            record = train_epoch(step, train_loader, epoch, norms if epoch == 1 else None, bars)
            if record is None:  # the loss became NaN or infinite
                result.status, result.diverged_at_epoch = "diverged", epoch
                break
            batches = record.pop("batches")
            if epoch == 1:
                result.grad_norms = norms.means(batches)
            last = [] if epoch == config.epochs and world == 1 else None  # the final one, image by image
            record[result.eval_key] = evaluate(step.model, eval_loader, config, device, last)
            if last is not None:
                result.eval_correct = pack(last)
            record["train_eval_acc"] = evaluate(step.model, fit_loader, config, device)
            record["epoch_time_s"] = time.perf_counter() - record.pop("start")
            result.epochs.append(record)
            if ckpt_path:
                save(ckpt_path, step, result, rank)
            if on_epoch:
                on_epoch(record)
            bars.epoch_done(f"loss {record['train_loss']:.3f} {result.eval_key} {record[result.eval_key]:.3f}")
    if result.status == "running":
        result.status = "finished"
    return result


def loaders(config: Config, data: FashionMNIST, seed: int, device: torch.device, shard: tuple[int, int]):
    """(training loader, evaluation loader, "test" or "val", training-sample loader) of ``subsets``."""
    train_x, train_y, eval_x, eval_y, split, fit_x, fit_y = subsets(config, data)
    return (DeviceLoader(train_x, train_y, config, device, train=True, seed=seed, shard=shard),
            DeviceLoader(eval_x, eval_y, config, device, shard=shard), split,
            DeviceLoader(fit_x, fit_y, config, device, shard=shard))


def train_epoch(step: TrainState, loader: DeviceLoader, epoch: int, norms: GradNorms | None,
                bars: EpochBars) -> dict | None:
    """One pass over the training set: a record with train_loss and train_acc (accumulated over
    the epoch in train mode, as d2l does), examples/s, the batch count and the start time; None
    when the loss diverged. The running loss is read (a device sync) every DIVERGENCE_CHECK_EVERY
    batches only."""
    device, world, batch_size = step.device, step.world, step.config.batch_size
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, total = 0, len(loader.labels)
    bars.new_epoch()
    sync(device)
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader.epoch(epoch)):
        n = min(batch_size, total - i * batch_size)  # the global batch
        loss, logits = train_step(step, x, y, global_batch=n, after_backward=norms.add if norms else None)
        loss_sum += loss.detach() * (len(y) if world == 1 else n / world)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if (i + 1) % DIVERGENCE_CHECK_EVERY == 0:  # the only sync inside the batch loop
            running = _all_sum(loss_sum.clone(), world).item()  # every rank stops together
            if not math.isfinite(running):
                break
            bars.batch_status(f"loss {running / (seen * world):.3f}")
        bars.batch_done()
    sync(device)
    train_time = time.perf_counter() - start
    totals = _all_sum(torch.stack([loss_sum, correct.to(loss_sum.dtype), torch.tensor(float(seen), device=device)]),
                      world).tolist()
    train_loss = totals[0] / totals[2]
    if not math.isfinite(train_loss):
        return None
    return {"epoch": epoch, "train_loss": train_loss, "train_acc": totals[1] / int(totals[2]),
            "examples_per_s": seen / train_time, "batches": i + 1, "start": start}


def resume(path: Path, step: TrainState, result: TrainResult, rank: int) -> None:
    """Load a checkpoint of this very run (read weights-only, checked field by field) into the
    model, optimizer, result and random number generators."""
    saved = ckpt.load(path)
    ckpt.check_owner(saved, path, step.config.to_dict(), result.seed, step.world)
    step.net.load_state_dict(saved["model"])
    step.optimizer.load_state_dict(saved["optimizer"])
    result.epochs, result.grad_norms = saved["epochs"], saved["grad_norms"]
    _set_rng_state(saved["rng"][rank] if step.world > 1 else saved["rng"], step.device)


def save(path: Path, step: TrainState, result: TrainResult, rank: int) -> None:
    """The checkpoint after an epoch: written by rank 0, with every rank's RNG state."""
    rng = _rng_state(step.device)
    if step.world > 1:  # each rank's dropout stream, so that a resume is exact
        rng = [None] * step.world
        dist.all_gather_object(rng, _rng_state(step.device))
    if rank == 0:
        ckpt.save(path, {"config_key": step.config.key(), "config": step.config.to_dict(), "seed": result.seed,
                         "world_size": step.world, "model": step.net.state_dict(),
                         "optimizer": step.optimizer.state_dict(), "epochs": result.epochs,
                         "grad_norms": result.grad_norms, "rng": rng})
    if step.world > 1:
        dist.barrier()  # no rank reads a checkpoint before it is complete
