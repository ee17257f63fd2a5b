"""Held-out kinds of network that no design round or meta-training run saw.

The ``extended`` evaluation suite (``meta_train/suite.py``) judges learned
optimizers on these: a small attention model and a recurrent net reading
MNIST-1D as a sequence, and MLPs with layer or batch normalisation. Each is
a classifier on one split of a data set (``tasks._common.DatasetClassifier``:
minibatch cross-entropy in ``loss``, the split's first examples in
``full_loss``); the problem is ``()``.
"""

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from tasks import _common
from tasks import data

SEQUENCE_MODELS = ("attention", "gru")
NORMS = ("layer", "batch")
_EPS = 1e-5


def tokens(x: jax.Array, patch: int) -> jax.Array:
  """``(B, L)`` (or ``(B, L, 1)``) signals as ``(B, L // patch, patch)``."""
  flat = x.reshape(x.shape[0], -1)
  length = flat.shape[1] - flat.shape[1] % patch
  return flat[:, :length].reshape(x.shape[0], length // patch, patch)


def layer_norm(params: dict[str, jax.Array], h: jax.Array) -> jax.Array:
  """Normalises the last axis to zero mean and unit variance, then
  ``scale * h + offset`` (Ba et al., 2016)."""
  mean = jnp.mean(h, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
  shape = (1,) * (h.ndim - 1) + (-1,)
  return ((h - mean) * jax.lax.rsqrt(var + _EPS)
          * params["scale"].reshape(shape) + params["offset"].reshape(shape))


def batch_norm(params: dict[str, jax.Array], h_BxD: jax.Array) -> jax.Array:
  """Normalises each feature over the batch (its own statistics, as in
  training mode; Ioffe & Szegedy, 2015), then ``scale * h + offset``."""
  mean = jnp.mean(h_BxD, axis=0, keepdims=True)
  var = jnp.mean(jnp.square(h_BxD - mean), axis=0, keepdims=True)
  return ((h_BxD - mean) * jax.lax.rsqrt(var + _EPS) * params["scale"][None]
          + params["offset"][None])


def _norm_params(width: int) -> dict[str, jax.Array]:
  return {"scale": jnp.ones((width,), jnp.float32),
          "offset": jnp.zeros((width,), jnp.float32)}


def _attention(params, h_BxTxD: jax.Array, num_heads: int) -> jax.Array:
  """Multi-head self-attention (Vaswani et al., 2017), no mask."""
  batch, length, width = h_BxTxD.shape
  qkv = _common.dense(params["qkv"], h_BxTxD.reshape(-1, width))
  q, k, v = jnp.split(qkv.reshape(batch, length, 3, num_heads, -1), 3, axis=2)
  q, k, v = (a[:, :, 0] for a in (q, k, v))  # (B, T, H, D/H)
  logits = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
  mixed = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(logits, axis=-1), v)
  return _common.dense(params["out"], mixed.reshape(-1, width)).reshape(
      batch, length, width)


def _gru(params, x_BxTxP: jax.Array) -> jax.Array:
  """The last hidden state of a GRU (Cho et al., 2014) over the tokens."""
  width = params["hidden"]["w"].shape[0]
  inputs = _common.dense(params["input"], x_BxTxP.reshape(
      -1, x_BxTxP.shape[-1])).reshape(*x_BxTxP.shape[:2], 3 * width)

  def step(h, x):
    recurrent = _common.dense(params["hidden"], h)
    update, reset, candidate = jnp.split(x, 3, axis=-1)
    r_update, r_reset, r_candidate = jnp.split(recurrent, 3, axis=-1)
    z = jax.nn.sigmoid(update + r_update)
    r = jax.nn.sigmoid(reset + r_reset)
    n = jnp.tanh(candidate + r * r_candidate)
    return (1 - z) * n + z * h, None

  h0 = jnp.zeros((x_BxTxP.shape[0], width), x_BxTxP.dtype)
  return jax.lax.scan(step, h0, jnp.swapaxes(inputs, 0, 1))[0]


@struct.dataclass
class SequenceTask(_common.DatasetClassifier):
  """Softmax cross-entropy of a sequence model reading a signal in patches.

  ``"attention"``: patches embedded to ``width`` plus learned positions, one
  pre-norm transformer block (self-attention with ``num_heads`` heads, then
  a GELU MLP of ``2 * width``, each with a residual), layer norm, mean over
  positions, linear head. ``"gru"``: a GRU of ``width`` units over the
  patches, linear head on its last state.

  Attributes:
    x: Inputs ``(N, L)`` or ``(N, L, 1)`` on the device (traced).
    y: Integer labels ``(N,)`` (traced).
    model: One of ``SEQUENCE_MODELS``.
    width: Model width (units).
    patch: Samples per token.
    num_heads: Attention heads (``"attention"`` only); divides ``width``.
    batch_size: Examples per minibatch of ``loss``.
    num_classes: Number of output logits.
    full_loss_examples: ``full_loss`` uses at most this many examples.
    name: A name that identifies the structure.
  """

  x: jax.Array
  y: jax.Array
  model: str = struct.field(pytree_node=False, default="attention")
  width: int = struct.field(pytree_node=False, default=16)
  patch: int = struct.field(pytree_node=False, default=4)
  num_heads: int = struct.field(pytree_node=False, default=2)
  batch_size: int = struct.field(pytree_node=False, default=64)
  num_classes: int = struct.field(pytree_node=False, default=data.NUM_CLASSES)
  full_loss_examples: int = struct.field(pytree_node=False, default=10_000)
  name: str = struct.field(pytree_node=False, default="sequence")

  @property
  def length(self) -> int:
    return int(np.prod(self.x.shape[1:])) // self.patch

  def init_params(self, key: jax.Array):
    """LeCun-normal weights, zero biases, unit norm scales."""
    w, p = self.width, self.patch
    if self.model == "gru":
      return _common.layers_init(key, ["input", "hidden", "head"],
                                 [(p, 3 * w), (w, 3 * w), (w, self.num_classes)])
    key_layers, key_positions = jax.random.split(key)
    params = _common.layers_init(
        key_layers, ["embed", "qkv", "out", "mlp_in", "mlp_out", "head"],
        [(p, w), (w, 3 * w), (w, w), (w, 2 * w), (2 * w, w),
         (w, self.num_classes)])
    params["positions"] = {"w": 0.02 * jax.random.normal(
        key_positions, (self.length, w), jnp.float32)}
    for name in ("norm_attention", "norm_mlp", "norm_out"):
      params[name] = _norm_params(w)
    return params

  def apply(self, params, x: jax.Array) -> jax.Array:
    """Returns logits ``(B, num_classes)`` for inputs ``(B, L[, 1])``."""
    x_BxTxP = tokens(x, self.patch)
    if self.model == "gru":
      return _common.dense(params["head"], _gru(params, x_BxTxP))
    batch, length, _ = x_BxTxP.shape
    h = _common.dense(params["embed"], x_BxTxP.reshape(batch * length, -1))
    h = (h.reshape(batch, length, self.width)
         + params["positions"]["w"][None])
    h = h + _attention(params, layer_norm(params["norm_attention"], h),
                       self.num_heads)
    hidden = jax.nn.gelu(_common.dense(params["mlp_in"], layer_norm(
        params["norm_mlp"], h).reshape(batch * length, -1)))
    h = h + _common.dense(params["mlp_out"], hidden).reshape(h.shape)
    pooled = jnp.mean(layer_norm(params["norm_out"], h), axis=1)
    return _common.dense(params["head"], pooled)


@struct.dataclass
class NormalisedMLPTask(_common.DatasetClassifier):
  """Softmax cross-entropy of an MLP with a normalisation after every
  hidden dense layer (``"layer"`` or ``"batch"``, with batch statistics in
  both ``loss`` and ``full_loss``), then the activation.

  Attributes:
    x, y, hidden_sizes, activation, batch_size, num_classes,
    full_loss_examples, name: as in :class:`tasks.MLPTask`.
    norm: One of ``NORMS``.
  """

  x: jax.Array
  y: jax.Array
  hidden_sizes: tuple[int, ...] = struct.field(pytree_node=False, default=(32,))
  activation: str = struct.field(pytree_node=False, default="relu")
  norm: str = struct.field(pytree_node=False, default="layer")
  batch_size: int = struct.field(pytree_node=False, default=64)
  num_classes: int = struct.field(pytree_node=False, default=data.NUM_CLASSES)
  full_loss_examples: int = struct.field(pytree_node=False, default=10_000)
  name: str = struct.field(pytree_node=False, default="normalised_mlp")

  def init_params(self, key: jax.Array):
    widths = ((int(np.prod(self.x.shape[1:])),) + tuple(self.hidden_sizes)
              + (self.num_classes,))
    names = [f"dense_{i}" for i in range(len(self.hidden_sizes))] + ["head"]
    params = _common.layers_init(key, names, list(zip(widths[:-1], widths[1:])))
    for i, width in enumerate(self.hidden_sizes):
      params[f"norm_{i}"] = _norm_params(width)
    return params

  def apply(self, params, x: jax.Array) -> jax.Array:
    act = _common.activation(self.activation)
    normalise = layer_norm if self.norm == "layer" else batch_norm
    h = x.reshape(x.shape[0], -1)
    for i in range(len(self.hidden_sizes)):
      h = act(normalise(params[f"norm_{i}"],
                        _common.dense(params[f"dense_{i}"], h)))
    return _common.dense(params["head"], h)


def _check_choice(value: str, valid: Sequence[str], what: str) -> None:
  if value not in valid:
    raise ValueError(f"Unknown {what} {value!r}; valid: {tuple(valid)}.")


@dataclasses.dataclass(frozen=True)
class SequenceFamily:
  """Sequence models (:class:`SequenceTask`) on one data set split.

  Attributes:
    dataset: One of ``tasks.DATASETS`` (MNIST-1D's 40 samples make 10 tokens
      of 4).
    model: One of ``SEQUENCE_MODELS``.
    widths: Candidate widths.
    batch_sizes: Candidate minibatch sizes.
    split: ``"train"`` or ``"test"``.
    patch: Samples per token.
    num_heads: Attention heads.
    data_dir: Directory for MNIST/CIFAR-10 files.
  """

  dataset: str = "mnist1d"
  model: str = "attention"
  widths: Sequence[int] = (16,)
  batch_sizes: Sequence[int] = (64,)
  split: str = "train"
  patch: int = 4
  num_heads: int = 2
  data_dir: str | None = None

  def __post_init__(self):
    _common.check_family(self.dataset, self.split, ("relu",), self.batch_sizes)
    _check_choice(self.model, SEQUENCE_MODELS, "sequence model")
    if (not self.widths or min(self.widths) < 1 or self.patch < 1
        or any(w % self.num_heads for w in self.widths)):
      raise ValueError(f"widths must be positive multiples of num_heads "
                       f"({self.num_heads}) and patch positive, got "
                       f"{self.widths} and {self.patch}.")

  @property
  def name(self) -> str:
    return f"{self.dataset}_{self.model}"

  def sample_task(self, rng: np.random.Generator) -> SequenceTask:
    width = int(_common.choose(rng, tuple(self.widths)))
    batch_size = int(_common.choose(rng, tuple(self.batch_sizes)))
    x, y = _common.device_split(self.dataset, self.split, self.data_dir)
    return SequenceTask(
        x=x, y=y, model=self.model, width=width, patch=self.patch,
        num_heads=self.num_heads, batch_size=batch_size,
        name=f"{self.name}_{width}_p{self.patch}_b{batch_size}")


@dataclasses.dataclass(frozen=True)
class NormalisedMLPFamily:
  """MLPs with layer or batch normalisation (:class:`NormalisedMLPTask`).

  Attributes:
    dataset, hidden_sizes, activations, batch_sizes, split, data_dir: as in
      :class:`tasks.MLPFamily`.
    norm: One of ``NORMS``.
  """

  dataset: str = "digits"
  hidden_sizes: Sequence[Sequence[int]] = ((32, 32),)
  activations: Sequence[str] = ("relu",)
  batch_sizes: Sequence[int] = (64,)
  norm: str = "layer"
  split: str = "train"
  data_dir: str | None = None

  def __post_init__(self):
    _common.check_family(self.dataset, self.split, self.activations,
                         self.batch_sizes)
    _check_choice(self.norm, NORMS, "norm")
    object.__setattr__(self, "hidden_sizes", _common.layer_sizes(
        self.hidden_sizes, "hidden_sizes"))

  @property
  def name(self) -> str:
    return f"{self.dataset}_mlp_{self.norm}norm"

  def sample_task(self, rng: np.random.Generator) -> NormalisedMLPTask:
    hidden_sizes, activation, batch_size = _common.draw_structure(
        rng, self.hidden_sizes, self.activations, self.batch_sizes)
    x, y = _common.device_split(self.dataset, self.split, self.data_dir)
    widths = "x".join(map(str, hidden_sizes))
    return NormalisedMLPTask(
        x=x, y=y, hidden_sizes=hidden_sizes, activation=activation,
        norm=self.norm, batch_size=batch_size,
        name=f"{self.name}_{widths}_{activation}_b{batch_size}")
