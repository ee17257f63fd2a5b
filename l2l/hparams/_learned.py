"""A meta-learned hyperparameter tuner: a small LSTM corrects the online
hypergradient step.

Every ``every`` steps, for each hyperparameter separately (one LSTM shared
by all, so a tuner meta-trained on some hyperparameters runs on others), the
network reads the hyperparameter's unit coordinate, its normalised
hypergradient, the generalisation gap ``log val - log train``, the change of
the log validation loss since its last call and the fraction of training
done, and adds ``max_change * tanh(.)`` to the nominal step of
:func:`l2l.hparams.normalised_step`. Its output weights start at zero, so an
untrained tuner is the online tuner; meta-training (antithetic evolution
strategies on the final validation loss of whole training runs,
:func:`meta_train_tuner`) learns the correction, e.g. against the
short-horizon bias of one-step lookahead (Wu et al., 2018).
"""

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2l import _meta
from l2l._base import Array, OptState, Params
from l2l.hparams import _online
from l2l.hparams._space import HParams

NUM_FEATURES = 6


class LearnedTunerState(NamedTuple):
  """State of :func:`learned_tuner`: :class:`OnlineTunerState`'s fields and
  the network's.

  Attributes:
    count: int32 training steps taken.
    unit: hyperparameters in unit coordinates.
    inner_state: the wrapped optimizer's state.
    mu: first moment of the hypergradient.
    nu: second moment of the hypergradient.
    hyper_count: int32 hyperparameter updates taken.
    tangent: :class:`HyperTangent` of the current window.
    hidden: LSTM hidden state per hyperparameter, ``{name: (H,)}``.
    cell: LSTM cell state per hyperparameter, ``{name: (H,)}``.
    last_val: float32 validation loss at the previous update (nan at first).
  """
  count: Array
  unit: HParams
  inner_state: OptState
  mu: HParams
  nu: HParams
  hyper_count: Array
  tangent: _online.HyperTangent
  hidden: HParams
  cell: HParams
  last_val: Array


def init_tuner_params(key: Array, hidden_size: int = 16) -> dict:
  """Meta-parameters of the tuner: ``{'lstm': {'w': (F+H, 4H), 'b': (4H,)},
  'out': {'w': (H,), 'b': ()}}``, float32, output weights zero.

  Raises:
    ValueError: ``hidden_size < 1``.
  """
  if int(hidden_size) < 1:
    raise ValueError(f'hidden_size must be positive, got {hidden_size}')
  fan_in = NUM_FEATURES + hidden_size
  w = jax.random.normal(key, (fan_in, 4 * hidden_size)) / math.sqrt(fan_in)
  # Forget gates open at the start (Jozefowicz et al., 2015).
  b = jnp.zeros(4 * hidden_size).at[hidden_size:2 * hidden_size].set(1.0)
  return {'lstm': {'w': w, 'b': b},
          'out': {'w': jnp.zeros(hidden_size), 'b': jnp.zeros([])}}


def _lstm(params, x_NxF, h_NxH, c_NxH):
  gates = jnp.concatenate([x_NxF, h_NxH], -1) @ params['w'] + params['b'][None]
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c_NxH + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c), c


def _features(unit, grads, nu, hyper_count, val, train, last_val, progress):
  """``(n_hp, NUM_FEATURES)`` float32 inputs, names in sorted order."""
  t = hyper_count.astype(jnp.float32)
  gap = jnp.log(val + 1e-8) - jnp.log(train + 1e-8)
  trend = jnp.where(jnp.isfinite(last_val),
                    jnp.log(val + 1e-8) - jnp.log(last_val + 1e-8), 0.0)
  rows = []
  for name in sorted(unit):
    scale = jnp.sqrt(nu[name] / (1 - 0.99 ** t)) + 1e-12
    g = jnp.clip(jnp.where(jnp.isfinite(grads[name]), grads[name], 0.0)
                 / scale, -3.0, 3.0)
    rows.append(jnp.stack([unit[name] - 0.5, g, jnp.clip(gap, -3, 3),
                           jnp.clip(trend, -1, 1) * 10, progress, 1.0]))
  return jnp.nan_to_num(jnp.stack(rows))


