"""Population-based training, random search and grid search in one ``jit``.

A population of members, each with its own params, optimizer state and
hyperparameters, trains along a leading ``[num_members]`` axis (``vmap``).
Every ``every`` steps each member is scored on validation data; under
population-based training (Jaderberg et al., 2017) the worst members then
copy the params, optimizer state and hyperparameters of better ones (a
gather: *exploit*) and perturb the copied hyperparameters (*explore*).
Random and grid search are the same loop without exploit and explore,
started from random or grid points: one compiled program for any method.
"""

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from l2l._base import Array, OptState, Params
from l2l.hparams import _online
from l2l.hparams._space import HParams, HyperparameterSpace

#: The methods of :func:`search`.
METHODS = ('pbt', 'random', 'grid')


class PopulationState(NamedTuple):
  """Members of a population, each leaf with a leading ``[num_members]`` axis.

  Attributes:
    params: model parameters.
    inner_state: optimizer states.
    unit: hyperparameters in unit coordinates, ``{name: (num_members,)}``.
    score: float32 latest validation loss (``inf`` before the first).
    origin: int32 index of the member each one last copied (itself if none).
  """
  params: Params
  inner_state: OptState
  unit: HParams
  score: Array
  origin: Array


def exploit_explore(state: PopulationState, key: Array, *,
                    fraction: float = 0.25,
                    perturb: float = 0.1) -> PopulationState:
  """Truncation selection: the worst members take over better ones.

  Members are ranked by ``score`` (lower is better; a non-finite score is
  worst). Each of the ``ceil(fraction * N)`` worst members copies the
  params, optimizer state and hyperparameters of a member drawn uniformly
  from the same number of best ones, then moves each copied unit
  coordinate by ``+perturb`` or ``-perturb`` (a fair coin), clipped to
  ``[0, 1]``. The other members are left as they are.

  Args:
    state: the population after scoring.
    key: PRNG key for donors and perturbation signs.
    fraction: share of the population replaced, in ``(0, 0.5]``.
    perturb: unit-coordinate perturbation of copied hyperparameters.

  Returns:
    The new :class:`PopulationState`; ``origin`` holds each member's donor.
  """
  num = state.score.shape[0]
  count = max(1, math.ceil(fraction * num - 1e-9))
  order = jnp.argsort(jnp.where(jnp.isfinite(state.score), state.score,
                                jnp.inf))
  donor_key, sign_key = jax.random.split(key)
  donors = order[jax.random.randint(donor_key, (count,), 0, count)]
  source = jnp.arange(num).at[order[num - count:]].set(donors)
  copied = source != jnp.arange(num)
  take = lambda x: x[source]
  params, inner = jax.tree.map(take, (state.params, state.inner_state))
  signs = jax.random.rademacher(sign_key, (len(state.unit), num), jnp.float32)
  unit = {name: jnp.where(copied, jnp.clip(u[source] + perturb * s, 0.0, 1.0),
                          u)
          for (name, u), s in zip(sorted(state.unit.items()), signs)}
  return PopulationState(params, inner, unit, state.score[source], source)


def _start_units(method: str, space: HyperparameterSpace, key: Array,
                 num_members: int) -> HParams:
  if method == 'grid':
    return space.grid(num_members)
  return space.sample(key, num_members)


