"""Offline data sources; nothing here downloads.

Every loader returns numpy arrays ``(x_train, y_train, x_test, y_test)``:
float32 inputs standardised with the training split's mean and standard
deviation (one scalar, per channel for CIFAR-10) and int32 labels in
``[0, 10)``. Images are NHWC. Results are cached per process and returned
read-only, since several tasks share them.

MNIST and CIFAR-10 are read from files under a data directory, given as
``data_dir`` or through the environment variable ``L2L_DATA_DIR``.
"""

import functools
import gzip
import os
import pathlib
import pickle
import random
import zlib

import numpy as np

DATA_DIR_ENV = "L2L_DATA_DIR"
DATASETS = ("mnist1d", "digits", "mnist", "cifar10")
NUM_CLASSES = 10

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_BIN_DIR = "cifar-10-batches-bin"
CIFAR10_BIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + (
    "test_batch.bin",)
CIFAR10_PY_DIR = "cifar-10-batches-py"
CIFAR10_PY_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + (
    "test_batch",)

_MNIST_HELP = (
    "Download the four MNIST files " + ", ".join(f"{n}.gz" for n in MNIST_FILES)
    + " (gzipped or not; e.g. from https://ossci-datasets.s3.amazonaws.com/mnist/)"
    " into <dir> or <dir>/mnist, then pass data_dir=<dir>"
    f" or set the environment variable {DATA_DIR_ENV}=<dir>.")
_CIFAR10_HELP = (
    "Download cifar-10-binary.tar.gz (or cifar-10-python.tar.gz) from"
    " https://www.cs.toronto.edu/~kriz/cifar.html and extract it into <dir> or"
    f" <dir>/cifar10, so that <dir>/{CIFAR10_BIN_DIR}/data_batch_1.bin (or"
    f" <dir>/{CIFAR10_PY_DIR}/data_batch_1) exists, then pass data_dir=<dir>"
    f" or set the environment variable {DATA_DIR_ENV}=<dir>.")

# IDX type codes (http://yann.lecun.com/exdb/mnist/): all big-endian.
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}
_CIFAR10_RECORD = 1 + 3 * 32 * 32


def _freeze(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
  for array in arrays:
    array.setflags(write=False)
  return arrays


def _standardise(x_train: np.ndarray, x_test: np.ndarray,
                 axis=None) -> tuple[np.ndarray, np.ndarray]:
  """Centres and scales both splits with the training split's statistics."""
  mean = x_train.mean(axis, dtype=np.float64, keepdims=True)
  std = np.maximum(x_train.std(axis, dtype=np.float64, keepdims=True), 1e-8)
  scale = lambda x: ((x - mean) / std).astype(np.float32)
  return scale(x_train), scale(x_test)


def _labels(labels: np.ndarray, path) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
    raise ValueError(f"{path}: labels must lie in [0, {NUM_CLASSES}), found"
                     f" range [{labels.min()}, {labels.max()}].")
  return labels.astype(np.int32)


@functools.lru_cache(maxsize=4)
def mnist1d(seed: int = 0) -> tuple[np.ndarray, ...]:
  """Generates MNIST-1D (4000 train, 1000 test sequences of length 40).

  Uses ``mnist1d.data.make_dataset`` with the package's default arguments
  and ``seed``; it never downloads.

  Args:
    seed: Generation seed.

  Returns:
    ``(x_train, y_train, x_test, y_test)``; inputs have shape ``(N, 40)``.
  """
  from mnist1d import data as mnist1d_data  # Optional dependency.
  args = mnist1d_data.get_dataset_args()
  args.seed = int(seed)
  # make_dataset reseeds the global generators; leave the caller's intact.
  python_state, numpy_state = random.getstate(), np.random.get_state()
  try:
    data = mnist1d_data.make_dataset(args)
  finally:
    random.setstate(python_state)
    np.random.set_state(numpy_state)
  x_train, x_test = _standardise(data["x"], data["x_test"])
  return _freeze(x_train, _labels(data["y"], "mnist1d"),
                 x_test, _labels(data["y_test"], "mnist1d"))


@functools.lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, ...]:
  """Loads scikit-learn's bundled 8×8 digits with a fixed 80/20 split.

  Returns:
    ``(x_train, y_train, x_test, y_test)``; inputs have shape
    ``(N, 8, 8, 1)``; 1437 training and 360 test images.
  """
  from sklearn.datasets import load_digits  # Optional dependency.
  bunch = load_digits()
  order = np.random.default_rng(0).permutation(len(bunch.target))
  images = bunch.images[order][..., None]
  labels = _labels(bunch.target[order], "digits")
  num_train = int(0.8 * len(labels))
  x_train, x_test = _standardise(images[:num_train], images[num_train:])
  return _freeze(x_train, labels[:num_train], x_test, labels[num_train:])


