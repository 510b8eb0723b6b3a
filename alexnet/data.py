"""Fashion-MNIST: verified loading of the official IDX files and two input pipelines.

- ``DeviceLoader``: the whole set as uint8 on the training device; each batch is
  shuffled with a seeded generator, scaled to [0, 1], optionally augmented and
  bilinearly resized on the device.
- ``LectureDataset``: the lecture's per-image pipeline (PIL ``Resize`` + ``ToTensor`` in a
  DataLoader with workers), kept as the comparison arm of the throughput benchmark.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config
from .untrusted import expanded

ENV_VAR = "ALEXNET_DATA_DIR"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "alexnet-claims-lab"
# The official files and the MD5s torchvision checks them against.
FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
HOW_TO_PROVIDE = (f"pass --data-dir DIR or set {ENV_VAR}=DIR to a folder holding the four official "
                  f"files ({', '.join(FILES)}), or leave both unset to download them with torchvision")
SHIFT_PX = 2  # augmentation: shifts of up to 2 px (of 28) in each direction, zero fill


class DataError(RuntimeError):
    """The data could not be found or is not the official Fashion-MNIST."""


@dataclass(frozen=True)
class FashionMNIST:
    train_images: torch.Tensor  # uint8 [60000, 28, 28]
    train_labels: torch.Tensor  # int64 [60000]
    test_images: torch.Tensor   # uint8 [10000, 28, 28]
    test_labels: torch.Tensor   # int64 [10000]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir``, else $ALEXNET_DATA_DIR, else torchvision's download into the cache."""
    given = data_dir if data_dir is not None else os.environ.get(ENV_VAR)
    if given is not None:
        source = "--data-dir" if data_dir is not None else f"${ENV_VAR}"
        try:
            path = expanded(given, source)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        if not path.is_dir():
            raise DataError(f"Fashion-MNIST folder {path} (from {source}) does not exist: {HOW_TO_PROVIDE}")
        return path
    import torchvision  # only for the download

    try:
        torchvision.datasets.FashionMNIST(CACHE_DIR, train=True, download=True)
    except Exception as exc:  # network or disk failure
        raise DataError(f"could not download Fashion-MNIST into {CACHE_DIR} ({exc}): {HOW_TO_PROVIDE}") from exc
    return CACHE_DIR / "FashionMNIST" / "raw"


def check_complete(folder: Path) -> None:
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        present = [name for name in FILES if name not in missing]
        raise DataError(f"Fashion-MNIST folder {folder} lacks {', '.join(missing)}"
                        + (f" (it has only {', '.join(present)})" if present else "") + f": {HOW_TO_PROVIDE}")


def verify(folder: Path) -> None:
    """Every official file present with its official MD5, else a DataError naming what is wrong."""
    check_complete(folder)
    for name in FILES:
        _check_md5(folder / name, hashlib.md5((folder / name).read_bytes()).hexdigest())


def _check_md5(path: Path, actual: str) -> None:
    if actual != FILES[path.name]:
        raise DataError(f"{path} has MD5 {actual}, not the official {FILES[path.name]}: the file is "
                        f"corrupt or not Fashion-MNIST; replace it ({HOW_TO_PROVIDE})")


def _read_idx(path: Path, magic: int, dims: int) -> tuple[np.ndarray, str]:
    """(the array, the MD5 of the .gz file), from one read of the file."""
    packed = path.read_bytes()
    try:
        raw = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc}): it is truncated or corrupt; replace it "
                        f"({HOW_TO_PROVIDE})") from exc
    header = 4 * (1 + dims)
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if len(raw) < header or found != magic:
        raise DataError(f"{path} is not an IDX file with magic number {magic} ({'images' if dims == 3 else 'labels'})"
                        f": its header reads {found} and is {len(raw)} bytes long; replace it ({HOW_TO_PROVIDE})")
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path} holds {len(raw) - header} bytes of data, its header says {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape), hashlib.md5(packed).hexdigest()


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> FashionMNIST:
    """The four official files: each parsed (a specific error for a corrupt gzip, a wrong IDX
    header or an image/label count mismatch), then checked against its official MD5."""
    folder = resolve_data_dir(data_dir)
    check_complete(folder)
    parts, md5s = [], {}
    for split in ("train", "t10k"):
        images, md5s[f"{split}-images-idx3-ubyte.gz"] = _read_idx(folder / f"{split}-images-idx3-ubyte.gz", 2051, 3)
        labels, md5s[f"{split}-labels-idx1-ubyte.gz"] = _read_idx(folder / f"{split}-labels-idx1-ubyte.gz", 2049, 1)
        if len(images) != len(labels):
            raise DataError(f"{folder}: {split} has {len(images)} images but {len(labels)} labels")
        parts += [torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))]
    for name, actual in md5s.items():  # well-formed but not the official bytes
        _check_md5(folder / name, actual)
    return FashionMNIST(*parts)


def stratified_subset(images: torch.Tensor, labels: torch.Tensor, size: int | None):
    """The first ``size // 10`` images of each class, in their original order."""
    if size is None or size == len(labels):
        return images, labels
    per_class = size // 10
    picked = []
    for c in range(10):
        idx = (labels == c).nonzero().flatten()
        if len(idx) < per_class:
            raise ValueError(f"subset of {size} needs {per_class} images of class {c}, the data has {len(idx)}")
        picked.append(idx[:per_class])
    keep = torch.cat(picked).sort().values
    return images[keep], labels[keep]


def split_validation(images: torch.Tensor, labels: torch.Tensor, size: int):
    """(train_images, train_labels, val_images, val_labels): the last ``size // 10`` images of
    each class held out for validation, the rest kept for training, both in their original order."""
    per_class = size // 10
    held = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(10):
        idx = (labels == c).nonzero().flatten()
        if len(idx) <= per_class:
            raise ValueError(f"validation_size={size} holds out {per_class} images of class {c}, "
                             f"the training set has {len(idx)}")
        held[idx[-per_class:]] = True
    return images[~held], labels[~held], images[held], labels[held]


