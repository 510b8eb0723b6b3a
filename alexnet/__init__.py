"""AlexNet on Fashion-MNIST, as in the d2l lecture: model, data pipeline and one trainer."""

from .config import Config
from .kinds import KINDS, Kind, register
from .model import build_alexnet, build_lenet, build_model, shape_trace
from .run import run
from .train import train

__all__ = ["KINDS", "Config", "Kind", "build_alexnet", "build_lenet", "build_model", "register", "run", "shape_trace",
           "train"]
