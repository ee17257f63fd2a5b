"""Task augmentation: random per-tensor reparameterisation and loss scaling.

A learned optimizer meta-trained on a few families sees a narrow range of
parameter and gradient scales, and learns to rely on them. Augmentation
draws, for each task, a scale :math:`s_k` per parameter tensor and a loss
scale :math:`c`, and trains the optimizer on

.. math::
  \\tilde f(\\phi) = c\\, f(s \\odot \\phi), \\qquad
  \\nabla_\\phi \\tilde f = c\\, s \\odot \\nabla_\\theta f(s \\odot \\phi),

whose minimiser :math:`\\phi^* = \\theta^* / s` maps back to the original's
by :math:`\\theta = s \\odot \\phi` (``AugmentedTask.original_params``), and
whose start :math:`\\phi_0 = \\theta_0 / s` is the original's start. An
optimizer that is invariant to these changes (plain gradient descent is
not; Adam is to :math:`c`, not to :math:`s`) gains nothing from them; one
that is not learns to adapt. RNNprop (Lv et al. 2017) rescales the
objective at random during meta-training; learned_optimization's
``ReparamWeights`` tasks and Celo (Moudgil et al. 2025) draw per-tensor
parameter scales log-uniformly.

Example:
  >>> family = AugmentedFamily(tasks.get_family('quadratic'))
  >>> task = family.sample_task(np.random.default_rng(0))
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from l2l._fit import traceable_task
from tasks import _common
from tasks.base import Task, TaskFamily
from tasks.mixture import MixtureFamily

#: Default ranges (low, high) of the log-uniform parameter and loss scales.
PARAM_SCALE_RANGE = (0.1, 10.0)
LOSS_SCALE_RANGE = (0.01, 100.0)


@struct.dataclass
class AugmentedTask:
  """``task`` seen through per-tensor parameter scales and a loss scale.

  Attributes:
    task: the original task (a pytree, or a constant wrapped by
      ``l2l._fit.traceable_task``).
    param_scales: a tree like the task's params of float32 scalars
      :math:`s_k`, one per tensor (traced: tasks that differ only in their
      scales share a compiled program).
    loss_scale: float32 scalar :math:`c`.
  """
  task: Task
  param_scales: jax.Array
  loss_scale: jax.Array

  @property
  def name(self) -> str:
    return f'augmented_{self.task.name}'

  def _scaled(self, params):
    return jax.tree.map(lambda s, p: (s * p).astype(p.dtype),
                        self.param_scales, params)

  def original_params(self, params):
    """:math:`\\theta = s \\odot \\phi`: augmented params in the original
    task's coordinates, in their dtypes."""
    return self._scaled(params)

  def init_params(self, key: jax.Array):
    """:math:`\\phi_0 = \\theta_0 / s`, so that the original start is kept."""
    return jax.tree.map(lambda s, p: (p / s).astype(p.dtype),
                        self.param_scales, self.task.init_params(key))

  def sample_problem(self, key: jax.Array):
    """The original task's problem."""
    return self.task.sample_problem(key)

  def loss(self, params, problem, key: jax.Array) -> jax.Array:
    """:math:`c\\, f(s \\odot \\phi)` on the minibatch drawn with ``key``."""
    return self.loss_scale * self.task.loss(self._scaled(params), problem, key)

  def full_loss(self, params, problem) -> jax.Array:
    """:math:`c\\, f(s \\odot \\phi)` exactly (or on the whole split)."""
    return self.loss_scale * self.task.full_loss(self._scaled(params), problem)


def _log_uniform(rng: np.random.Generator, bounds, size=None):
  low, high = np.log(bounds[0]), np.log(bounds[1])
  return np.exp(rng.uniform(low, high, size))


def _check_range(name: str, bounds) -> tuple[float, float]:
  try:
    low, high = (float(b) for b in bounds)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{name} must be a pair (low, high), got {bounds!r}'
                     ) from e
  if not 0 < low <= high < np.inf:
    raise ValueError(f'{name} must satisfy 0 < low <= high < inf, got '
                     f'{bounds!r}')
  return low, high