def learned_tuner(meta_params: dict, make_optimizer, space, *, train_loss,
                  val_loss, num_steps: int, every: int = 10, window: int = 1,
                  learning_rate: float = 0.05,
                  max_change: float = 0.1) -> _online.OnlineTuner:
  """The online tuner with a meta-learned correction of each step.

  Same interface and arguments as :func:`l2l.hparams.online_tuner`, plus:

  Args:
    meta_params: from :func:`init_tuner_params` or :func:`meta_train_tuner`.
    num_steps: the planned length of training (the progress input).
    max_change: largest correction of a unit coordinate per update.

  Returns:
    An :class:`OnlineTuner` whose ``init`` returns a
    :class:`LearnedTunerState`.

  Raises:
    ValueError: ``num_steps < 1``, or as :func:`online_tuner`.
  """
  init, phases = _parts(
      meta_params, make_optimizer, space, train_loss=train_loss,
      val_loss=val_loss, num_steps=num_steps, every=every, window=window,
      learning_rate=learning_rate, max_change=max_change)
  return _online.OnlineTuner(
      init, _online.switch_step(phases, space, every, window), phases)


def _parts(meta_params, make_optimizer, space, *, train_loss, val_loss,
           num_steps, every, window, learning_rate, max_change):
  """``(init, phases)``: the state's init and the tuner's
  :func:`l2l.hparams.tuner_phases`."""
  if int(num_steps) < 1:
    raise ValueError(f'learned_tuner: num_steps must be positive, got '
                     f'{num_steps}')
  base = _online.online_tuner(make_optimizer, space, train_loss=train_loss,
                              val_loss=val_loss, every=every, window=window,
                              learning_rate=learning_rate)
  hidden_size = meta_params['out']['w'].shape[0]

  def init(params, unit=None):
    s = base.init(params, unit)
    zeros = {n: jnp.zeros(hidden_size) for n in space.names}
    return LearnedTunerState(*s, hidden=zeros, cell=zeros,
                             last_val=jnp.float32(jnp.nan))

  def update(state, grads, val, loss):
    # The window's first step is the one the progress input refers to.
    progress = (state.count - (window - 1)) / num_steps
    return tuned_update(meta_params, state, grads, val, loss, progress,
                        learning_rate=learning_rate, max_change=max_change)

  return init, _online.tuner_phases(
      make_optimizer, space, train_loss=train_loss, val_loss=val_loss,
      every=every, window=window, update=update)


def tuned_update(meta_params, state: LearnedTunerState, grads: HParams,
                 val: Array, train: Array, progress: Array, *,
                 learning_rate: float, max_change: float) -> LearnedTunerState:
  """One hyperparameter update: the nominal normalised step plus the LSTM's
  correction, clipped to ``[0, 1]``."""
  unit, mu, nu, hyper_count = _online.normalised_step(
      state.unit, grads, state.mu, state.nu, state.hyper_count,
      learning_rate=learning_rate)
  names = sorted(unit)
  x = _features(state.unit, grads, nu, hyper_count, val, train,
                state.last_val, progress)
  stack = lambda tree: jnp.stack([tree[n] for n in names])
  h, c = _lstm(meta_params['lstm'], x, stack(state.hidden), stack(state.cell))
  change = max_change * jnp.tanh(h @ meta_params['out']['w']
                                 + meta_params['out']['b'])
  unit = {n: jnp.clip(unit[n] + change[i], 0.0, 1.0)
          for i, n in enumerate(names)}
  return state._replace(
      unit=unit, mu=mu, nu=nu, hyper_count=hyper_count,
      hidden={n: h[i] for i, n in enumerate(names)},
      cell={n: c[i] for i, n in enumerate(names)},
      last_val=jnp.asarray(val, jnp.float32))


