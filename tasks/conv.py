"""Small convolutional classifiers on image (or 1-D sequence) data."""

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from tasks import _common
from tasks import data

Params = dict[str, dict[str, jax.Array]]


def _with_channels(x: jax.Array) -> jax.Array:
  """Gives channel-less sequences ``(B, L)`` a channel axis ``(B, L, 1)``."""
  return x[..., None] if x.ndim == 2 else x


def _conv(h: jax.Array, w: jax.Array, strides: tuple[int, ...],
          dimension_numbers: tuple[str, str, str]) -> jax.Array:
  """SAME convolution of channels-last ``h`` with kernel ``w`` (spatial...,
  in, out), as image patches times a matrix.

  Equal to ``lax.conv_general_dilated`` up to float rounding; written this
  way because JAX 0.10 cannot batch the weight gradient of a convolution
  whose inputs and weights are batched by one ``vmap`` (the problems) and
  whose weights alone are batched by an outer one (ES perturbations) inside
  a meta-step over a device mesh (``NotImplementedError`` in its batching
  rule); the patches are a convolution with a constant kernel, and the
  product a plain matmul, which batch everywhere.
  """
  patches = jax.lax.conv_general_dilated_patches(
      h, w.shape[:-2], strides, "SAME", dimension_numbers=dimension_numbers)
  # The patches' features run over (in channel, spatial...), in that order.
  return patches @ jnp.moveaxis(w, -2, 0).reshape(-1, w.shape[-1])


@struct.dataclass
class ConvTask(_common.DatasetClassifier):
  """Softmax cross-entropy of a small convnet on one split of a data set.

  Each conv layer has a square ``kernel_size`` kernel, stride 2 and SAME
  padding, followed by the activation; the flattened features go through a
  dense head. Inputs ``(N, H, W, C)`` use 2-D convolutions, sequences
  ``(N, L)`` or ``(N, L, C)`` 1-D ones. Params are a plain dict
  ``{"conv_0": {"w", "b"}, ..., "head": {"w", "b"}}``; the problem is ``()``.

  Attributes:
    x: Inputs on the device (traced).
    y: Integer labels ``(N,)`` on the device (traced).
    channels: Output channels of each conv layer.
    kernel_size: Kernel extent along every spatial axis.
    activation: Name of the activation, a key of ``_common.ACTIVATIONS``.
    batch_size: Examples per minibatch of ``loss``.
    num_classes: Number of output logits.
    full_loss_examples: ``full_loss`` uses at most this many examples.
    name: A name that identifies the structure.
  """

  x: jax.Array
  y: jax.Array
  channels: tuple[int, ...] = struct.field(pytree_node=False, default=(8, 16))
  kernel_size: int = struct.field(pytree_node=False, default=3)
  activation: str = struct.field(pytree_node=False, default="relu")
  batch_size: int = struct.field(pytree_node=False, default=128)
  num_classes: int = struct.field(pytree_node=False, default=data.NUM_CLASSES)
  full_loss_examples: int = struct.field(pytree_node=False, default=10_000)
  name: str = struct.field(pytree_node=False, default="conv")

  def _spatial_shape(self) -> tuple[int, ...]:
    return _with_channels(self.x).shape[1:-1]

  def _dimension_numbers(self) -> tuple[str, str, str]:
    num_spatial = len(self._spatial_shape())
    if num_spatial not in (1, 2):
      raise ValueError(f"ConvTask needs 1-D or 2-D inputs, got x of shape"
                       f" {self.x.shape}.")
    spatial = "HW"[-num_spatial:]
    return ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")

  def init_params(self, key: jax.Array) -> Params:
    """Returns LeCun-normal kernels and weights with zero biases."""
    spatial = self._spatial_shape()
    channels = (_with_channels(self.x).shape[-1],) + tuple(self.channels)
    kernel = (self.kernel_size,) * len(spatial)
    shapes = [kernel + (c_in, c_out)
              for c_in, c_out in zip(channels[:-1], channels[1:])]
    for _ in self.channels:  # Each stride-2 SAME conv halves, rounding up.
      spatial = tuple(-(-s // 2) for s in spatial)
    shapes.append((channels[-1] * int(np.prod(spatial)), self.num_classes))
    names = [f"conv_{i}" for i in range(len(self.channels))] + ["head"]
    return _common.layers_init(key, names, shapes)

  def apply(self, params: Params, x: jax.Array) -> jax.Array:
    """Returns logits ``(B, num_classes)`` for a batch of inputs."""
    act = _common.activation(self.activation)
    h = _with_channels(x)
    strides = (2,) * (h.ndim - 2)
    for i in range(len(self.channels)):
      layer = params[f"conv_{i}"]
      h = _conv(h, layer["w"], strides, self._dimension_numbers())
      h = act(h + layer["b"].reshape((1,) * (h.ndim - 1) + (-1,)))
    return _common.dense(params["head"], h.reshape(h.shape[0], -1))


@dataclasses.dataclass(frozen=True)
class ConvFamily:
  """Samples convnet tasks on one data set; each structural option is a choice.

  Attributes:
    dataset: One of ``"mnist1d"`` (1-D conv over length 40), ``"digits"``,
      ``"mnist"``, ``"cifar10"``.
    channels: Candidate per-layer channel tuples, e.g. ``((8, 16),)``.
    activations: Candidate activation names.
    batch_sizes: Candidate minibatch sizes.
    split: ``"train"`` for training, ``"test"`` for held-out evaluation.
    data_dir: Directory for MNIST/CIFAR-10 files (else ``$L2L_DATA_DIR``).
  """

  dataset: str = "digits"
  channels: Sequence[Sequence[int]] = ((8, 16),)
  activations: Sequence[str] = ("relu",)
  batch_sizes: Sequence[int] = (128,)
  split: str = "train"
  data_dir: str | None = None

  def __post_init__(self):
    _common.check_family(self.dataset, self.split, self.activations,
                         self.batch_sizes)
    object.__setattr__(self, "channels",
                       _common.layer_sizes(self.channels, "channels"))

  @property
  def name(self) -> str:
    return f"{self.dataset}_conv"

  def sample_task(self, rng: np.random.Generator) -> ConvTask:
    """Draws channels, activation and batch size; the data is loaded once."""
    channels, activation, batch_size = _common.draw_structure(
        rng, self.channels, self.activations, self.batch_sizes)
    x, y = _common.device_split(self.dataset, self.split, self.data_dir)
    return ConvTask(
        x=x, y=y, channels=channels, activation=activation,
        batch_size=batch_size, num_classes=data.NUM_CLASSES,
        name=f"{self.name}_{'x'.join(map(str, channels))}_{activation}"
        f"_b{batch_size}")
