"""Writers of tiny MNIST and CIFAR-10 files, for tests only."""

import gzip
import os
import pathlib
import pickle

import numpy as np

from tasks import data

_IDX_CODES = {np.dtype(name): code for name, code in (
    ("u1", 0x08), ("i1", 0x09), (">i2", 0x0B), (">i4", 0x0C), (">f4", 0x0D),
    (">f8", 0x0E))}


def idx_bytes(array: np.ndarray) -> bytes:
  """Encodes ``array`` in the IDX format (big-endian)."""
  array = np.asarray(array)
  big_endian = array.astype(array.dtype.newbyteorder(">"))
  code = _IDX_CODES[big_endian.dtype]
  header = bytes([0, 0, code, array.ndim])
  header += np.asarray(array.shape, ">u4").tobytes()
  return header + big_endian.tobytes()


def write_bytes(path: str | os.PathLike, raw: bytes) -> pathlib.Path:
  """Writes ``raw``, gzipped when ``path`` ends in ``.gz``."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.suffix == ".gz":
    raw = gzip.compress(raw)
  path.write_bytes(raw)
  return path


def fake_images(rng: np.random.Generator, num: int,
                shape) -> tuple[np.ndarray, np.ndarray]:
  """Random uint8 images and int labels in ``[0, 10)``."""
  images = rng.integers(0, 256, (num, *shape), dtype=np.uint8)
  labels = rng.integers(0, data.NUM_CLASSES, num).astype(np.uint8)
  return images, labels


def write_mnist(directory: str | os.PathLike, num_train: int = 64,
                num_test: int = 16, gz: bool = False, seed: int = 0) -> dict:
  """Writes the four MNIST IDX files of random 28×28 images.

  Returns:
    The arrays written, keyed by file name (without ``.gz``).
  """
  rng = np.random.default_rng(seed)
  x_train, y_train = fake_images(rng, num_train, (28, 28))
  x_test, y_test = fake_images(rng, num_test, (28, 28))
  arrays = dict(zip(data.MNIST_FILES, (x_train, y_train, x_test, y_test)))
  for name, array in arrays.items():
    write_bytes(pathlib.Path(directory) / (name + (".gz" if gz else "")),
                idx_bytes(array))
  return arrays


def write_cifar10(directory: str | os.PathLike, per_batch: int = 8,
                  binary: bool = True, seed: int = 0) -> list:
  """Writes the six CIFAR-10 batches, binary or python (pickle) version.

  Returns:
    ``[(images_NHWC, labels), ...]`` per batch, in file order.
  """
  rng = np.random.default_rng(seed)
  subdir, names = ((data.CIFAR10_BIN_DIR, data.CIFAR10_BIN_FILES) if binary
                   else (data.CIFAR10_PY_DIR, data.CIFAR10_PY_FILES))
  batches = []
  for name in names:
    images, labels = fake_images(rng, per_batch, (32, 32, 3))
    chw = images.transpose(0, 3, 1, 2).reshape(per_batch, -1)
    if binary:
      raw = np.concatenate([labels[:, None], chw], axis=1).tobytes()
    else:
      raw = pickle.dumps({b"data": chw, b"labels": labels.tolist()})
    write_bytes(pathlib.Path(directory) / subdir / name, raw)
    batches.append((images, labels))
  return batches