def run_rounds(phases: dict, params: Params, state, key: Array, *,
               num_steps: int, every: int, window: int = 1):
  """Trains ``num_steps`` steps as rounds of ``window - 1`` ``carry``
  steps, one ``tuned`` step and ``every - window`` ``plain`` ones, nested
  ``lax.scan`` without ``lax.cond`` (so that under ``vmap`` no step
  computes a hypergradient it throws away).

  Args:
    phases: :class:`OnlineTuner`'s ``phases``.

  Returns:
    ``(params, state, values)``: ``values`` the unit coordinates after each
    round, ``{name: [num_steps // every]}``.

  Raises:
    ValueError: ``num_steps`` is not a positive multiple of ``every``.
  """
  if num_steps < every or num_steps % every:
    raise ValueError(f'num_steps ({num_steps}) must be a positive multiple '
                     f'of every ({every})')

  def body(phase):
    def fn(carry, k):
      params, state, _ = phases[phase](*carry, k)
      return (params, state._replace(count=state.count + 1)), None
    return fn

  def scan(phase, carry, key, length):
    return jax.lax.scan(body(phase), carry,
                        jax.random.split(key, length))[0]

  def round_(carry, k):
    keys = jax.random.split(k, 3)
    carry = scan('carry', carry, keys[0], window - 1)
    carry = body('tuned')(carry, keys[1])[0]
    carry = scan('plain', carry, keys[2], every - window)
    return carry, carry[1].unit

  (params, state), units = jax.lax.scan(
      round_, (params, state), jax.random.split(key, num_steps // every))
  return params, state, units


def tuner_fitness(meta_params, problem, key: Array, *, every: int = 10,
                  window: int = 1, learning_rate: float = 0.05,
                  max_change: float = 0.1, unit: HParams | None = None):
  """Log validation loss (whole split) after training ``problem`` for its
  ``num_steps`` with the learned tuner.

  ``problem`` provides ``space``, ``num_steps``, ``init_params(key)``,
  ``train_loss(params, values, key)``, ``val_loss(params, key)`` and
  ``make_optimizer(values)`` (as ``tasks.regularisation`` problems do);
  the tuner reads ``val_batch_loss(params, key)`` (a validation minibatch)
  where the problem has it, else ``val_loss``. ``unit`` is where the
  hyperparameters start (default: the declared initial values).
  """
  init, phases = _parts(
      meta_params, problem.make_optimizer, problem.space,
      train_loss=problem.train_loss, val_loss=_tuner_val_loss(problem),
      num_steps=problem.num_steps, every=every, window=window,
      learning_rate=learning_rate, max_change=max_change)
  init_key, key = jax.random.split(key)
  params = problem.init_params(init_key)
  params, _, _ = run_rounds(phases, params, init(params, unit), key,
                            num_steps=problem.num_steps, every=every,
                            window=window)
  return jnp.log(problem.val_loss(params, None))


def _tuner_val_loss(problem):
  """The tuner's validation signal: a minibatch (``val_batch_loss``) where
  the problem has one, else ``val_loss``."""
  return getattr(problem, 'val_batch_loss', problem.val_loss)


def _pair_fitness(meta_params, noise, problem, key, unit, every, window):
  """Fitness of ``meta_params + noise`` and ``- noise`` per pair, all runs
  on the same key and start (common random numbers)."""
  fitness = lambda m: tuner_fitness(m, problem, key, every=every,
                                    window=window, unit=unit)
  shifted = lambda sign: jax.vmap(fitness)(jax.tree.map(
      lambda m, n: m[None] + sign * n, meta_params, noise))
  return shifted(1.0), shifted(-1.0)


def meta_train_tuner(problems: Sequence[Any], *, key: Array,
                     num_iterations: int = 30, num_pairs: int = 4,
                     sigma: float = 0.05, learning_rate: float = 0.03,
                     hidden_size: int = 16, every: int = 10,
                     window: int = 1, random_start: bool = False,
                     validation: Sequence[Any] = (), validate_every: int = 4,
                     meta_params: dict | None = None,
                     progress: Callable | None = None,
                     on_validation: Callable | None = None):
  r"""Meta-trains the tuner with antithetic evolution strategies.

  Each iteration draws ``num_pairs`` perturbations :math:`\pm\epsilon_p`
  (:math:`\sigma` ``sigma``), trains every problem to the end of its
  ``num_steps`` with each perturbed tuner (one ``vmap`` per problem), ranks
  the final log validation losses of each problem (centred ranks, Salimans
  et al., 2017) and steps Adam along
  :math:`\sum_{\mathrm{problems}} \sum_p d_p \epsilon_p / (P \sigma)`.
  With ``random_start`` each problem's runs of an iteration start from one
  uniform draw of the unit coordinates (shared by all pairs), so the tuner
  learns to move hyperparameters from anywhere, not from the declared
  values only. With ``validation`` problems the meta-parameters are scored
  on them (declared starts, fixed keys) before the first step, every
  ``validate_every`` steps and after the last, and the best-scoring ones
  are returned (early stopping on held-out problems).

  Args:
    problems: training problems (see :func:`tuner_fitness`), pytrees
      (e.g. ``flax.struct`` dataclasses) passed to one ``jax.jit``: those of
      one structure share one compiled program.
    key: PRNG key.
    num_iterations: ES steps.
    num_pairs: antithetic pairs per step.
    sigma: perturbation scale.
    learning_rate: Adam's step on the meta-parameters.
    hidden_size: LSTM width (ignored when ``meta_params`` is given).
    every: steps between hyperparameter updates; divides every
      ``num_steps``.
    window: steps the hypergradient looks ahead (:func:`online_tuner`).
    random_start: start each iteration's runs at random hyperparameters.
    validation: held-out problems for choosing among the iterates.
    validate_every: ES steps between validations, at least 1.
    meta_params: starting point (default :func:`init_tuner_params`).
    progress: called as ``progress(iteration, mean_fitness)`` after each
      step.
    on_validation: called as ``on_validation(iteration, score)`` after each
      validation; ``score`` is the mean final log validation loss, and
      ``iteration`` the number of ES steps taken.

  Returns:
    ``(meta_params, log)``: ``log`` lists the mean fitness (log validation
    loss over the perturbed runs) per iteration; ``meta_params`` are the
    last iterate's, or with ``validation`` the best-validated one's.

  Raises:
    ValueError: no problems, a ``num_steps`` not a multiple of ``every``,
      or ``validate_every < 1``.
  """
  if not problems:
    raise ValueError('meta_train_tuner: at least one problem is needed')
  if int(validate_every) < 1:
    raise ValueError(f'meta_train_tuner: validate_every must be at least 1, '
                     f'got {validate_every}')
  for problem in (*problems, *validation):
    if problem.num_steps % every:
      raise ValueError(f'meta_train_tuner: num_steps {problem.num_steps} is '
                       f'not a multiple of every ({every})')
  init_key, key = jax.random.split(key)
  if meta_params is None:
    meta_params = init_tuner_params(init_key, hidden_size)
  optimizer = optax.adam(learning_rate)
  opt_state = optimizer.init(meta_params)
  fitness = jax.jit(_pair_fitness, static_argnames=('every', 'window'))
  validate = _validator(validation, key, every, window, on_validation)
  best = validate(0, meta_params, None)
  log = []
  for iteration in range(num_iterations):
    key, noise_key = jax.random.split(key)
    noise = _meta._antithetic_noise(meta_params, noise_key, num_pairs, sigma,
                                    None)  # pylint: disable=protected-access
    grads = jax.tree.map(jnp.zeros_like, meta_params)
    scores = []
    for i, problem in enumerate(problems):
      run_key, start_key = jax.random.split(jax.random.fold_in(key, i))
      unit = (jax.tree.map(lambda u: u[0], problem.space.sample(start_key, 1))
              if random_start else problem.space.init())
      plus, minus = fitness(meta_params, noise, problem, run_key, unit, every,
                            window)
      d = _meta._centred_rank_difference(plus, minus)  # pylint: disable=protected-access
      d = jnp.where(jnp.isfinite(d), d, 0.0)
      grads = jax.tree.map(
          lambda g, n: g + jnp.tensordot(d, n, 1) / (num_pairs * sigma),
          grads, noise)
      scores.append(float(jnp.mean(jnp.concatenate([plus, minus]))))
    updates, opt_state = optimizer.update(grads, opt_state, meta_params)
    meta_params = optax.apply_updates(meta_params, updates)
    log.append(float(np.mean(scores)))
    if progress is not None:
      progress(iteration, log[-1])
    if (iteration + 1) % validate_every == 0 or iteration + 1 == num_iterations:
      best = validate(iteration + 1, meta_params, best)
  return (meta_params if best is None else best[1]), log


def _validator(problems, key, every, window, callback):
  """``validate(iteration, meta_params, best) -> best``: ``best`` is
  ``(score, meta_params)`` of the lowest mean final log validation loss on
  ``problems`` so far (``None`` without problems)."""
  fitness = jax.jit(tuner_fitness, static_argnames=('every', 'window'))
  key = jax.random.fold_in(key, 10**6)

  def validate(iteration, meta_params, best):
    if not problems:
      return None
    score = float(np.mean([fitness(meta_params, p, jax.random.fold_in(key, i),
                                   every=every, window=window)
                           for i, p in enumerate(problems)]))
    if callback is not None:
      callback(iteration, score)
    if best is None or not score >= best[0]:
      return score, meta_params
    return best
  return validate
