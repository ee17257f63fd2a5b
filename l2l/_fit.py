"""Meta-training a learned optimizer on any task, in one call.

:func:`meta_train` wires the pure pieces (:func:`l2l.init_meta_params`,
:func:`l2l.init_inner_states`, :func:`l2l.meta_step`,
:func:`l2l.es_meta_step`) into the loop that ``python -m meta_train`` runs,
with the same defaults, keys and episodes, so that both give the same
meta-parameters. The helpers below are shared with that program.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2l._base import Array, MetaParams
from l2l._meta import es_meta_step, init_inner_states, meta_step
from l2l._meta import MetaTrainState
from l2l._network import DESIGNS, init_meta_params
from l2l._parallel import check_divisible, constrain, host_task, split
from l2l._parallel import state_shardings, task_mesh
from l2l._pes import pes_meta_step, pes_start
from l2l._transform import lstm_optimizer

ESTIMATORS = ('bptt', 'es', 'pes')
TASK_METHODS = ('init_params', 'sample_problem', 'loss', 'full_loss')
METRICS = ('meta_loss', 'final_loss', 'grad_norm', 'skipped', 'num_skipped')


#: What each ``trainable`` subset marks, from a leaf's path of dict keys:
#: the meta-parameters' top-level parts are ``'params'`` (the LSTM, with its
#: read-out layer ``'output'``), ``'nominal'`` (the hand-designed rule's
#: constants) and, for the compact design, ``'mlp'``.
_MARKS = {
    'all': lambda keys: True,
    'readout': lambda keys: 'output' in keys or 'nominal' in keys,
    'output': lambda keys: 'output' in keys,
    'learned': lambda keys: 'nominal' not in keys,
    'scheduler': lambda keys: keys[0] == 'params',
    'step_sizes': lambda keys: 'nominal' not in keys,
}
SUBSETS = tuple(_MARKS)
#: The compact MLP's read-out column that corrects the direction (its
#: second output, ``l2l._compact.compact``), which 'step_sizes' keeps at 0.
_DIRECTION = 1


def trainable_leaves(meta_params: MetaParams, subset: str):
  """Which meta-parameters ``subset`` trains: a tree like ``meta_params``
  of Python bools, or for part of a leaf, of numpy bool arrays shaped like
  it.

  'all' marks every leaf; 'readout' the nominal constants and the output
  layer; 'output' the output layer only; 'learned' every leaf but the
  nominal constants (the networks); 'scheduler' the LSTM alone
  (``meta_params['params']``: for the compact design its per-tensor LSTM,
  not the MLP); 'step_sizes' as 'learned', except the compact MLP's
  direction output (its read-out's second column and bias), so that the
  learned parts set per-tensor and per-coordinate step sizes and the
  direction stays the nominal rule's.
  """
  marks = _MARKS[subset]
  def mark(path, leaf):
    keys = [getattr(k, 'key', None) for k in path]
    if (subset == 'step_sizes' and keys[:2] == ['mlp', 'output']
        and keys[2] in ('kernel', 'bias')):
      column = np.ones(np.shape(leaf), bool)
      column[..., _DIRECTION] = False
      return column
    return marks(keys)
  return jax.tree_util.tree_map_with_path(mark, meta_params)


def adam_meta_optimizer(trainable: Callable[[MetaParams], Any], *,
                        meta_lr: float, clip_norm: float
                        ) -> optax.GradientTransformation:
  """Clipped Adam on what ``trainable`` marks (leaves, or the elements of a
  leaf's bool array); zero on the rest. Its state is that of the
  ``multi_transform`` of Adam and ``set_to_zero`` over the marked leaves."""
  def labels(tree):
    return jax.tree.map(lambda m: bool(np.any(m)), trainable(tree))
  inner = optax.multi_transform(
      {True: optax.chain(optax.clip_by_global_norm(clip_norm),
                         optax.adam(meta_lr)),
       False: optax.set_to_zero()}, labels)
  def keep_marked(updates):
    return jax.tree.map(lambda u, m: u if np.ndim(m) == 0
                        else u * jnp.asarray(m, u.dtype),
                        updates, trainable(updates))
  def update(updates, state, params=None):
    return inner.update(keep_marked(updates), state, params)
  return optax.GradientTransformation(inner.init, update)


def jitted_meta_step(estimator: str, *, optimizer_fn, meta_optimizer,
                     trainable, unroll_length: int, log_losses: bool,
                     loss_weights=None, es_pairs: int = 8,
                     es_sigma: float = 0.03, es_fitness: str = 'difference',
                     second_order: bool = False,
                     remat_chunk: int | None = None, mesh=None):
  """``step(state, task, key) -> (state, metrics)`` of ``estimator``,
  jitted, with ``state`` donated; over ``mesh`` (a ``'tasks'`` mesh,
  :func:`l2l.task_mesh`), the problems stay split over its devices."""
  if estimator == 'es':
    step = functools.partial(es_meta_step, num_pairs=es_pairs, sigma=es_sigma,
                             trainable=trainable, fitness=es_fitness)
  elif estimator == 'pes':
    step = functools.partial(pes_meta_step, sigma=es_sigma,
                             trainable=trainable)
  else:
    step = functools.partial(meta_step, second_order=second_order,
                             remat_chunk=remat_chunk or None)
  step = functools.partial(
      step, optimizer_fn=optimizer_fn, meta_optimizer=meta_optimizer,
      unroll_length=unroll_length, log_losses=log_losses,
      loss_weights=loss_weights)
  if mesh is not None:
    step = _split_over(step, mesh)
  return jax.jit(step, donate_argnums=0)


def _split_over(step, mesh):
  """``step`` returning its state under :func:`l2l.state_shardings`."""
  def split_step(state, task, key):
    state, metrics = step(constrain(state, mesh), task, key)
    return constrain(state, mesh), metrics
  return split_step


def start_episode(estimator: str, state: MetaTrainState,
                  inner) -> MetaTrainState:
  """``state`` with fresh problems ``inner``; for PES, both particles of
  each pair start there with no accumulated perturbation
  (:func:`l2l.pes_start`)."""
  if estimator == 'pes':
    return pes_start(state, inner)
  return state._replace(inner=inner)


def meta_train(task, *, key=None, meta_params: MetaParams | None = None,
               design: str = 'free', estimator: str = 'es',
               meta_steps: int = 300, num_tasks: int = 8,
               unroll_length: int = 100, truncations_per_episode: int = 1,
               meta_lr: float = 3e-3, clip_norm: float = 1.0,
               log_losses: bool = True, es_pairs: int = 8,
               es_sigma: float = 0.03, trainable: Any = 'readout',
               progress: Callable[[int, dict], Any] | None = None,
               optimizer_kwargs: dict | None = None,
               devices: int | None = None,
               ) -> tuple[MetaParams, dict[str, np.ndarray]]:
  r"""Meta-trains a learned optimizer on ``task``.

  Each meta-step unrolls ``unroll_length`` inner steps of ``num_tasks``
  problems and moves the meta-parameters :math:`\phi` by clipped Adam along
  an estimate of :math:`\nabla_\phi \frac{1}{B} \sum_b \sum_{t=1}^{K}
  \log f_b(\theta_t)`: backpropagation through the truncated unroll
  (``'bptt'``, :func:`l2l.meta_step`), antithetic evolution strategies
  (``'es'``, :func:`l2l.es_meta_step`) or persistent evolution strategies
  (``'pes'``, :func:`l2l.pes_meta_step`: ``num_tasks`` antithetic pairs,
  each with its own two trajectories, unbiased across truncations). Every
  ``truncations_per_episode`` meta-steps an episode ends and fresh problems
  (of a fresh task, for a family) start. The defaults, keys and episodes are those of
  ``python -m meta_train``: with an int ``key`` equal to its ``--seed`` and
  the same settings, both return the same meta-parameters.

  Args:
    task: a task (``init_params(key)``, ``sample_problem(key)``,
      ``loss(params, problem, key)``, ``full_loss(params, problem)``; see
      ``tasks/base.py``), or a family of them (``sample_task(rng)``, drawn
      with a NumPy generator each episode). A task that is not a pytree is
      treated as a constant; one that is (a ``flax.struct.dataclass``) has
      its arrays traced, so tasks of one structure share a compiled step.
    key: an int seed (default 0) or a JAX PRNG key.
    meta_params: meta-parameters to start from; fresh ones of ``design``
      from :func:`l2l.init_meta_params` when None.
    design: a key of :data:`l2l.DESIGNS`, used when ``meta_params`` is None.
    estimator: ``'es'``, ``'pes'`` or ``'bptt'``.
    meta_steps: meta-steps (truncations) to take; 0 returns the start.
    num_tasks: problems per meta-step, trained in parallel.
    unroll_length: inner steps per truncation, ``K``.
    truncations_per_episode: meta-steps before fresh problems are drawn.
    meta_lr: Adam learning rate of the meta-optimizer.
    clip_norm: global-norm clip of the meta-gradient.
    log_losses: sum log losses (balances problems of different scales).
    es_pairs: antithetic pairs per ES meta-step.
    es_sigma: standard deviation of the ES and PES perturbations.
    trainable: which meta-parameters move: ``'all'``, ``'readout'`` (the
      nominal constants and the read-out layer), ``'output'`` (the read-out
      layer), ``'learned'`` (the networks: all but the nominal constants),
      ``'scheduler'`` (the LSTM alone, not the nominal constants; for the
      compact design its per-tensor LSTM, not the MLP), ``'step_sizes'``
      (as ``'learned'``, but the compact MLP's direction output stays 0),
      a tree of bools like the meta-params (numpy bool arrays to mark part
      of a leaf), or a function from meta-params to one.
    progress: called as ``progress(step, metrics)`` with host values, one
      step late (no device sync per step).
    optimizer_kwargs: further arguments of :func:`l2l.lstm_optimizer`; pass
      them again when using the result.
    devices: split each meta-step's problems over this many devices
      (:func:`l2l.task_mesh`; all when None); the result equals one
      device's to float rounding.

  Returns:
    ``(meta_params, log)``: the trained meta-parameters, a tree like the
    start's, and a dict of NumPy arrays shaped ``[meta_steps]``, one per
    metric of :func:`l2l.meta_step` (``meta_loss``, ``final_loss``,
    ``grad_norm``, ``skipped``, ``num_skipped``).

  Raises:
    ValueError: naming the argument, for a ``task`` without the protocol's
      methods, an unknown ``estimator``, ``design`` or ``trainable``
      subset, a count below 1 (below 0 for ``meta_steps``), a
      non-positive rate, clip or sigma, or problems (``num_tasks``; twice
      that for PES) that do not split evenly over ``devices``.

  Example:
    >>> meta_params, log = l2l.meta_train(my_task, meta_steps=50)
    >>> optimizer = l2l.lstm_optimizer(meta_params)

  References:
    - Andrychowicz et al., 2016, "Learning to learn by gradient descent by
      gradient descent", https://arxiv.org/abs/1606.04474 (BPTT).
    - Metz et al., 2019, "Understanding and correcting pathologies in the
      training of learned optimizers", https://arxiv.org/abs/1810.10180
      (ES).
    - Salimans et al., 2017, "Evolution strategies as a scalable
      alternative to reinforcement learning",
      https://arxiv.org/abs/1703.03864.
    - Vicol et al., 2021, "Unbiased gradient estimation in unrolled
      computation graphs with persistent evolution strategies",
      https://arxiv.org/abs/2112.13835 (PES).
  """
  _check_arguments(task, locals())
  mesh = task_mesh(devices)
  check_divisible(num_tasks * (2 if estimator == 'pes' else 1), mesh)
  draw = _task_sampler(task, key)
  keys = jax.random.split(_as_key(key), 3)
  mask = _mask(trainable)
  optimizer_fn = functools.partial(lstm_optimizer, **(optimizer_kwargs or {}))
  meta_optimizer = adam_meta_optimizer(mask, meta_lr=meta_lr,
                                       clip_norm=clip_norm)
  step_fn = jitted_meta_step(
      estimator, optimizer_fn=optimizer_fn, meta_optimizer=meta_optimizer,
      trainable=mask, unroll_length=unroll_length, log_losses=log_losses,
      es_pairs=es_pairs, es_sigma=es_sigma, mesh=mesh)
  init_inner = jax.jit(lambda meta_params, task, key: init_inner_states(
      task, optimizer_fn(meta_params), key, num_tasks),
                       out_shardings=split(mesh))
  new_inner = lambda meta_params, episode: init_inner(
      meta_params, draw(episode), jax.random.fold_in(keys[1], episode))
  # A copy: the step donates its input buffers.
  meta_params = (init_meta_params(keys[0], design=design) if meta_params is None
                 else jax.tree.map(jnp.array, meta_params))
  # Placed as the step returns them, so that no later step or episode
  # compiles again for other input shardings.
  meta_params = jax.device_put(meta_params, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec()))
  state = start_episode(estimator, MetaTrainState(
      meta_params, meta_optimizer.init(meta_params), None,
      jnp.zeros([], jnp.int32)), new_inner(meta_params, 0))
  state = jax.device_put(state, state_shardings(state, mesh))
  log, pending = {name: [] for name in METRICS}, None
  for step in range(meta_steps):
    episode, offset = divmod(step, truncations_per_episode)
    if offset == 0 and step > 0:
      state = start_episode(estimator, state,
                            new_inner(state.meta_params, episode))
    state, metrics = step_fn(state, draw(episode),
                             jax.random.fold_in(keys[2], step))
    if pending is not None:  # read back one step late: no sync per step
      _record(log, progress, *pending)
    pending = (step, metrics)
  if pending is not None:
    _record(log, progress, *pending)
  return state.meta_params, {name: np.asarray(v) for name, v in log.items()}


def _record(log: dict, progress, step: int, metrics: dict) -> None:
  metrics = jax.device_get(metrics)
  for name in METRICS:
    log[name].append(metrics[name])
  if progress is not None:
    progress(step, metrics)


def _check_arguments(task, args: dict) -> None:
  """Raises ValueError naming the first bad argument of :func:`meta_train`."""
  if isinstance(task, type):
    raise ValueError(f'task must be an instance, got the class '
                     f'{task.__name__}')
  missing = [m for m in TASK_METHODS if not callable(getattr(task, m, None))]
  if missing and not callable(getattr(task, 'sample_task', None)):
    raise ValueError(
        f'task must have the methods {", ".join(TASK_METHODS)} (a Task) or '
        f'sample_task (a task family); {type(task).__name__} lacks '
        f'{", ".join(missing)}')
  choices = {'estimator': ESTIMATORS, 'design': tuple(sorted(DESIGNS))}
  if isinstance(args['trainable'], str):
    choices['trainable'] = SUBSETS
  for name, valid in choices.items():
    if args[name] not in valid:
      raise ValueError(f'{name} must be one of {valid}, got {args[name]!r}')
  for name in ('meta_steps', 'num_tasks', 'unroll_length',
               'truncations_per_episode', 'es_pairs'):
    least = 0 if name == 'meta_steps' else 1
    if not isinstance(args[name], (int, np.integer)) or args[name] < least:
      raise ValueError(f'{name} must be an int of at least {least}, got '
                       f'{args[name]!r}')
  for name in ('meta_lr', 'clip_norm', 'es_sigma'):
    if not args[name] > 0:
      raise ValueError(f'{name} must be positive, got {args[name]!r}')
  if args['progress'] is not None and not callable(args['progress']):
    raise ValueError(f'progress must be None or callable, got '
                     f'{args["progress"]!r}')
  key = args['key']
  if isinstance(key, (int, np.integer)) and key < 0:
    raise ValueError(f'key must be a non-negative seed, got {key}')


def _as_key(key) -> Array:
  """A typed PRNG key from None (seed 0), an int seed or a key."""
  if key is None or isinstance(key, (int, np.integer)):
    return jax.random.key(int(key or 0))
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key
  return jax.random.wrap_key_data(key)


def _task_sampler(task, key) -> Callable[[int], Any]:
  """``episode -> task``: a family draws with ``default_rng([seed, episode])``
  (a key's words stand for the seed), as ``meta_train/train.py`` does."""
  if not callable(getattr(task, 'sample_task', None)):
    task = host_task(traceable_task(task))
    return lambda episode: task
  words = ([int(key or 0)] if key is None or isinstance(key, (int, np.integer))
           else np.asarray(jax.random.key_data(_as_key(key))).ravel().tolist())

  @functools.lru_cache(maxsize=1)  # drawn once per episode
  def draw(episode):
    return host_task(traceable_task(
        task.sample_task(np.random.default_rng([*words, episode]))))
  return draw


def _mask(trainable) -> Callable[[MetaParams], Any]:
  """``trainable`` as a function from meta-params to a tree of bools."""
  if trainable is None:
    trainable = 'all'
  if isinstance(trainable, str):
    return functools.partial(trainable_leaves, subset=trainable)
  return trainable if callable(trainable) else lambda _: trainable


class _Constant:
  """A task that is not a pytree, passed to ``jit`` as static data compared
  by identity (so an unhashable one works and compiles once)."""

  def __init__(self, task):
    self.task = task

  def __getattr__(self, name):
    if name == 'task':
      raise AttributeError(name)
    return getattr(self.task, name)

  def __eq__(self, other):
    return isinstance(other, _Constant) and other.task is self.task

  def __hash__(self):
    return id(self.task)


jax.tree_util.register_static(_Constant)


def traceable_task(task):
  """``task`` itself if it is a pytree, else wrapped as a constant."""
  leaves = jax.tree.leaves(task)
  return _Constant(task) if len(leaves) == 1 and leaves[0] is task else task
