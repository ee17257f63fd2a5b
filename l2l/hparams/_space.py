"""Declared hyperparameters: names, bounds and transforms, held as arrays.

Every hyperparameter lives in two coordinates. Its *value* (what the loss
or the optimizer uses: a weight decay of ``1e-4``, a dropout rate of
``0.3``) and its *unit coordinate* ``u`` in ``[0, 1]``, the position of
``transform(value)`` between ``transform(lower)`` and ``transform(upper)``.
Tuners work in unit coordinates, so one step size, one perturbation and one
sampler fit every hyperparameter whatever its scale.
"""

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from l2l._base import Array

#: The transforms a hyperparameter may be declared with.
TRANSFORMS = ('linear', 'log', 'logit')
HParams = dict[str, Array]


def _forward(transform: str, x):
  """The transform as a function of values (numpy or jax)."""
  xp = jnp if isinstance(x, jax.Array) else np
  if transform == 'log':
    return xp.log(x)
  if transform == 'logit':
    return xp.log(x) - xp.log1p(-x)
  return x


def _inverse(transform: str, z: Array) -> Array:
  if transform == 'log':
    return jnp.exp(z)
  if transform == 'logit':
    return jax.nn.sigmoid(z)
  return z


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
  """One continuous hyperparameter of a model or its training.

  Attributes:
    name: a Python identifier, the key of the hyperparameter in the dict
      passed to the loss and the optimizer factory.
    init: the starting value, in ``[lower, upper]``.
    lower: the smallest allowed value.
    upper: the largest allowed value, above ``lower``.
    transform: ``'linear'``, ``'log'`` (needs ``lower > 0``; for scales
      such as weight decay or a learning-rate multiplier) or ``'logit'``
      (needs ``0 < lower < upper < 1``; for rates such as dropout).

  Raises:
    ValueError: an unknown transform, non-finite or reversed bounds, an
      ``init`` outside the bounds, a non-positive bound under ``'log'`` or a
      bound outside ``(0, 1)`` under ``'logit'``; the message names the
      hyperparameter.
    TypeError: a name that is not a string.

  Example:
    >>> wd = Hyperparameter('weight_decay', 1e-4, 1e-6, 1e-1, 'log')
  """
  name: str
  init: float
  lower: float
  upper: float
  transform: str = 'linear'

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name.isidentifier():
      raise TypeError(f'hyperparameter name must be an identifier string, got '
                      f'{self.name!r}')
    where = f'hyperparameter {self.name!r}'
    if self.transform not in TRANSFORMS:
      raise ValueError(f'{where}: unknown transform {self.transform!r}; valid: '
                       f'{TRANSFORMS}')
    for field in ('init', 'lower', 'upper'):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f'{where}: {field} must be a number, got {value!r}')
      if not math.isfinite(value):
        raise ValueError(f'{where}: {field} must be finite, got {value}')
      object.__setattr__(self, field, float(value))
    if not self.lower < self.upper:
      raise ValueError(f'{where}: lower bound {self.lower} must be below the '
                       f'upper bound {self.upper}')
    if self.transform == 'log' and self.lower <= 0:
      raise ValueError(f'{where}: the log transform needs positive bounds, '
                       f'got lower={self.lower}')
    if self.transform == 'logit' and not 0 < self.lower < self.upper < 1:
      raise ValueError(f'{where}: the logit transform needs bounds inside '
                       f'(0, 1), got [{self.lower}, {self.upper}]')
    if not self.lower <= self.init <= self.upper:
      raise ValueError(f'{where}: init {self.init} lies outside its bounds '
                       f'[{self.lower}, {self.upper}]')


