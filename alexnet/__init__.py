"""AlexNet on Fashion-MNIST, as in the d2l lecture: model, data pipeline and one trainer."""

from .config import Config
from .model import build_alexnet, build_lenet, build_model, shape_trace
from .train import train

__all__ = ["Config", "build_alexnet", "build_lenet", "build_model", "shape_trace", "train"]