def data_root(data_dir: str | os.PathLike | None,
              help_text: str) -> pathlib.Path:
  """Resolves ``data_dir``, falling back to ``$L2L_DATA_DIR``.

  Raises:
    FileNotFoundError: if neither is set or the directory does not exist.
  """
  root = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
  if not root:
    raise FileNotFoundError(
        f"No data directory: data_dir is None and {DATA_DIR_ENV} is unset. "
        + help_text)
  root = pathlib.Path(root).expanduser().resolve()
  if not root.is_dir():
    raise FileNotFoundError(f"Data directory {root} does not exist. "
                            + help_text)
  return root


def _read_bytes(path: pathlib.Path) -> bytes:
  """Reads a file, decompressing it when its name ends in ``.gz``."""
  if path.suffix != ".gz":
    return path.read_bytes()
  try:
    with gzip.open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as error:
    raise ValueError(f"{path}: corrupt gzip file ({error}).") from error


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one IDX file (the MNIST format), optionally gzipped.

  The header is two zero bytes, a type code, the number of dimensions and
  then each dimension as a big-endian uint32.

  Args:
    path: The file; a ``.gz`` suffix means gzip.

  Returns:
    The array with the header's shape and dtype (native byte order).

  Raises:
    ValueError: on a bad magic number, unknown type or wrong size.
  """
  path = pathlib.Path(path)
  raw = _read_bytes(path)
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
    raise ValueError(f"{path}: not an IDX file (magic number"
                     f" {raw[:4].hex() or 'missing'}, expected 0000xxyy).")
  type_code, ndim = raw[2], raw[3]
  if type_code not in _IDX_DTYPES:
    raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02x}.")
  header_size = 4 + 4 * ndim
  if len(raw) < header_size:
    raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes).")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[type_code])
  expected = header_size + int(np.prod(shape)) * dtype.itemsize
  if len(raw) != expected:
    raise ValueError(f"{path}: IDX header says shape {shape} ({expected}"
                     f" bytes) but the file has {len(raw)} bytes.")
  array = np.frombuffer(raw, dtype, offset=header_size).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def _find(dirs, name: str, help_text: str, suffixes=("",)) -> pathlib.Path:
  """Returns the first of ``<dir>/<name><suffix>`` that is a file."""
  candidates = [d / (name + suffix) for d in dirs for suffix in suffixes]
  for candidate in candidates:
    if candidate.is_file():
      return candidate
  looked = ", ".join(str(c) for c in candidates)
  raise FileNotFoundError(f"Missing file {name} (looked for {looked}). "
                          + help_text)


def mnist(data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, ...]:
  """Reads MNIST from the four standard IDX files.

  Args:
    data_dir: Directory holding the files (or a ``mnist`` subdirectory
      holding them); defaults to ``$L2L_DATA_DIR``.

  Returns:
    ``(x_train, y_train, x_test, y_test)``; inputs ``(N, 28, 28, 1)``.

  Raises:
    FileNotFoundError: when the directory or a file is missing; the message
      says how to get the files.
    ValueError: when a file is corrupt.
  """
  return _mnist(data_root(data_dir, _MNIST_HELP))


@functools.lru_cache(maxsize=2)
def _mnist(root: pathlib.Path) -> tuple[np.ndarray, ...]:
  paths = [_find((root, root / "mnist"), name, _MNIST_HELP, ("", ".gz"))
           for name in MNIST_FILES]
  x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
  for images, labels, image_path in ((x_train, y_train, paths[0]),
                                     (x_test, y_test, paths[2])):
    if images.ndim != 3 or labels.ndim != 1:
      raise ValueError(f"{image_path}: expected (N, rows, cols) images and (N,)"
                       f" labels, got {images.shape} and {labels.shape}.")
    if len(images) != len(labels):
      raise ValueError(f"{image_path}: {len(images)} images but"
                       f" {len(labels)} labels.")
  x_train, x_test = _standardise(x_train[..., None], x_test[..., None])
  return _freeze(x_train, _labels(y_train, paths[1]),
                 x_test, _labels(y_test, paths[3]))


def read_cifar10_bin(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads one CIFAR-10 binary batch: records of a label byte + 3072 CHW bytes.

  Returns:
    ``(images, labels)``: uint8 NHWC ``(N, 32, 32, 3)`` and int32 ``(N,)``.
  """
  path = pathlib.Path(path)
  raw = path.read_bytes()
  if not raw or len(raw) % _CIFAR10_RECORD:
    raise ValueError(f"{path}: size {len(raw)} is not a positive multiple of"
                     f" the {_CIFAR10_RECORD}-byte CIFAR-10 record.")
  records = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR10_RECORD)
  images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), _labels(records[:, 0], path)


