"""Multilayer perceptron classifiers on a data set split."""

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from flax import struct

from tasks import _common
from tasks import data

Params = dict[str, dict[str, jax.Array]]


@struct.dataclass
class MLPTask(_common.DatasetClassifier):
  """Softmax cross-entropy of an MLP on one split of a data set.

  Inputs of any shape are flattened. Params are a plain dict
  ``{"dense_0": {"w", "b"}, ..., "head": {"w", "b"}}``; the problem is ``()``
  because the data is fixed.

  Attributes:
    x: Inputs ``(N, ...)`` on the device (traced).
    y: Integer labels ``(N,)`` on the device (traced).
    hidden_sizes: Width of each hidden layer.
    activation: Name of the hidden activation, a key of
      ``_common.ACTIVATIONS``.
    batch_size: Examples per minibatch of ``loss``.
    num_classes: Number of output logits.
    full_loss_examples: ``full_loss`` uses at most this many examples.
    name: A name that identifies the structure.

  Example:
    >>> task = MLPFamily("digits").sample_task(np.random.default_rng(0))
    >>> params = task.init_params(jax.random.key(0))
    >>> task.loss(params, (), jax.random.key(1)).shape
    ()
  """

  x: jax.Array
  y: jax.Array
  hidden_sizes: tuple[int, ...] = struct.field(pytree_node=False, default=(20,))
  activation: str = struct.field(pytree_node=False, default="sigmoid")
  batch_size: int = struct.field(pytree_node=False, default=128)
  num_classes: int = struct.field(pytree_node=False, default=data.NUM_CLASSES)
  full_loss_examples: int = struct.field(pytree_node=False, default=10_000)
  name: str = struct.field(pytree_node=False, default="mlp")

  def init_params(self, key: jax.Array) -> Params:
    """Returns LeCun-normal weights and zero biases for every layer."""
    widths = ((int(np.prod(self.x.shape[1:])),) + tuple(self.hidden_sizes)
              + (self.num_classes,))
    names = [f"dense_{i}" for i in range(len(self.hidden_sizes))] + ["head"]
    return _common.layers_init(key, names, list(zip(widths[:-1], widths[1:])))

  def apply(self, params: Params, x: jax.Array) -> jax.Array:
    """Returns logits ``(B, num_classes)`` for inputs ``(B, ...)``."""
    act = _common.activation(self.activation)
    h = x.reshape(x.shape[0], -1)
    for i in range(len(self.hidden_sizes)):
      h = act(_common.dense(params[f"dense_{i}"], h))
    return _common.dense(params["head"], h)


@dataclasses.dataclass(frozen=True)
class MLPFamily:
  """Samples MLP tasks on one data set; each structural option is a choice.

  Attributes:
    dataset: One of ``"mnist1d"``, ``"digits"``, ``"mnist"``, ``"cifar10"``.
    hidden_sizes: Candidate hidden-layer width tuples, e.g. ``((20,), (32, 32))``.
    activations: Candidate activation names.
    batch_sizes: Candidate minibatch sizes.
    split: ``"train"`` for training, ``"test"`` for held-out evaluation.
    data_dir: Directory for MNIST/CIFAR-10 files (else ``$L2L_DATA_DIR``).
  """

  dataset: str = "mnist1d"
  hidden_sizes: Sequence[Sequence[int]] = ((20,),)
  activations: Sequence[str] = ("sigmoid",)
  batch_sizes: Sequence[int] = (128,)
  split: str = "train"
  data_dir: str | None = None

  def __post_init__(self):
    _common.check_family(self.dataset, self.split, self.activations,
                         self.batch_sizes)
    object.__setattr__(self, "hidden_sizes", _common.layer_sizes(
        self.hidden_sizes, "hidden_sizes", allow_empty=True))

  @property
  def name(self) -> str:
    return f"{self.dataset}_mlp"

  def sample_task(self, rng: np.random.Generator) -> MLPTask:
    """Draws widths, activation and batch size; the data is loaded once."""
    hidden_sizes, activation, batch_size = _common.draw_structure(
        rng, self.hidden_sizes, self.activations, self.batch_sizes)
    x, y = _common.device_split(self.dataset, self.split, self.data_dir)
    widths = "x".join(map(str, hidden_sizes)) or "linear"
    return MLPTask(
        x=x, y=y, hidden_sizes=hidden_sizes, activation=activation,
        batch_size=batch_size, num_classes=data.NUM_CLASSES,
        name=f"{self.name}_{widths}_{activation}_b{batch_size}")
