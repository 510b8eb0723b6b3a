"""The lecture's AlexNet and d2l's LeNet, built from a Config (``build_model``), with a shape trace.

Stems:
- input 224 (the lecture): Conv 11x11 stride 4 pad 1 -> 96 x 54 x 54, then pooling.
- input 28: an 11x11/4 convolution on 28 px leaves a 5x5 map that the pooling and four
  later convolutions cannot use. The adapted stem is Conv 3x3 stride 1 pad 1 -> 96 x 28 x 28,
  followed by the same pooling. Every later layer keeps its kernel, stride, padding and
  width; only the spatial sizes shrink (13 -> 6 -> 2), so the first dense layer takes
  256*2*2 = 1024 inputs instead of 6400. Keeping 6400 would need a 26x26 map after the
  stem, i.e. upsampling: the very resizing whose cost the input224 claim measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import LENET, Config, fail
from .kinds import Kind, kind_of, register

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def build_alexnet(config: Config | None = None) -> nn.Sequential:
    """The lecture's AlexNet of ``config`` (default: the lecture's own)."""
    config = config or Config()
    act = _ACTIVATIONS[config.activation]

    def pool() -> nn.Module:
        cls = nn.MaxPool2d if config.pool == "max" else nn.AvgPool2d
        return cls(kernel_size=config.pool_kernel, stride=config.pool_stride)

    def lrn() -> list[nn.Module]:
        # Krizhevsky et al. 2012, section 3.3: k=2, n=5, alpha=1e-4, beta=0.75
        return [nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)] if config.lrn else []

    c1, c2, c3, c4, c5, dense = config.channels()  # 96, 256, 384, 384, 256, 4096 at width 1
    if config.input_size == 224:
        stem = nn.Conv2d(1, c1, kernel_size=11, stride=4, padding=1)
    else:
        stem = nn.Conv2d(1, c1, kernel_size=3, stride=1, padding=1)
    features = [
        stem, act(), *lrn(), pool(),
        nn.Conv2d(c1, c2, kernel_size=5, padding=2), act(), *lrn(), pool(),
        nn.Conv2d(c2, c3, kernel_size=3, padding=1), act(),
        nn.Conv2d(c3, c4, kernel_size=3, padding=1), act(),
        nn.Conv2d(c4, c5, kernel_size=3, padding=1), act(), pool(),
        nn.Flatten(),
    ]
    return nn.Sequential(
        *features,
        nn.Linear(c5 * config.feature_side() ** 2, dense), act(), nn.Dropout(p=config.dropout),
        nn.Linear(dense, dense), act(), nn.Dropout(p=config.dropout),
        nn.Linear(dense, 10),
    )


def build_lenet(config: Config | None = None) -> nn.Sequential:
    """d2l's LeNet-5 for 1 x 28 x 28 input: sigmoid and 2x2 average pooling by default (the LeNet
    lecture's); ``config`` may swap the activation and the pooling type and add dropout after
    each hidden dense layer (the steps of the ladder claim from LeNet to AlexNet)."""
    config = config or Config(**LENET)
    act = _ACTIVATIONS[config.activation]
    pool = nn.MaxPool2d if config.pool == "max" else nn.AvgPool2d
    drop = [nn.Dropout(p=config.dropout)] if config.dropout else []
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), act(),
        pool(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), act(),
        pool(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), act(), *drop,
        nn.Linear(120, 84), act(), *drop,
        nn.Linear(84, 10),
    )


def _check_lenet(config: Config) -> None:
    """LeNet-5 takes 28-px images and has its own fixed 2x2 pooling and no LRN."""
    if config.input_size != 28:
        fail("input_size", config.input_size, "28 with arch='lenet' (LeNet-5 takes the native 28-px images)")
    if config.lrn:
        fail("lrn", config.lrn, "False with arch='lenet' (local response normalisation is AlexNet's)")
    if (config.pool_kernel, config.pool_stride) != (3, 2):
        fail("pool_kernel", config.pool_kernel, "the default (3, stride 2) with arch='lenet': LeNet-5 pools 2x2, "
             "stride 2, whatever these say")


register(Kind("alexnet", "the lecture's AlexNet (width, stem, pooling, LRN and activation from the config)",
              network=build_alexnet, check=Config.feature_side))  # the pooling windows fit
register(Kind("lenet", "d2l's LeNet-5: 28 px, its own 2x2 pooling, no LRN", network=build_lenet, check=_check_lenet))


def build_model(config: Config) -> nn.Sequential:
    """The network ``config.arch`` names."""
    kind = kind_of(config)
    if kind.network is None:
        raise ValueError(f"invalid arch={config.arch!r} for a network: it is fitted, not trained "
                         "(alexnet.run fits it)")
    return kind.network(config)


def init_weights(model: nn.Module) -> None:
    """The lecture's init: Xavier-uniform on every Conv2d/Linear weight (biases keep torch's)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)


@dataclass(frozen=True)
class TraceRow:
    layer: str
    shape: tuple[int, ...]
    params: int
    flops: int  # forward FLOPs for one image; a multiply-add counts as 2


def _flops(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Forward FLOPs of one layer for a batch of one: 2 per multiply-add in Conv2d/Linear,
    one per input element read by a pooling window or normalisation, one per activation."""
    if isinstance(layer, nn.Conv2d):
        k = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        return y.numel() * (2 * k + (layer.bias is not None))
    if isinstance(layer, nn.Linear):
        return y.numel() * (2 * layer.in_features + (layer.bias is not None))
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
        return y.numel() * k * k
    if isinstance(layer, nn.LocalResponseNorm):
        return y.numel() * (layer.size + 3)
    if isinstance(layer, (nn.ReLU, nn.Sigmoid, nn.Tanh)):
        return y.numel()
    return 0  # Flatten, Dropout (identity at inference)


def shape_trace(model: nn.Sequential, input_size: int) -> list[TraceRow]:
    """The lecture's ``for layer in net: X = layer(X)`` loop, with parameters and FLOPs."""
    rows = []
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 1, input_size, input_size, device=next(model.parameters()).device)
    with torch.no_grad():
        for layer in model:
            y = layer(x)
            params = sum(p.numel() for p in layer.parameters())
            rows.append(TraceRow(layer.__class__.__name__, tuple(y.shape), params, _flops(layer, x, y)))
            x = y
    model.train(was_training)
    return rows


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Sequential, input_size: int) -> int:
    """Forward FLOPs for one image (training costs about 3x: forward + two backward products)."""
    return sum(row.flops for row in shape_trace(model, input_size))