def subsets(config: Config, data: FashionMNIST):
    """(train images, labels, evaluation images, labels, "test" or "val", training-sample images,
    labels): the config's subsets, with the evaluation images carved from the training set when
    it asks for a validation split; the last is images spread evenly over the training subset, as
    many as the evaluation set has (``train_eval_acc``). Every model, classical ones included,
    sees exactly these."""
    train_x, train_y = data.train_images, data.train_labels
    if config.validation_size:  # evaluate on images carved from the training set, never on the test set
        train_x, train_y, eval_x, eval_y = split_validation(train_x, train_y, config.validation_size)
        split = "val"
    else:
        eval_x, eval_y = stratified_subset(data.test_images, data.test_labels, config.test_size)
        split = "test"
    train_x, train_y = stratified_subset(train_x, train_y, config.train_size)
    return train_x, train_y, eval_x, eval_y, split, *training_sample(train_x, train_y, len(eval_y))


def training_sample(images: torch.Tensor, labels: torch.Tensor, n: int):
    """(images, labels): ``n`` of them (at most all), stratified as the evaluation set is (n // 10
    of each class, spread evenly over its images, in their order): an unstratified sample's class
    mix alone moved a net's train - test gap by up to ±0.01. Fewer than 10: spread over the set."""
    if n >= len(labels):
        return images, labels
    if n < 10:
        picked = torch.linspace(0, len(labels) - 1, n).round().long()
        return images[picked], labels[picked]
    picked = []
    for c in range(10):
        idx = (labels == c).nonzero().flatten()
        picked.append(idx[torch.linspace(0, len(idx) - 1, min(len(idx), n // 10)).round().long()])
    keep = torch.cat(picked).sort().values
    return images[keep], labels[keep]


def to_input(batch_u8: torch.Tensor, input_size: int) -> torch.Tensor:
    """uint8 [B, 28, 28] -> float [B, 1, S, S] in [0, 1], bilinear resize (as PIL's Resize)."""
    x = batch_u8.unsqueeze(1).float().div_(255)
    if input_size != x.shape[-1]:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)
    return x


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device``: on CUDA copied from pinned memory without blocking, so the host
    goes on queueing work while the copy runs (a pageable copy makes the host wait for it)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def augment(batch_u8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image: a horizontal flip with probability 1/2, then a shift of -2..2 px along
    each axis with zero fill. Random draws come from a CPU generator for reproducibility and go
    to the device in one copy."""
    n, h, w = batch_u8.shape
    flip = torch.rand(n, generator=generator) < 0.5
    dy, dx = (torch.randint(-SHIFT_PX, SHIFT_PX + 1, (2, n), generator=generator))
    dev = batch_u8.device
    flip, dy, dx = to_device(torch.stack([flip.long(), dy, dx]), dev)
    x = torch.where(flip.bool()[:, None, None], batch_u8.flip(-1), batch_u8)
    padded = F.pad(x, (SHIFT_PX,) * 4)
    rows = torch.arange(h, device=dev) + SHIFT_PX - dy[:, None]  # [n, h]
    cols = torch.arange(w, device=dev) + SHIFT_PX - dx[:, None]  # [n, w]
    return padded[torch.arange(n, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]


class DeviceLoader:
    """Batches of a uint8 image set held on ``device``; one call of ``epoch(k)`` per epoch.

    Shuffling and augmentation are seeded from (seed, epoch), so any epoch can be replayed
    on its own, which is what makes resuming from a checkpoint exact.

    ``shard=(rank, world)``: data-parallel training. Every rank draws the same global batches
    (same permutation, same augmentation) and keeps its ``rank``-th slice of each, so the ranks
    together see exactly the batches of a single-process run with the same batch size."""

    def __init__(self, images, labels, config: Config, device, *, train: bool = False, seed: int = 0,
                 shard: tuple[int, int] = (0, 1)):
        """Batches of ``config.batch_size`` at ``config.input_size`` in the config's memory layout;
        ``train``: shuffled, and augmented when the config says so."""
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size, self.input_size, self.device = config.batch_size, config.input_size, torch.device(device)
        self.shuffle, self.augment, self.seed = train, train and config.augment, seed
        self.channels_last = config.channels_last
        self.rank, self.world = shard

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def epoch(self, epoch: int = 0):
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        n = len(self.labels)
        order = to_device(torch.randperm(n, generator=g), self.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                x, y = self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                x, y = self.images[idx], self.labels[idx]
            if self.augment:
                x = augment(x, g)
            if self.world > 1:
                x, y = x.tensor_split(self.world)[self.rank], y.tensor_split(self.world)[self.rank]
            x = to_input(x, self.input_size)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


class LectureDataset(torch.utils.data.Dataset):
    """The lecture's pipeline, image by image: PIL image -> ``Resize`` -> ``ToTensor``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, input_size: int = 224):
        from torchvision import transforms

        self.images, self.labels = images.numpy(), labels
        steps = [transforms.ToTensor()]
        if input_size != 28:
            steps.insert(0, transforms.Resize(input_size))
        self.transform = transforms.Compose(steps)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode="L")), self.labels[i]


def lecture_loader(images, labels, *, batch_size=128, input_size=224, shuffle=False, workers=4, drop_last=False):
    """``torch.utils.data.DataLoader`` as in d2l's ``load_data_fashion_mnist``."""
    return torch.utils.data.DataLoader(LectureDataset(images, labels, input_size), batch_size,
                                       shuffle=shuffle, num_workers=workers, drop_last=drop_last)
