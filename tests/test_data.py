import gzip
import shutil

import numpy as np
import pytest
import torch

from alexnet.config import Config
from alexnet.data import (
    FILES,
    SHIFT_PX,
    DataError,
    DeviceLoader,
    LectureDataset,
    augment,
    lecture_loader,
    load_fashion_mnist,
    stratified_subset,
    verify,
)


def test_official_files_verify_and_load(data_dir, fmnist):
    verify(data_dir)  # raises on any MD5 mismatch
    assert fmnist.train_images.shape == (60_000, 28, 28) and fmnist.train_images.dtype == torch.uint8
    assert fmnist.test_images.shape == (10_000, 28, 28)
    assert torch.bincount(fmnist.train_labels).tolist() == [6000] * 10
    assert torch.bincount(fmnist.test_labels).tolist() == [1000] * 10
    # the official pixel mean (Fashion-MNIST README: 0.2860406)
    assert fmnist.train_images.double().mean().item() / 255 == pytest.approx(0.2860406, abs=1e-7)


def test_env_var_is_used(data_dir, monkeypatch):
    monkeypatch.setenv("ALEXNET_DATA_DIR", str(data_dir))
    assert load_fashion_mnist().test_labels.shape == (10_000,)


def test_missing_folder_says_where_and_how(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing}.*does not exist.*--data-dir DIR or set ALEXNET_DATA_DIR"):
        load_fashion_mnist(missing)


def _copy(data_dir, tmp_path):
    for name in FILES:
        shutil.copy(data_dir / name, tmp_path / name)
    return tmp_path


def test_missing_file_is_named(data_dir, tmp_path):
    folder = _copy(data_dir, tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(folder)


def _gz(payload: bytes, level: int = 9) -> bytes:
    return gzip.compress(payload, compresslevel=level, mtime=0)


def _idx(magic: int, shape: list[int]) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
    return header + bytes(int(np.prod(shape)))


def _flip_middle(raw: bytes) -> bytes:
    raw = bytearray(raw)
    raw[len(raw) // 2] ^= 0xFF
    return bytes(raw)


# (name, file to damage, damage(official bytes) -> new bytes, expected message)
BAD_FILES = [
    ("bit flip", "train-labels-idx1-ubyte.gz", _flip_middle, "train-labels-idx1-ubyte.gz is not a readable gzip"),
    ("truncated", "t10k-images-idx3-ubyte.gz", lambda raw: raw[: len(raw) // 2], "t10k-images.* truncated or corrupt"),
    ("not gzip", "t10k-labels-idx1-ubyte.gz", lambda raw: b"<html>404</html>", "not a readable gzip file"),
    ("empty", "train-images-idx3-ubyte.gz", lambda raw: _gz(b""), "magic number 2051 .images.: its header reads None"),
    ("labels as images", "train-images-idx3-ubyte.gz", lambda raw: _gz(_idx(2049, [60000])),
     "magic number 2051 .images.: its header reads 2049"),
    ("short data", "t10k-images-idx3-ubyte.gz", lambda raw: _gz(_idx(2051, [10000, 28, 28])[:-5]),
     "holds 7839995 bytes of data, its header says \\[10000, 28, 28\\]"),
    ("count mismatch", "t10k-labels-idx1-ubyte.gz", lambda raw: _gz(_idx(2049, [9999])),
     "t10k has 10000 images but 9999 labels"),
    ("recompressed", "train-labels-idx1-ubyte.gz", lambda raw: _gz(gzip.decompress(raw), level=1),
     "train-labels-idx1-ubyte.gz has MD5 .* not the official 25c81989"),
]


@pytest.mark.parametrize("case,name,damage,message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_is_a_clear_error(data_dir, tmp_path, case, name, damage, message, ledger):
    folder = _copy(data_dir, tmp_path)
    (folder / name).write_bytes(damage((folder / name).read_bytes()))
    with pytest.raises(DataError, match=message) as err:
        load_fashion_mnist(folder)
    ledger(kind="bad input", input=f"data file: {case}", tried=1,
           error=str(err.value).replace(str(tmp_path), "DIR").split(": pass --data-dir")[0].split("; replace")[0])


def test_partial_folder_names_what_is_missing_and_present(data_dir, tmp_path, ledger):
    folder = _copy(data_dir, tmp_path)
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).unlink()
    expected = ("lacks train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz "
                "\\(it has only train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz\\)")
    with pytest.raises(DataError, match=expected) as err:
        load_fashion_mnist(folder)
    ledger(kind="bad input", input="data folder with 2 of the 4 files", tried=1,
           error=str(err.value).replace(str(tmp_path), "DIR").split(": pass --data-dir")[0])


def test_stratified_subset_takes_first_of_each_class(fmnist):
    x, y = stratified_subset(fmnist.train_images, fmnist.train_labels, 2000)
    assert torch.bincount(y).tolist() == [200] * 10
    first_of_class0 = (fmnist.train_labels == 0).nonzero().flatten()[:200]
    assert torch.equal(x[y == 0], fmnist.train_images[first_of_class0])


def test_device_pipeline_matches_lecture_pipeline(fmnist):
    """Same images, same tensors: PIL's bilinear Resize rounds to uint8 before ToTensor, so
    the two differ by at most one grey level (1/255)."""
    images, labels = fmnist.test_images[:64], fmnist.test_labels[:64]
    for size, tol in [(224, 1 / 255 + 1e-6), (28, 0.0)]:
        config = Config(input_size=size, batch_size=64, channels_last=False, device="cpu")
        ours, our_labels = next(DeviceLoader(images, labels, config, "cpu").epoch())
        theirs, their_labels = next(iter(lecture_loader(images, labels, batch_size=64, input_size=size, workers=2)))
        assert ours.shape == theirs.shape == (64, 1, size, size)
        assert torch.equal(our_labels, their_labels)
        assert (ours - theirs).abs().max().item() <= tol
    assert LectureDataset(images, labels)[0][0].shape == (1, 224, 224)


def test_shuffle_is_seeded_and_covers_every_image(fmnist):
    x, y = fmnist.test_images[:100], fmnist.test_labels[:100]
    loader = DeviceLoader(x, y, Config(input_size=28, batch_size=32, device="cpu"), "cpu", train=True, seed=7)
    first = torch.cat([b for _, b in loader.epoch(1)])
    assert torch.equal(first, torch.cat([b for _, b in loader.epoch(1)]))
    assert not torch.equal(first, torch.cat([b for _, b in loader.epoch(2)]))
    assert sorted(first.tolist()) == sorted(y.tolist())
    assert len(loader) == 4


def test_augment_is_a_flip_and_shift_of_each_image(fmnist):
    images = fmnist.test_images[:32]
    out = augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)
    for original, augmented in zip(images, out):
        candidates = []
        for img in (original, original.flip(-1)):
            padded = torch.nn.functional.pad(img, (SHIFT_PX,) * 4)
            for dy in range(2 * SHIFT_PX + 1):
                for dx in range(2 * SHIFT_PX + 1):
                    candidates.append(padded[dy:dy + 28, dx:dx + 28])
        assert any(torch.equal(augmented, c) for c in candidates)
    assert torch.equal(out, augment(images, torch.Generator().manual_seed(0)))


def test_truncated_gzip_is_a_data_error(tmp_path):
    from alexnet.data import _read_idx

    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00" * 1000)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DataError, match="not a readable gzip file"):
        _read_idx(path, 2051, 3)
