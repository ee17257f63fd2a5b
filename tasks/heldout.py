"""Held-out task families: problems a learned optimizer is judged on only.

None of these is drawn during meta-training; they stand for problems a user
would bring: an autoencoder (a regression output, not a softmax), synthetic
least squares, a linear softmax classifier, the Rosenbrock valley and a
quadratic with condition number 1e6. Data-backed families take a ``split``
(evaluation uses ``"test"``); analytic ones have exact losses, so ``loss``
equals ``full_loss`` and ignores its key.
"""

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from tasks import _common
from tasks import data
from tasks.mlp import MLPTask

Params = dict[str, dict[str, jax.Array]]


@struct.dataclass
class AutoencoderTask:
  """Mean squared reconstruction error of an MLP autoencoder.

  Inputs of any shape are flattened to ``D`` features; the network maps
  ``D → hidden_sizes[0] → ... → hidden_sizes[-1] → D`` with the activation
  after every hidden layer and a linear output (the data are standardised).
  The loss is the mean over examples and features of ``(x̂ − x)²``. Params
  are ``{"dense_0": {"w", "b"}, ..., "head": {"w", "b"}}``; the problem is
  ``()``.

  Attributes:
    x: Inputs ``(N, ...)`` on the device (traced).
    hidden_sizes: Width of each hidden layer, e.g. ``(16,)`` or
      ``(32, 8, 32)``.
    activation: Name of the hidden activation, a key of
      ``_common.ACTIVATIONS``.
    batch_size: Examples per minibatch of ``loss``.
    full_loss_examples: ``full_loss`` uses at most this many examples.
    name: A name that identifies the structure.

  Example:
    >>> task = AutoencoderFamily().sample_task(np.random.default_rng(0))
    >>> params = task.init_params(jax.random.key(0))
    >>> task.loss(params, (), jax.random.key(1)).shape
    ()
  """

  x: jax.Array
  hidden_sizes: tuple[int, ...] = struct.field(pytree_node=False, default=(16,))
  activation: str = struct.field(pytree_node=False, default="tanh")
  batch_size: int = struct.field(pytree_node=False, default=128)
  full_loss_examples: int = struct.field(pytree_node=False, default=10_000)
  name: str = struct.field(pytree_node=False, default="autoencoder")

  def init_params(self, key: jax.Array) -> Params:
    """Returns LeCun-normal weights and zero biases for every layer."""
    features = int(np.prod(self.x.shape[1:]))
    widths = (features,) + tuple(self.hidden_sizes) + (features,)
    names = [f"dense_{i}" for i in range(len(self.hidden_sizes))] + ["head"]
    return _common.layers_init(key, names, list(zip(widths[:-1], widths[1:])))

  def sample_problem(self, key: jax.Array) -> tuple[()]:
    """Returns ``()``: the data set is the problem."""
    del key
    return ()

  def apply(self, params: Params, x: jax.Array) -> jax.Array:
    """Returns reconstructions ``(B, D)`` of inputs ``(B, ...)``."""
    act = _common.activation(self.activation)
    h = x.reshape(x.shape[0], -1)
    for i in range(len(self.hidden_sizes)):
      h = act(_common.dense(params[f"dense_{i}"], h))
    return _common.dense(params["head"], h)

  def _reconstruction_error(self, params: Params, x: jax.Array) -> jax.Array:
    x_BxD = x.reshape(x.shape[0], -1)
    return jnp.mean(jnp.square(self.apply(params, x) - x_BxD))

  def loss(self, params: Params, problem: tuple[()],
           key: jax.Array) -> jax.Array:
    """Returns the mean squared error on a minibatch drawn with ``key``."""
    del problem
    index = jax.random.randint(key, (self.batch_size,), 0, self.x.shape[0])
    return self._reconstruction_error(params, self.x[index])

  def full_loss(self, params: Params, problem: tuple[()]) -> jax.Array:
    """Returns the mean squared error on the split's first examples."""
    del problem
    return self._reconstruction_error(
        params, self.x[:self.full_loss_examples])


