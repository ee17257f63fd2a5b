"""Pieces shared by the classification tasks: activations, layers, batches."""

import functools
import os
from collections.abc import Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tasks import data

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
    "leaky_relu": jax.nn.leaky_relu,
}
SPLITS = ("train", "test")


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Returns the activation called ``name``; ValueError lists valid names."""
  if name not in ACTIVATIONS:
    raise ValueError(f"Unknown activation {name!r};"
                     f" valid: {sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[name]


def check_family(dataset: str, split: str, activations: Sequence[str],
                 batch_sizes: Sequence[int]) -> None:
  """Validates the options shared by the classification families."""
  if dataset not in data.DATASETS:
    raise ValueError(f"Unknown dataset {dataset!r}; valid: {data.DATASETS}.")
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; valid: {SPLITS}.")
  if not activations or not batch_sizes:
    raise ValueError("activations and batch_sizes need at least one choice.")
  for name in activations:
    activation(name)
  if any(int(b) < 1 for b in batch_sizes):
    raise ValueError(f"batch sizes must be positive, got {batch_sizes}.")


def layer_sizes(options, what: str, allow_empty: bool = False):
  """Validates candidate per-layer sizes; returns them as tuples of ints.

  Raises:
    ValueError: no candidates, a non-positive size, or (unless
      ``allow_empty``) a candidate with no layers; the message names ``what``.
  """
  sizes = tuple(tuple(int(w) for w in option) for option in options)
  if not sizes or any((not s and not allow_empty) or (s and min(s) < 1)
                      for s in sizes):
    raise ValueError(f"{what} needs {'' if allow_empty else 'non-empty '}"
                     f"tuples of positive sizes, got {options}.")
  return sizes


def draw_structure(rng: np.random.Generator, layers, activations,
                   batch_sizes) -> tuple[tuple[int, ...], str, int]:
  """Draws (layer sizes, activation, batch size), in that order."""
  return (choose(rng, layers), choose(rng, tuple(activations)),
          int(choose(rng, tuple(batch_sizes))))


def choose(rng: np.random.Generator, options: Sequence[Any]) -> Any:
  """Picks one element of ``options`` uniformly (tuples stay tuples)."""
  return options[int(rng.integers(len(options)))]


def device_split(dataset: str, split: str,
                 data_dir=None) -> tuple[jax.Array, jax.Array]:
  """Returns one split of a data set as device arrays, shared across tasks.

  Args:
    dataset: One of ``data.DATASETS``.
    split: ``"train"`` or ``"test"``.
    data_dir: Directory for file-based data sets.
  """
  if dataset in ("mnist", "cifar10"):
    # Resolve now so the cache key follows $L2L_DATA_DIR.
    data_dir = os.fspath(data.resolve_data_dir(dataset, data_dir))
  return _device_split(dataset, split, data_dir)


@functools.lru_cache(maxsize=8)
def _device_split(dataset, split, data_dir):
  x_train, y_train, x_test, y_test = data.load(dataset, data_dir)
  x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
  # The first call may come inside a trace (eval_shape, jit); the cached
  # arrays must be concrete all the same.
  with jax.ensure_compile_time_eval():
    return jnp.asarray(x), jnp.asarray(y)


def normal_arrays(key: jax.Array, shapes) -> list[jax.Array]:
  """Draws standard normal float32 arrays of the given shapes from one key.

  One draw sliced into pieces compiles several times faster on CPU than one
  ``jax.random.normal`` call per array.
  """
  sizes = [int(np.prod(shape)) for shape in shapes]
  flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
  starts = np.cumsum([0] + sizes)
  return [flat[start:start + size].reshape(shape)
          for start, size, shape in zip(starts, sizes, shapes)]


def layers_init(key: jax.Array, names, weight_shapes) -> dict:
  """Returns ``{name: {"w", "b"}}`` with LeCun-normal weights, zero biases.

  Weights ``w ~ N(0, 1/fan_in)``, where ``fan_in`` is the product of all but
  the last (output) axis of the weight shape.
  """
  weights = normal_arrays(key, weight_shapes)
  return {name: {"w": w / np.sqrt(np.prod(w.shape[:-1])),
                 "b": jnp.zeros(w.shape[-1:], jnp.float32)}
          for name, w in zip(names, weights)}


def dense(params: dict[str, jax.Array], x_BxI: jax.Array) -> jax.Array:
  """Applies ``x W + b`` to a batch of vectors."""
  return x_BxI @ params["w"] + params["b"][None, :]


def minibatch(x: jax.Array, y: jax.Array, batch_size: int,
              key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Draws ``batch_size`` examples uniformly with replacement, inside jit."""
  index = jax.random.randint(key, (batch_size,), 0, x.shape[0])
  return x[index], y[index]


def cross_entropy(logits_BxC: jax.Array, labels_B: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B)
  return jnp.mean(losses)


def head_of_split(x: jax.Array, y: jax.Array,
                  num_examples: int) -> tuple[jax.Array, jax.Array]:
  """Returns the first ``num_examples`` of a split (static slice)."""
  return x[:num_examples], y[:num_examples]


class DatasetClassifier:
  """Shared methods of classifiers on a data set split (a mixin).

  The subclass provides ``x``, ``y``, ``batch_size``, ``full_loss_examples``
  and ``apply(params, x) -> logits``.
  """

  def sample_problem(self, key: jax.Array) -> tuple[()]:
    """Returns ``()``: the data set is the problem."""
    del key
    return ()

  def loss(self, params, problem: tuple[()], key: jax.Array) -> jax.Array:
    """Returns the mean cross-entropy on a minibatch drawn with ``key``."""
    del problem
    x, y = minibatch(self.x, self.y, self.batch_size, key)
    return cross_entropy(self.apply(params, x), y)

  def full_loss(self, params, problem: tuple[()]) -> jax.Array:
    """Returns the mean cross-entropy on the split's first examples."""
    del problem
    x, y = head_of_split(self.x, self.y, self.full_loss_examples)
    return cross_entropy(self.apply(params, x), y)


class ExactLoss:
  """Mixin for analytic tasks: the minibatch loss is the exact loss."""

  def loss(self, params, problem, key: jax.Array) -> jax.Array:
    """Returns ``full_loss(params, problem)``; ``key`` is unused."""
    del key
    return self.full_loss(params, problem)