def augment_task(task: Task, rng: np.random.Generator, *,
            param_scale_range=PARAM_SCALE_RANGE,
            loss_scale_range=LOSS_SCALE_RANGE) -> AugmentedTask:
  """``task`` with a log-uniform scale per parameter tensor and for the loss.

  Args:
    task: a Task; its params tree is read with ``jax.eval_shape``.
    rng: NumPy generator drawing the scales.
    param_scale_range: ``(low, high)`` of the per-tensor scales :math:`s_k`.
    loss_scale_range: ``(low, high)`` of the loss scale :math:`c`.

  Returns:
    An :class:`AugmentedTask`.

  Raises:
    ValueError: a range that is not ``0 < low <= high < inf``.
  """
  param_scale_range = _check_range('param_scale_range', param_scale_range)
  loss_scale_range = _check_range('loss_scale_range', loss_scale_range)
  shapes = jax.eval_shape(task.init_params, jax.random.key(0))
  leaves, treedef = jax.tree.flatten(shapes)
  scales = _log_uniform(rng, param_scale_range, len(leaves))
  return AugmentedTask(
      traceable_task(task),
      treedef.unflatten([jnp.float32(s) for s in scales]),
      jnp.float32(_log_uniform(rng, loss_scale_range)))


@dataclasses.dataclass(frozen=True)
class AugmentedFamily:
  """Draws a task of ``family`` and augments it (:func:`augment_task`).

  Attributes:
    family: the family to augment.
    param_scale_range: ``(low, high)`` of the log-uniform per-tensor
      parameter scales.
    loss_scale_range: ``(low, high)`` of the log-uniform loss scale.
  """
  family: TaskFamily
  param_scale_range: tuple[float, float] = PARAM_SCALE_RANGE
  loss_scale_range: tuple[float, float] = LOSS_SCALE_RANGE

  def __post_init__(self):
    if not callable(getattr(self.family, 'sample_task', None)):
      raise TypeError(f'AugmentedFamily needs a task family (sample_task), '
                      f'got {type(self.family).__name__}')
    _check_range('param_scale_range', self.param_scale_range)
    _check_range('loss_scale_range', self.loss_scale_range)

  @property
  def name(self) -> str:
    return f'augmented_{self.family.name}'

  def sample_task(self, rng: np.random.Generator) -> AugmentedTask:
    """A task of the family, then its scales, both drawn with ``rng``."""
    return augment_task(self.family.sample_task(rng), rng,
                   param_scale_range=self.param_scale_range,
                   loss_scale_range=self.loss_scale_range)