@dataclasses.dataclass(frozen=True)
class AutoencoderFamily:
  """Samples autoencoder tasks on one data set (MNIST-1D by default).

  Attributes:
    dataset: One of ``"mnist1d"`` (40 features), ``"digits"`` (64),
      ``"mnist"``, ``"cifar10"``.
    hidden_sizes: Candidate hidden-layer width tuples, e.g. ``((16,),)``.
    activations: Candidate activation names.
    batch_sizes: Candidate minibatch sizes.
    split: ``"train"`` or ``"test"`` (held-out evaluation).
    data_dir: Directory for MNIST/CIFAR-10 files (else ``$L2L_DATA_DIR``).
  """

  dataset: str = "mnist1d"
  hidden_sizes: Sequence[Sequence[int]] = ((16,),)
  activations: Sequence[str] = ("tanh",)
  batch_sizes: Sequence[int] = (128,)
  split: str = "train"
  data_dir: str | None = None

  def __post_init__(self):
    _common.check_family(self.dataset, self.split, self.activations,
                         self.batch_sizes)
    object.__setattr__(self, "hidden_sizes",
                       _common.layer_sizes(self.hidden_sizes, "hidden_sizes"))

  @property
  def name(self) -> str:
    return f"{self.dataset}_autoencoder"

  def sample_task(self, rng: np.random.Generator) -> AutoencoderTask:
    """Draws widths, activation and batch size; the data is loaded once."""
    hidden_sizes, activation, batch_size = _common.draw_structure(
        rng, self.hidden_sizes, self.activations, self.batch_sizes)
    x, _ = _common.device_split(self.dataset, self.split, self.data_dir)
    return AutoencoderTask(
        x=x, hidden_sizes=hidden_sizes, activation=activation,
        batch_size=batch_size,
        name=f"{self.name}_{'x'.join(map(str, hidden_sizes))}_{activation}"
        f"_b{batch_size}")


class LinearRegressionProblem(NamedTuple):
  """One least-squares instance: targets are ``y = X w* + noise``.

  Attributes:
    x: ``(num_examples, dim)`` design matrix, i.i.d. N(0, 1).
    w_star: ``(dim,)`` true weights, i.i.d. N(0, 1).
    noise: ``(num_examples,)`` target noise, i.i.d. N(0, noise_std²).
  """

  x: jax.Array
  w_star: jax.Array
  noise: jax.Array

  @property
  def y(self) -> jax.Array:
    return self.x @ self.w_star + self.noise


@struct.dataclass
class LinearRegressionTask:
  """Mean squared error ``mean_i (x_iᵀ w − y_i)²`` of a linear model.

  Each problem draws its own design matrix, true weights and noise; params
  are the weights ``w`` of shape ``(dim,)``, started at zero (the least
  squares convention). ``loss`` averages over a minibatch of rows drawn with
  replacement, ``full_loss`` over all rows; the minimum of ``full_loss`` is
  about ``noise_std² (1 − dim / num_examples)``.

  Example:
    >>> task = LinearRegressionTask()
    >>> problem = task.sample_problem(jax.random.key(0))
    >>> task.full_loss(task.init_params(jax.random.key(1)), problem).shape
    ()
  """

  num_examples: int = struct.field(pytree_node=False, default=200)
  dim: int = struct.field(pytree_node=False, default=20)
  noise_std: float = struct.field(pytree_node=False, default=0.1)
  batch_size: int = struct.field(pytree_node=False, default=32)
  name: str = struct.field(pytree_node=False, default="linear_regression")

  def init_params(self, key: jax.Array) -> jax.Array:
    """Returns ``w = 0`` of shape ``(dim,)``; ``key`` is unused."""
    del key
    return jnp.zeros((self.dim,), jnp.float32)

  def sample_problem(self, key: jax.Array) -> LinearRegressionProblem:
    """Returns fresh ``(X, w*, noise)``."""
    x, w_star, noise = _common.normal_arrays(
        key, [(self.num_examples, self.dim), (self.dim,),
              (self.num_examples,)])
    return LinearRegressionProblem(x=x, w_star=w_star,
                                   noise=self.noise_std * noise)

  def loss(self, params: jax.Array, problem: LinearRegressionProblem,
           key: jax.Array) -> jax.Array:
    """Returns the mean squared error on ``batch_size`` random rows."""
    index = jax.random.randint(key, (self.batch_size,), 0, self.num_examples)
    return jnp.mean(jnp.square(problem.x[index] @ params - problem.y[index]))

  def full_loss(self, params: jax.Array,
                problem: LinearRegressionProblem) -> jax.Array:
    """Returns the mean squared error on all rows."""
    return jnp.mean(jnp.square(problem.x @ params - problem.y))


