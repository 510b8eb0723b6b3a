"""Kinds of arm, one registry: what a config's ``arch`` names, each declared in one place.

A kind is either a network trained by the SGD loop (``network``: the module it builds) or a
pipeline fitted once (``fit``). Beside that it declares its refusals (``check``), the fields its
result depends on (``key_fields``: a run is reused under that key) and, for a fitted kind, how
the estimate costs it (``timed``, ``cost_name``). The built-in kinds register themselves where
they are implemented: AlexNet and LeNet in ``alexnet.model``, the SVM in ``alexnet.classical``.
A new kind is one ``register(Kind(...))`` call (and its fields in ``Config`` if it has options);
``alexnet.run`` runs it, the suite plans, costs and reports it with nothing else to edit.

This module imports nothing of the project: ``Config`` validates its ``arch`` against ``KINDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _no_refusal(config) -> None:
    return None


@dataclass(frozen=True)
class Kind:
    """A kind of arm: a network trained by the SGD loop, or a pipeline fitted once, with what the
    suite needs to check, key, run and cost it (see the module's docstring)."""

    name: str
    describes: str  # one line for --help and the docs
    network: Callable | None = None  # (config) -> nn.Sequential: trained by the SGD loop, ``alexnet.train``
    fit: Callable | None = None  # or (config, seed, data, on_epoch) -> TrainResult: fitted once, seed-free
    check: Callable = _no_refusal  # (config) -> None, raising ValueError("invalid FIELD=...") for what it cannot take
    key_fields: tuple[str, ...] | None = None  # the fields its result depends on; None: every field
    timed: Callable | None = None  # fitted: (config, data, train images, eval images) -> (fit s, evaluation s)
    cost_name: Callable | None = None  # fitted: (config) -> the estimate's name for its cost (its speed key)

    def __post_init__(self) -> None:
        if (self.network is None) == (self.fit is None):
            raise ValueError(f"invalid kind {self.name!r}: expected exactly one of network (trained by SGD) or fit")

    @property
    def sgd(self) -> bool:
        """Trained by SGD: the seed, ``lr`` and the optimiser's fields change its numbers."""
        return self.network is not None


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (a name registered twice is refused: one declaration each)."""
    if kind.name in KINDS:
        raise ValueError(f"invalid kind {kind.name!r}: already registered ({KINDS[kind.name].describes})")
    KINDS[kind.name] = kind
    return kind


def kind_of(config) -> Kind:
    """The kind ``config.arch`` names (``Config`` has checked that it is registered)."""
    return KINDS[config.arch]
