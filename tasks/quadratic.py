"""Analytic tasks: random quadratics and the scalar x².

These have no data set; their loss is exact, so ``loss`` and ``full_loss``
agree and the minibatch key is ignored.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from tasks import _common


class QuadraticProblem(NamedTuple):
  """One random quadratic ``f(θ) = ‖Wθ − y‖²``.

  Attributes:
    w: ``(dim, dim)`` matrix ``W`` with i.i.d. N(0, 1) entries.
    y: ``(dim,)`` target ``y`` with i.i.d. N(0, 1) entries.
  """

  w: jax.Array
  y: jax.Array


@struct.dataclass
class QuadraticTask(_common.ExactLoss):
  """The quadratic of Andrychowicz et al. (2016), ``f(θ) = ‖Wθ − y‖²``.

  Each problem draws ``W`` and ``y`` with i.i.d. N(0, 1) entries; parameters
  start at ``θ ~ N(0, I)`` (the paper does not fix the initialisation, so we
  pick the standard normal).

  Example:
    >>> task = QuadraticTask(dim=10)
    >>> problem = task.sample_problem(jax.random.key(0))
    >>> params = task.init_params(jax.random.key(1))
    >>> task.full_loss(params, problem).shape
    ()

  References:
    Andrychowicz et al., "Learning to learn by gradient descent by gradient
    descent", NeurIPS 2016.
  """

  dim: int = struct.field(pytree_node=False, default=10)
  residual_scales: tuple[float, float] = struct.field(pytree_node=False,
                                                      default=(1.0, 1.0))
  name: str = struct.field(pytree_node=False, default="quadratic")

  def init_params(self, key: jax.Array) -> jax.Array:
    """Returns ``θ ~ N(0, I)`` of shape ``(dim,)``."""
    return jax.random.normal(key, (self.dim,), jnp.float32)

  def sample_problem(self, key: jax.Array) -> QuadraticProblem:
    """Returns a fresh ``(W, y)`` with standard normal entries, their rows
    weighted by :meth:`sample_residual_scales`."""
    w, y = _common.normal_arrays(key, [(self.dim, self.dim), (self.dim,)])
    if self.residual_scales == (1.0, 1.0):
      return QuadraticProblem(w=w, y=y)
    scales = self.sample_residual_scales(jax.random.fold_in(key, 1))
    return QuadraticProblem(w=w * scales[:, None], y=y * scales)

  def sample_residual_scales(self, key: jax.Array) -> jax.Array:
    """``(dim,)`` weights of the residual's entries, log-uniform over
    ``residual_scales``: ``f(θ) = ‖s ⊙ (Wθ − y)‖²`` has Hessian
    ``2 Wᵀ diag(s²) W``, ill-conditioned along directions that are not the
    coordinate axes."""
    low, high = np.log(self.residual_scales)
    return jnp.exp(jax.random.uniform(key, (self.dim,), jnp.float32,
                                      low, high))

  def full_loss(self, params: jax.Array,
                problem: QuadraticProblem) -> jax.Array:
    """Returns ``‖Wθ − y‖²``."""
    residual = problem.w @ params - problem.y
    return jnp.sum(jnp.square(residual))


@dataclasses.dataclass(frozen=True)
class QuadraticFamily:
  """Always returns :class:`QuadraticTask` of dimension ``dim``.

  The randomness of this family lives in ``sample_problem``; structure is
  fixed.

  Attributes:
    dim: Dimension of ``θ``.
    residual_scales: ``(low, high)`` range of the log-uniform weights of the
      residual's entries (:meth:`QuadraticTask.sample_residual_scales`);
      ``(1, 1)``, the default, is the paper's quadratic.
  """

  dim: int = 10
  residual_scales: tuple[float, float] = (1.0, 1.0)

  def __post_init__(self):
    if int(self.dim) < 1:
      raise ValueError(f"dim must be positive, got {self.dim}.")
    low, high = self.residual_scales
    if not 0 < float(low) <= float(high):
      raise ValueError("residual_scales must be (low, high) with 0 < low <="
                       f" high, got {self.residual_scales}.")

  @property
  def name(self) -> str:
    return ("quadratic" if tuple(self.residual_scales) == (1.0, 1.0)
            else "quadratic_weighted")

  def sample_task(self, rng: np.random.Generator) -> QuadraticTask:
    """Returns the quadratic task; ``rng`` is unused."""
    del rng
    scales = tuple(float(x) for x in self.residual_scales)
    return QuadraticTask(dim=int(self.dim), residual_scales=scales,
                         name=self.name)


@struct.dataclass
class XSquaredTask(_common.ExactLoss):
  """The scalar ``f(x) = x²`` started at ``x₀ = 1``; a convergence smoke test.

  Params are a float32 scalar array; the problem is ``()``.
  """

  name: str = struct.field(pytree_node=False, default="x_squared")

  def init_params(self, key: jax.Array) -> jax.Array:
    """Returns ``1.0``; ``key`` is unused so every run starts alike."""
    del key
    return jnp.asarray(1.0, jnp.float32)

  def sample_problem(self, key: jax.Array) -> tuple[()]:
    """Returns ``()``: there is a single problem."""
    del key
    return ()

  def full_loss(self, params: jax.Array, problem: tuple[()]) -> jax.Array:
    """Returns ``x²``."""
    del problem
    return jnp.square(params)


@dataclasses.dataclass(frozen=True)
class XSquaredFamily:
  """Always returns :class:`XSquaredTask`."""

  @property
  def name(self) -> str:
    return "x_squared"

  def sample_task(self, rng: np.random.Generator) -> XSquaredTask:
    """Returns the x² task; ``rng`` is unused."""
    del rng
    return XSquaredTask()