@dataclasses.dataclass(frozen=True)
class LinearRegressionFamily:
  """Always returns :class:`LinearRegressionTask` of the given sizes.

  The randomness lives in ``sample_problem``; structure is fixed.

  Attributes:
    num_examples: Rows of the design matrix.
    dim: Number of features (and weights).
    noise_std: Standard deviation of the target noise.
    batch_size: Rows per minibatch of ``loss``.
  """

  num_examples: int = 200
  dim: int = 20
  noise_std: float = 0.1
  batch_size: int = 32

  def __post_init__(self):
    if min(int(self.num_examples), int(self.dim), int(self.batch_size)) < 1:
      raise ValueError(f"num_examples, dim and batch_size must be positive,"
                       f" got {self.num_examples}, {self.dim},"
                       f" {self.batch_size}.")
    if not float(self.noise_std) >= 0:
      raise ValueError(f"noise_std must be >= 0, got {self.noise_std}.")

  @property
  def name(self) -> str:
    return "linear_regression"

  def sample_task(self, rng: np.random.Generator) -> LinearRegressionTask:
    """Returns the least-squares task; ``rng`` is unused."""
    del rng
    return LinearRegressionTask(
        num_examples=int(self.num_examples), dim=int(self.dim),
        noise_std=float(self.noise_std), batch_size=int(self.batch_size))


@dataclasses.dataclass(frozen=True)
class LogisticRegressionFamily:
  """A linear softmax classifier (no hidden layer) on one data set.

  Tasks are :class:`tasks.MLPTask` with no hidden layer: params are
  ``{"head": {"w", "b"}}`` and the loss is the mean cross-entropy.

  Attributes:
    dataset: One of ``"digits"`` (default), ``"mnist1d"``, ``"mnist"``,
      ``"cifar10"``.
    batch_sizes: Candidate minibatch sizes.
    split: ``"train"`` or ``"test"`` (held-out evaluation).
    data_dir: Directory for MNIST/CIFAR-10 files (else ``$L2L_DATA_DIR``).
  """

  dataset: str = "digits"
  batch_sizes: Sequence[int] = (128,)
  split: str = "train"
  data_dir: str | None = None

  def __post_init__(self):
    # No hidden layer, so no activation to choose; pass a valid placeholder.
    _common.check_family(self.dataset, self.split, ("sigmoid",),
                         self.batch_sizes)

  @property
  def name(self) -> str:
    return f"{self.dataset}_logistic_regression"

  def sample_task(self, rng: np.random.Generator) -> MLPTask:
    """Draws the batch size; the data is loaded once."""
    batch_size = int(_common.choose(rng, tuple(self.batch_sizes)))
    x, y = _common.device_split(self.dataset, self.split, self.data_dir)
    return MLPTask(x=x, y=y, hidden_sizes=(), batch_size=batch_size,
                   num_classes=data.NUM_CLASSES,
                   name=f"{self.name}_b{batch_size}")


@struct.dataclass
class RosenbrockTask(_common.ExactLoss):
  """The 2-d Rosenbrock function ``(a − x)² + b (y − x²)²``.

  A curved, badly conditioned valley with its minimum 0 at ``(a, a²)``.
  Params are a ``(2,)`` array started at ``(-1.5, 2)`` plus
  ``init_noise · N(0, I)``; the problem is ``()``.

  References:
    Rosenbrock, "An automatic method for finding the greatest or least value
    of a function", The Computer Journal, 1960.
  """

  a: float = struct.field(pytree_node=False, default=1.0)
  b: float = struct.field(pytree_node=False, default=100.0)
  init_noise: float = struct.field(pytree_node=False, default=0.1)
  name: str = struct.field(pytree_node=False, default="rosenbrock")

  def init_params(self, key: jax.Array) -> jax.Array:
    """Returns ``(-1.5, 2) + init_noise · N(0, I)``."""
    start = jnp.asarray([-1.5, 2.0], jnp.float32)
    return start + self.init_noise * jax.random.normal(key, (2,), jnp.float32)

  def sample_problem(self, key: jax.Array) -> tuple[()]:
    """Returns ``()``: there is a single function."""
    del key
    return ()

  def full_loss(self, params: jax.Array, problem: tuple[()]) -> jax.Array:
    """Returns ``(a − x)² + b (y − x²)²``."""
    del problem
    x, y = params[0], params[1]
    return jnp.square(self.a - x) + self.b * jnp.square(y - jnp.square(x))


