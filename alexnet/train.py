"""``train(config, seed) -> metrics``: the lecture's ``train_ch6`` with checkpoints.

Semantics follow d2l: Xavier-uniform init, SGD on the mean cross-entropy of each
minibatch, train loss and accuracy accumulated over the epoch in train mode (dropout on),
test accuracy after each epoch in eval mode. Returns plain numbers; tracking is the
caller's business (see ``alexnet.tracking``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint as ckpt
from .config import Config
from .data import DeviceLoader, FashionMNIST, load_fashion_mnist, split_validation, stratified_subset
from .env import check_runtime, environment
from .model import build_alexnet, count_params, flops_per_image, init_weights

DIVERGENCE_CHECK_EVERY = 20  # batches between reads of the running loss (each read syncs the device)


@contextmanager
def precision(config: Config, device: torch.device):
    """Autocast for bf16; TF32 matmuls/convolutions switched on for this run only."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = config.precision == "tf32"
    try:
        if config.precision == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def progress_bar(enabled: bool | None, transient: bool = True):
    """A rich progress bar (tasks take a ``status`` field), or None when disabled; by default
    shown only when stderr is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[status]}"), transient=transient)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def evaluate(model: nn.Module, loader: DeviceLoader, config: Config, device: torch.device) -> float:
    """Accuracy on the whole set (each rank scores its slice of every batch; the counts are summed)."""
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad(), precision(config, device):
        for x, y in loader.epoch():
            correct += (model(x).argmax(1) == y).sum()
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


def build(config: Config, device: torch.device, seed: int, rank: int = 0, world: int = 1):
    """(net, model, optimizer): the initialised network; the model that trains it (wrapped in
    DistributedDataParallel across ranks, compiled when asked); SGD."""
    torch.manual_seed(seed)  # weights (the same on every rank), then dropout masks
    net = build_alexnet(config)
    init_weights(net)
    net.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    model = net
    if world > 1:
        torch.manual_seed(seed * 1_000_003 + rank)  # each rank its own dropout masks, reproducible per world size
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return net, torch.compile(model) if config.compile else model, optimizer


def train_step(model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, config: Config,
               device: torch.device, after_backward: Callable[[], None] | None = None, global_batch: int = 0,
               world: int = 1):
    """One SGD step on the mean cross-entropy of a minibatch; returns (loss, logits), unsynchronised.

    Across ``world`` ranks the local loss is the sum over the rank's slice times world /
    global_batch, so DDP's average of the ranks' gradients is the gradient of the global mean."""
    with precision(config, device):
        logits = model(x)
        if world == 1:
            loss = F.cross_entropy(logits.float(), y)
        else:
            loss = F.cross_entropy(logits.float(), y, reduction="sum") * (world / global_batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward:
        after_backward()
    optimizer.step()
    return loss, logits


def train(config: Config = Config(), seed: int = 0, *, data: FashionMNIST | None = None,
          data_dir: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
          on_epoch: Callable[[dict], None] | None = None, progress: bool | None = None) -> dict:
    """Train one AlexNet; return its per-epoch numbers, status and environment.

    ``checkpoint``: a file written at the end of every epoch; if it exists when called, the
    run resumes from it and gives the same numbers as an uninterrupted run.
    ``on_epoch``: called with each epoch's record as soon as it is measured."""
    rank, world = distributed(config)
    device = check_runtime(config)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    if rank:  # one rank reports
        on_epoch, progress = None, False
    data = data or load_fashion_mnist(data_dir)
    train_x, train_y = data.train_images, data.train_labels
    if config.validation_size:  # evaluate on images carved from the training set, never on the test set
        train_x, train_y, test_x, test_y = split_validation(train_x, train_y, config.validation_size)
        eval_key = "val_acc"
    else:
        test_x, test_y = stratified_subset(data.test_images, data.test_labels, config.test_size)
        eval_key = "test_acc"
    train_x, train_y = stratified_subset(train_x, train_y, config.train_size)
    loader_args = dict(batch_size=config.batch_size, input_size=config.input_size, device=device,
                       channels_last=config.channels_last, shard=(rank, world))
    train_loader = DeviceLoader(train_x, train_y, shuffle=True, augment=config.augment, seed=seed, **loader_args)
    test_loader = DeviceLoader(test_x, test_y, **loader_args)

    net, model, optimizer = build(config, device, seed, rank, world)
    weighted = [(f"{i}.{m.__class__.__name__}", m.weight) for i, m in enumerate(net)
                if isinstance(m, (nn.Conv2d, nn.Linear))]
    grad_sums = torch.zeros(len(weighted), device=device)  # per-layer gradient norms, summed over epoch 1

    def add_grad_norms():
        grad_sums.add_(torch.stack([w.grad.detach().float().norm() for _, w in weighted]))

    result = {"config": config.to_dict(), "seed": seed, "env": environment(device), "status": "running",
              "epochs": [], "grad_norms": {}, "params": count_params(net),
              "flops_per_image": flops_per_image(net, config.input_size),
              "train_examples": len(train_y), "eval_examples": len(test_y), "eval_split": eval_key[:-4],
              "world_size": world}
    ckpt_path = Path(checkpoint) if checkpoint else None
    bar = progress_bar(progress)
    with ExitStack() as stack:
        if ckpt_path and rank == 0:  # one writer per checkpoint path
            stack.enter_context(ckpt.lock(ckpt_path))
        if ckpt_path and ckpt_path.exists():
            saved = ckpt.load(ckpt_path, device)
            ckpt.check_owner(saved, ckpt_path, config.to_dict(), seed, world)
            net.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            result.update(epochs=saved["epochs"], grad_norms=saved["grad_norms"])
            _set_rng_state(saved["rng"][rank] if world > 1 else saved["rng"], device)
        if bar:
            stack.enter_context(bar)
            epochs_task = bar.add_task("epochs", total=config.epochs, completed=len(result["epochs"]), status="")
            batches_task = bar.add_task("batches", total=len(train_loader), status="")
        model.train()
        for epoch in range(len(result["epochs"]) + 1, config.epochs + 1):
            first = epoch == 1
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            if bar:
                bar.reset(batches_task, total=len(train_loader))
            sync(device)
            start = time.perf_counter()
            for i, (x, y) in enumerate(train_loader.epoch(epoch)):
                n = min(config.batch_size, len(train_y) - i * config.batch_size)  # the global batch
                loss, logits = train_step(model, optimizer, x, y, config, device, add_grad_norms if first else None,
                                          global_batch=n, world=world)
                loss_sum += loss.detach() * (len(y) if world == 1 else n / world)
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
                if (i + 1) % DIVERGENCE_CHECK_EVERY == 0:  # the only sync inside the batch loop
                    running = _all_sum(loss_sum.clone(), world).item()  # every rank stops together
                    if not math.isfinite(running):
                        break
                    if bar:
                        bar.update(batches_task, status=f"loss {running / (seen * world):.3f}")
                if bar:
                    bar.update(batches_task, advance=1)
            sync(device)
            train_time = time.perf_counter() - start
            totals = _all_sum(torch.stack([loss_sum, correct.to(loss_sum.dtype),
                                           torch.tensor(float(seen), device=device)]), world).tolist()
            train_loss, train_correct, seen = totals[0] / totals[2], totals[1], int(totals[2])
            if not math.isfinite(train_loss):
                result["status"] = "diverged"
                result["diverged_at_epoch"] = epoch
                break
            if first:
                batches = i + 1
                result["grad_norms"] = {name: g / batches for (name, _), g in zip(weighted, grad_sums.tolist())}
            record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_correct / seen,
                      eval_key: evaluate(model, test_loader, config, device),
                      "examples_per_s": seen / train_time, "epoch_time_s": time.perf_counter() - start}
            result["epochs"].append(record)
            if ckpt_path:
                rng = _rng_state(device)
                if world > 1:  # each rank's dropout stream, so that a resume is exact
                    rng = [None] * world
                    dist.all_gather_object(rng, _rng_state(device))
                if rank == 0:
                    ckpt.save(ckpt_path, {"config_key": config.key(), "config": config.to_dict(), "seed": seed,
                                          "world_size": world,
                                          "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                          "epochs": result["epochs"], "grad_norms": result["grad_norms"],
                                          "rng": rng})
                if world > 1:
                    dist.barrier()  # no rank reads a checkpoint before it is complete
            if on_epoch:
                on_epoch(record)
            if bar:
                bar.update(epochs_task, advance=1,
                           status=f"loss {train_loss:.3f} {eval_key} {record[eval_key]:.3f}")
    if result["status"] == "running":
        result["status"] = "finished"
    return result