def read_cifar10_py(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads one CIFAR-10 python batch (a pickle with b'data' and b'labels').

  Unpickling runs code from the file: only read files you trust.

  Returns:
    ``(images, labels)``: uint8 NHWC ``(N, 32, 32, 3)`` and int32 ``(N,)``.
  """
  path = pathlib.Path(path)
  try:
    with open(path, "rb") as f:
      batch = pickle.load(f, encoding="bytes")
  except Exception as error:  # A corrupt pickle can raise almost anything.
    raise ValueError(f"{path}: not a CIFAR-10 pickle ({error!r}).") from error
  if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys():
    raise ValueError(f"{path}: expected a dict with b'data' and b'labels'.")
  data = np.asarray(batch[b"data"])
  labels = np.asarray(batch[b"labels"])
  if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
    raise ValueError(f"{path}: expected (N, 3072) data and N labels, got"
                     f" {data.shape} and {labels.shape}.")
  images = data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), _labels(labels, path)


def cifar10(data_dir: str | os.PathLike | None = None
           ) -> tuple[np.ndarray, ...]:
  """Reads CIFAR-10, preferring the binary version over the python one.

  Args:
    data_dir: Directory holding ``cifar-10-batches-bin`` or
      ``cifar-10-batches-py`` (directly or under ``cifar10/``); defaults to
      ``$L2L_DATA_DIR``.

  Returns:
    ``(x_train, y_train, x_test, y_test)``; inputs ``(N, 32, 32, 3)``,
    standardised per channel.

  Raises:
    FileNotFoundError: when no batch directory or one of its files is
      missing; the message says how to get the files.
    ValueError: when a file is corrupt.
  """
  return _cifar10(data_root(data_dir, _CIFAR10_HELP))


@functools.lru_cache(maxsize=2)
def _cifar10(root: pathlib.Path) -> tuple[np.ndarray, ...]:
  formats = ((CIFAR10_BIN_DIR, CIFAR10_BIN_FILES, read_cifar10_bin),
             (CIFAR10_PY_DIR, CIFAR10_PY_FILES, read_cifar10_py))
  for subdir, names, reader in formats:
    for base in (root, root / "cifar10"):
      if (base / subdir).is_dir():
        batches = [reader(_find([base / subdir], name, _CIFAR10_HELP))
                   for name in names]
        x_train = np.concatenate([images for images, _ in batches[:-1]])
        y_train = np.concatenate([labels for _, labels in batches[:-1]])
        x_test, y_test = batches[-1]
        x_train, x_test = _standardise(x_train, x_test, axis=(0, 1, 2))
        return _freeze(x_train, y_train, x_test, y_test)
  raise FileNotFoundError(
      f"Missing directory {CIFAR10_BIN_DIR} or {CIFAR10_PY_DIR} under {root}"
      f" or {root / 'cifar10'}. " + _CIFAR10_HELP)


def resolve_data_dir(dataset: str, data_dir=None) -> pathlib.Path:
  """Returns the data directory a file-based data set would be read from.

  Raises:
    FileNotFoundError: as :func:`mnist` and :func:`cifar10` do.
  """
  help_text = {"mnist": _MNIST_HELP, "cifar10": _CIFAR10_HELP}[dataset]
  return data_root(data_dir, help_text)


def load(dataset: str, data_dir=None) -> tuple[np.ndarray, ...]:
  """Returns ``(x_train, y_train, x_test, y_test)`` for a named data set.

  Args:
    dataset: One of :data:`DATASETS`.
    data_dir: Directory for file-based data sets (MNIST, CIFAR-10).
  """
  if dataset == "mnist1d":
    return mnist1d()
  if dataset == "digits":
    return digits()
  if dataset == "mnist":
    return mnist(data_dir)
  if dataset == "cifar10":
    return cifar10(data_dir)
  raise ValueError(f"Unknown dataset {dataset!r}; valid: {DATASETS}.")