@dataclasses.dataclass(frozen=True)
class RosenbrockFamily:
  """Always returns :class:`RosenbrockTask`.

  Attributes:
    init_noise: Standard deviation of the noise added to the start.
  """

  init_noise: float = 0.1

  @property
  def name(self) -> str:
    return "rosenbrock"

  def sample_task(self, rng: np.random.Generator) -> RosenbrockTask:
    """Returns the Rosenbrock task; ``rng`` is unused."""
    del rng
    return RosenbrockTask(init_noise=float(self.init_noise))


class IllConditionedQuadraticProblem(NamedTuple):
  """One rotation ``Q`` of the eigenbasis, Haar-distributed.

  Attributes:
    rotation: ``(dim, dim)`` orthogonal matrix.
  """

  rotation: jax.Array


@struct.dataclass
class IllConditionedQuadraticTask(_common.ExactLoss):
  """``f(θ) = ½ Σᵢ λᵢ (Qθ)ᵢ²`` with ``λ`` log-spaced over a wide range.

  ``λ`` runs from ``min_eigenvalue`` to ``max_eigenvalue`` (condition number
  1e6 by default); each problem draws a random rotation ``Q`` so that the
  axes of curvature are not the coordinate axes. Params start at
  ``θ ~ N(0, I)``; the minimum is 0 at ``θ = 0``.
  """

  dim: int = struct.field(pytree_node=False, default=20)
  min_eigenvalue: float = struct.field(pytree_node=False, default=1e-3)
  max_eigenvalue: float = struct.field(pytree_node=False, default=1e3)
  name: str = struct.field(pytree_node=False,
                           default="ill_conditioned_quadratic")

  @property
  def eigenvalues(self) -> np.ndarray:
    return np.geomspace(self.min_eigenvalue, self.max_eigenvalue,
                        self.dim).astype(np.float32)

  def init_params(self, key: jax.Array) -> jax.Array:
    """Returns ``θ ~ N(0, I)`` of shape ``(dim,)``."""
    return jax.random.normal(key, (self.dim,), jnp.float32)

  def sample_problem(self, key: jax.Array) -> IllConditionedQuadraticProblem:
    """Returns a Haar-random rotation (QR of a Gaussian, signs fixed)."""
    gaussian = jax.random.normal(key, (self.dim, self.dim), jnp.float32)
    q, r = jnp.linalg.qr(gaussian)
    signs = jnp.sign(jnp.diag(r))  # Makes the factorisation unique.
    return IllConditionedQuadraticProblem(rotation=q * signs[None, :])

  def full_loss(self, params: jax.Array,
                problem: IllConditionedQuadraticProblem) -> jax.Array:
    """Returns ``½ Σᵢ λᵢ (Qθ)ᵢ²``."""
    rotated = problem.rotation @ params
    return 0.5 * jnp.sum(jnp.asarray(self.eigenvalues) * jnp.square(rotated))


@dataclasses.dataclass(frozen=True)
class IllConditionedQuadraticFamily:
  """Always returns :class:`IllConditionedQuadraticTask`.

  Attributes:
    dim: Dimension of ``θ``.
    min_eigenvalue: Smallest curvature.
    max_eigenvalue: Largest curvature.
  """

  dim: int = 20
  min_eigenvalue: float = 1e-3
  max_eigenvalue: float = 1e3

  def __post_init__(self):
    if int(self.dim) < 1:
      raise ValueError(f"dim must be positive, got {self.dim}.")
    if not 0 < float(self.min_eigenvalue) <= float(self.max_eigenvalue):
      raise ValueError(f"need 0 < min_eigenvalue <= max_eigenvalue, got"
                       f" {self.min_eigenvalue}, {self.max_eigenvalue}.")

  @property
  def name(self) -> str:
    return "ill_conditioned_quadratic"

  def sample_task(self, rng: np.random.Generator
                 ) -> IllConditionedQuadraticTask:
    """Returns the quadratic task; ``rng`` is unused."""
    del rng
    return IllConditionedQuadraticTask(
        dim=int(self.dim), min_eigenvalue=float(self.min_eigenvalue),
        max_eigenvalue=float(self.max_eigenvalue))