def search(method: str, make_optimizer, space: HyperparameterSpace, *,
           train_loss, val_loss, init_params: Callable[[Array], Params],
           key: Array, num_members: int, num_steps: int, every: int = 50,
           fraction: float = 0.25, perturb: float = 0.1):
  """Trains a population and tunes its hyperparameters, in one traced loop.

  ``'pbt'``: population-based training from random starting points, exploit
  and explore (:func:`exploit_explore`) every ``every`` steps but at the
  end. ``'random'``: ``num_members`` independent runs at points drawn
  uniformly in unit coordinates. ``'grid'``: independent runs at the points
  of ``space.grid(num_members)`` (the population is that grid's size). All
  members share one compiled step: hyperparameters are traced arrays.
  Call it under ``jax.jit`` with ``method``, the functions and the sizes
  static.

  Args:
    method: one of ``'pbt'``, ``'random'``, ``'grid'``.
    make_optimizer: ``make_optimizer(values) -> optax transform``.
    space: the declared hyperparameters.
    train_loss: ``train_loss(params, values, key)``.
    val_loss: ``val_loss(params, key)``, the score (lower is better).
    init_params: ``init_params(key) -> params`` for one member.
    key: PRNG key.
    num_members: population size, or the largest grid size.
    num_steps: training steps of each member, a multiple of ``every``.
    every: steps between scorings (and exploits under ``'pbt'``).
    fraction: share of the population replaced at each exploit.
    perturb: unit-coordinate perturbation at each explore.

  Returns:
    ``(state, history)``: the final :class:`PopulationState` (scored after
    the last step) and, per round, ``'unit'`` ``{name: [rounds, N]}`` the
    hyperparameters each member trained with, ``'score'`` ``[rounds, N]``
    the scores at its end and ``'origin'`` ``[rounds, N]`` the member each
    one copied after it (itself if none).

  Raises:
    ValueError: an unknown method, ``num_steps`` not a positive multiple of
      ``every``, too few members, or ``fraction`` outside ``(0, 0.5]``.
  """
  _check(method, num_members, num_steps, every, fraction)
  start_key, init_key, loop_key = jax.random.split(key, 3)
  unit = _start_units(method, space, start_key, num_members)
  size = jax.tree.leaves(unit)[0].shape[0]
  params = jax.vmap(init_params)(jax.random.split(init_key, size))
  inner = jax.vmap(lambda p, u: make_optimizer(space.from_unit(u)).init(p))(
      params, unit)
  state = PopulationState(params, inner, unit, jnp.full(size, jnp.inf),
                          jnp.arange(size))
  fns = dict(space=space, make_optimizer=make_optimizer, train_loss=train_loss)

  def member_steps(params, inner, unit, key):
    def body(carry, k):
      p, s, _ = _online.train_step(*carry, unit, k, **fns)
      return (p, s), None
    return jax.lax.scan(body, (params, inner),
                        jax.random.split(key, every))[0]

  def round_(state, inputs):
    index, k = inputs
    train_key, val_key, pbt_key = jax.random.split(k, 3)
    params, inner = jax.vmap(member_steps)(
        state.params, state.inner_state, state.unit,
        jax.random.split(train_key, size))
    score = jax.vmap(val_loss, in_axes=(0, None))(params, val_key)
    used = state.unit
    state = state._replace(params=params, inner_state=inner, score=score,
                           origin=jnp.arange(size))
    if method == 'pbt':
      state = jax.lax.cond(
          index < num_steps // every - 1,
          lambda s: exploit_explore(s, pbt_key, fraction=fraction,
                                    perturb=perturb),
          lambda s: s, state)
    return state, {'unit': used, 'score': score, 'origin': state.origin}

  rounds = num_steps // every
  return jax.lax.scan(round_, state, (jnp.arange(rounds),
                                      jax.random.split(loop_key, rounds)))


def best_member(state: PopulationState) -> Array:
  """Index of the member with the lowest finite score (int32)."""
  return jnp.argmin(jnp.where(jnp.isfinite(state.score), state.score,
                              jnp.inf)).astype(jnp.int32)


def _check(method, num_members, num_steps, every, fraction) -> None:
  if method not in METHODS:
    raise ValueError(f'search: unknown method {method!r}; valid: {METHODS}')
  if int(every) < 1 or int(num_steps) < every or num_steps % every:
    raise ValueError(f'search: num_steps ({num_steps}) must be a positive '
                     f'multiple of every ({every})')
  if int(num_members) < 2:
    raise ValueError(f'search: num_members must be at least 2, got '
                     f'{num_members}')
  if not 0 < fraction <= 0.5:
    raise ValueError(f'search: fraction must lie in (0, 0.5], got {fraction}')