@struct.dataclass
class SubsetTask:
  """A data-set classifier trained on a random subset of its split.

  Each problem draws a subset size :math:`n` log-uniformly in
  ``[min_examples, N]`` (``N`` the split's size) and an offset :math:`o`;
  the problem's examples are those at positions :math:`o, o + 1, \\dots,
  o + n - 1` (mod ``N``). The split's order is random, so this is a random
  subset. Minibatches are drawn from it with replacement, and
  ``full_loss`` is the mean over it. The size and offset are traced data,
  so problems of every size share one compiled program. A fixed number of
  steps is then a different number of epochs on each problem, so the
  meta-training distribution covers the regimes of small and large data
  (a learned optimizer meta-trained on 4000 examples does not carry over
  to 1000: ``docs/research_log.md``).

  Attributes:
    task: a classifier with ``x`` ``(N, ...)``, ``y`` ``(N,)``,
      ``batch_size`` and ``apply(params, x)`` (``tasks.MLPTask``,
      ``tasks.ConvTask``).
    min_examples: smallest subset size (static int, ``1 <= min_examples <=
      N``).
  """
  task: Task
  min_examples: int = struct.field(pytree_node=False, default=500)

  @property
  def name(self) -> str:
    return f'subset{self.min_examples}_{self.task.name}'

  @property
  def num_examples(self) -> int:
    return int(self.task.x.shape[0])

  def init_params(self, key: jax.Array):
    return self.task.init_params(key)

  def sample_problem(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns ``(n, o)``: int32 scalars, the subset's size and offset."""
    size_key, offset_key = jax.random.split(key)
    low, high = np.log(self.min_examples), np.log(self.num_examples + 1)
    n = jnp.exp(jax.random.uniform(size_key, (), jnp.float32, low, high))
    n = jnp.clip(jnp.floor(n).astype(jnp.int32), self.min_examples,
                 self.num_examples)
    return n, jax.random.randint(offset_key, (), 0, self.num_examples)

  def loss(self, params, problem, key: jax.Array) -> jax.Array:
    """Mean cross-entropy on ``batch_size`` examples of the subset."""
    n, offset = problem
    index = jax.random.randint(key, (self.task.batch_size,), 0, n)
    index = (offset + index) % self.num_examples
    return _common.cross_entropy(
        self.task.apply(params, self.task.x[index]), self.task.y[index])

  def full_loss(self, params, problem) -> jax.Array:
    """Mean cross-entropy over the subset's examples."""
    n, offset = problem
    position = (jnp.arange(self.num_examples) - offset) % self.num_examples
    weights = (position < n).astype(jnp.float32)
    logits = self.task.apply(params, self.task.x)
    losses = optax.softmax_cross_entropy_with_integer_labels(
        logits, self.task.y)
    return jnp.sum(weights * losses) / jnp.sum(weights)


def _is_classifier(task) -> bool:
  """Whether ``task`` is a data-set classifier that :class:`SubsetTask`
  can wrap."""
  return all(hasattr(task, a) for a in ('x', 'y', 'apply', 'batch_size'))


@dataclasses.dataclass(frozen=True)
class SubsetFamily:
  """Draws a task of ``family`` and trains it on random subsets of its
  split (:class:`SubsetTask`).

  Attributes:
    family: a family of data-set classifiers (``mnist1d_mlp``,
      ``digits_conv``, ...).
    min_examples: smallest subset size.

  Raises:
    TypeError: ``family`` has no ``sample_task``, or its tasks have no data
      set (``x``, ``y``, ``apply``).
    ValueError: ``min_examples`` is not in ``1 .. N``.
  """
  family: TaskFamily
  min_examples: int = 500

  def __post_init__(self):
    if not callable(getattr(self.family, 'sample_task', None)):
      raise TypeError(f'SubsetFamily needs a task family (sample_task), '
                      f'got {type(self.family).__name__}')

  @property
  def name(self) -> str:
    return f'subset{self.min_examples}_{self.family.name}'

  def sample_task(self, rng: np.random.Generator) -> SubsetTask:
    task = self.family.sample_task(rng)
    if not _is_classifier(task):
      raise TypeError(f'SubsetFamily needs data-set classifiers (x, y, apply, '
                      f'batch_size); {self.family.name} gives '
                      f'{type(task).__name__}')
    size = int(task.x.shape[0])
    if not 1 <= self.min_examples <= size:
      raise ValueError(f'min_examples must be in 1..{size} (the split of '
                       f'{self.family.name}), got {self.min_examples}')
    return SubsetTask(task, int(self.min_examples))


def _has_data(family: TaskFamily) -> bool:
  return _is_classifier(family.sample_task(np.random.default_rng(0)))


def on_subsets(family: TaskFamily, min_examples: int) -> TaskFamily:
  """``family`` on random subsets of its split (:class:`SubsetFamily`); in a
  :class:`~tasks.MixtureFamily`, each member family of data-set classifiers
  is put on subsets and the others (a quadratic, say) are kept as they are.

  Every member put on subsets is checked at once by drawing one task of it.

  Raises:
    TypeError: neither ``family`` nor any member of a mixture is a family
      of data-set classifiers.
    ValueError: ``min_examples`` is above a member's split size, or below 1.
  """
  if not isinstance(family, MixtureFamily):
    subsets = SubsetFamily(family, min_examples)
    subsets.sample_task(np.random.default_rng(0))
    return subsets
  with_data = [_has_data(member) for member in family.families]
  if not any(with_data):
    raise TypeError(f'data subsets need a family of data-set classifiers; '
                    f'no member of {family.name} has a data set')
  return MixtureFamily(tuple(
      on_subsets(member, min_examples) if data else member
      for member, data in zip(family.families, with_data)))


def horizons(rng: np.random.Generator, mean: int, count: int) -> np.ndarray:
  """``count`` random episode lengths, in truncations, uniform on
  ``1 .. 2 mean - 1`` (mean ``mean``), for meta-training over randomised
  horizons, so that the optimizer does not learn one episode length.

  Raises:
    ValueError: ``mean`` or ``count`` below 1.
  """
  if mean < 1 or count < 1:
    raise ValueError(f'mean and count must be at least 1, got {mean}, {count}')
  return rng.integers(1, 2 * mean, size=count)