@dataclasses.dataclass(frozen=True)
class HyperparameterSpace:
  """Declared hyperparameters; hashable, so it may be a static argument.

  Build it with :func:`declare`. Hyperparameter trees are dicts
  ``{name: float32 array}``; every method maps over a leading batch axis if
  the unit coordinates have one.

  Attributes:
    hyperparameters: the declarations, in order.
  """
  hyperparameters: tuple[Hyperparameter, ...]

  @property
  def names(self) -> tuple[str, ...]:
    """The names, in declaration order."""
    return tuple(h.name for h in self.hyperparameters)

  def init(self) -> HParams:
    """Unit coordinates of the declared ``init`` values (float32 scalars)."""
    return self.to_unit({h.name: h.init for h in self.hyperparameters})

  def to_unit(self, values) -> HParams:
    """Unit coordinates ``u in [0, 1]`` of values (clipped to the bounds)."""
    self._check_keys(values, 'to_unit')
    unit = {}
    for h in self.hyperparameters:
      lo, hi = _forward(h.transform, h.lower), _forward(h.transform, h.upper)
      x = jnp.clip(jnp.asarray(values[h.name], jnp.float32), h.lower, h.upper)
      unit[h.name] = (_forward(h.transform, x) - lo) / (hi - lo)
    return unit

  def from_unit(self, unit) -> HParams:
    """Values of unit coordinates; coordinates are clipped to ``[0, 1]``."""
    self._check_keys(unit, 'from_unit')
    values = {}
    for h in self.hyperparameters:
      lo, hi = _forward(h.transform, h.lower), _forward(h.transform, h.upper)
      u = jnp.clip(jnp.asarray(unit[h.name], jnp.float32), 0.0, 1.0)
      value = _inverse(h.transform, lo + u * (hi - lo))
      values[h.name] = jnp.clip(value, h.lower, h.upper)
    return values

  def sample(self, key: Array, num: int) -> HParams:
    """``num`` points drawn uniformly in unit coordinates: ``{name: (num,)}``
    (log-uniform under ``'log'``)."""
    keys = jax.random.split(key, len(self.hyperparameters))
    return {h.name: jax.random.uniform(k, (num,), jnp.float32)
            for h, k in zip(self.hyperparameters, keys)}

  def grid(self, num: int) -> HParams:
    """A full factorial grid of at most ``num`` points, ``{name: (n,)}``.

    Each axis gets ``floor(num ** (1 / d))`` evenly spaced unit coordinates
    (ends included), then axes in declaration order get one more while the
    product stays within ``num``: 16 points are 4 x 4 for two
    hyperparameters, 3 x 2 x 2 for three.

    Raises:
      ValueError: ``num < 2 ** d``, too few for two points per axis.
    """
    d = len(self.hyperparameters)
    if num < 2 ** d:
      raise ValueError(f'grid: {num} points are too few for {d} '
                       f'hyperparameters (need at least {2 ** d})')
    counts = [int(math.floor(num ** (1 / d) + 1e-9))] * d
    for i in range(d):
      if math.prod(counts) // counts[i] * (counts[i] + 1) <= num:
        counts[i] += 1
    axes = [np.linspace(0.0, 1.0, c, dtype=np.float32) for c in counts]
    mesh = np.meshgrid(*axes, indexing='ij')
    return {h.name: jnp.asarray(m.ravel())
            for h, m in zip(self.hyperparameters, mesh)}

  def _check_keys(self, tree, where: str) -> None:
    if not isinstance(tree, dict) or set(tree) != set(self.names):
      got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
      raise ValueError(f'HyperparameterSpace.{where}: expected a dict with '
                       f'keys {sorted(self.names)}, got {got}')


def declare(*hyperparameters: Hyperparameter | Sequence) -> HyperparameterSpace:
  """Declares the continuous hyperparameters to tune.

  Args:
    *hyperparameters: :class:`Hyperparameter` declarations, or tuples
      ``(name, init, lower, upper[, transform])`` of their fields.

  Returns:
    A :class:`HyperparameterSpace`.

  Raises:
    ValueError: no hyperparameters, a name declared twice, or an invalid
      declaration (see :class:`Hyperparameter`).
    TypeError: an argument that is neither a declaration nor a tuple.

  Example:
    >>> space = declare(('weight_decay', 1e-4, 1e-6, 1e-1, 'log'),
    ...                 ('dropout', 0.1, 0.0, 0.8))
    >>> space.from_unit(space.init())['dropout']
    Array(0.1, dtype=float32)
  """
  if not hyperparameters:
    raise ValueError('declare: at least one hyperparameter is needed')
  parsed = []
  for h in hyperparameters:
    if isinstance(h, Hyperparameter):
      parsed.append(h)
    elif isinstance(h, (tuple, list)) and 4 <= len(h) <= 5:
      parsed.append(Hyperparameter(*h))
    else:
      raise TypeError(f'declare: expected a Hyperparameter or a tuple (name, '
                      f'init, lower, upper[, transform]), got {h!r}')
  names = [h.name for h in parsed]
  for name in names:
    if names.count(name) > 1:
      raise ValueError(f'declare: hyperparameter {name!r} is declared twice')
  return HyperparameterSpace(tuple(parsed))
