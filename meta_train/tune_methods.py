"""The tuning methods compared by ``python -m meta_train.tune``, one problem
and seed at a time.

Every method returns a record ``{'val_loss', 'test_loss', 'test_accuracy',
'cost_runs', 'trajectory': {'steps': [...], NAME: [...]}}``. ``val_loss`` is
the chosen model's loss on the whole validation split (for the trial-based
methods, the best trial's: the statistic they select on); ``test_loss`` and
``test_accuracy`` are measured on the test split, which no method sees.
``cost_runs`` is the programs' floating-point operations (XLA's cost
analysis of the lowered steps) divided by those of one training run at fixed
hyperparameters followed by one validation pass.
"""

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from l2l import hparams

#: All methods, in the order they are reported.
METHODS = ('online', 'learned', 'pbt', 'random', 'optuna_tpe', 'grid')
POPULATION = {'pbt': 8, 'random': 16, 'grid': 16}
TPE_TRIALS = 16
#: Steps between hyperparameter updates and steps each hypergradient looks
#: ahead, of the online and the learned tuner (chosen on seed 3, see
#: docs/tuning.md).
HYPER_EVERY = 10
WINDOW = 2
LEARNING_RATE = 0.05


def _keys(seed: int):
  """(init, train) keys of a seed: every single-run method starts from the
  same initial params."""
  key = jax.random.key(seed)
  return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)


def _final(problem, params) -> jax.Array:
  test_loss, accuracy = problem.test_metrics(params)
  return jnp.stack([problem.val_loss(params), test_loss, accuracy])


def _fixed_steps(problem, params, unit, key):
  inner = problem.make_optimizer(problem.space.from_unit(unit)).init(params)
  def body(carry, k):
    p, s, _ = hparams.train_step(
        *carry, unit, k, space=problem.space,
        make_optimizer=problem.make_optimizer, train_loss=problem.train_loss)
    return (p, s), None
  return jax.lax.scan(body, (params, inner),
                      jax.random.split(key, problem.num_steps))[0][0]


@jax.jit
def fixed_run(problem, unit, init_key, key) -> jax.Array:
  """``[val_loss, test_loss, test_accuracy]`` of one run at fixed ``unit``."""
  params = _fixed_steps(problem, problem.init_params(init_key), unit, key)
  return _final(problem, params)


def online_tuner(problem, every: int = HYPER_EVERY, window: int = WINDOW,
                 learning_rate: float = LEARNING_RATE,
                 tangent_decay: float = 0.0):
  """The problem's AdamW wrapped in :func:`l2l.hparams.online_tuner`, its
  hypergradient taken on validation minibatches."""
  return hparams.online_tuner(
      problem.make_optimizer, problem.space, train_loss=problem.train_loss,
      val_loss=problem.val_batch_loss, every=every, window=window,
      learning_rate=learning_rate, tangent_decay=tangent_decay)


@functools.partial(jax.jit, static_argnames=('every', 'window',
                                             'learning_rate', 'tangent_decay'))
def online_run(problem, init_key, key, every: int = HYPER_EVERY,
               window: int = WINDOW, learning_rate: float = LEARNING_RATE,
               tangent_decay: float = 0.0):
  """Final ``[val, test loss, accuracy]`` and the values at every step."""
  tuner = online_tuner(problem, every, window, learning_rate, tangent_decay)
  params = problem.init_params(init_key)
  params, _, metrics = hparams.run(tuner.step, params, tuner.init(params),
                                   key, problem.num_steps)
  return _final(problem, params), metrics['values']


@functools.partial(jax.jit, static_argnames=('method', 'num_members'))
def population_run(problem, key, method: str, num_members: int):
  """:func:`l2l.hparams.search` and the best member's final figures."""
  state, history = hparams.search(
      method, problem.make_optimizer, problem.space,
      train_loss=problem.train_loss, val_loss=problem.val_loss,
      init_params=problem.init_params, key=key, num_members=num_members,
      num_steps=problem.num_steps, every=_every(problem))
  best = hparams.best_member(state)
  params = jax.tree.map(lambda x: x[best], state.params)
  return _final(problem, params), history, best


def _every(problem) -> int:
  """Scoring interval of population methods: ten rounds per run."""
  return max(1, problem.num_steps // 10)


# ------------------------------------------------------------------- costs


def _flops(fn, *args) -> float:
  # The lowered program's count: no backend compilation needed.
  analysis = jax.jit(fn).lower(*args).cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis['flops'])


@functools.lru_cache(maxsize=16)
def _unit_costs(problem) -> dict:
  """Flops of one training step and one validation pass (whole split and
  one batch) of ``problem``."""
  params = problem.init_params(jax.random.key(0))
  unit = problem.space.init()
  inner = problem.make_optimizer(problem.space.from_unit(unit)).init(params)
  key = jax.random.key(0)
  fns = dict(space=problem.space, make_optimizer=problem.make_optimizer,
             train_loss=problem.train_loss)
  step = lambda p, s, u, k: hparams.train_step(p, s, u, k, **fns)
  return {'step': _flops(step, params, inner, unit, key),
          'val': _flops(problem.val_loss, params),
          'val_batch': _flops(problem.val_batch_loss, params, key)}


def _run_flops(problem) -> float:
  c = _unit_costs(_hashable(problem))
  return problem.num_steps * c['step'] + c['val']


def _hashable(problem):
  """The problem's structure (static fields) as a cache key, with its data."""
  return _ByStructure(problem)


class _ByStructure:
  """Hashes a problem by its static fields: costs depend on shapes only."""

  def __init__(self, problem):
    self.problem = problem
    leaves, treedef = jax.tree.flatten(problem)
    self.key = (treedef, tuple(x.shape for x in leaves))

  def __hash__(self):
    return hash(self.key)

  def __eq__(self, other):
    return self.key == other.key

  def __getattr__(self, name):
    return getattr(self.problem, name)


def tuner_cost(problem, tuner, every: int = HYPER_EVERY,
               window: int = WINDOW) -> float:
  """Cost in runs of an online or learned tuner: the flops of each of its
  phases (:class:`l2l.hparams.OnlineTuner`'s ``phases``: the training step,
  the tangent, the validation minibatch, the hyperparameter update and any
  network) times the number of steps taken in it, plus one validation pass
  at the end."""
  params = problem.init_params(jax.random.key(0))
  state, key = tuner.init(params), jax.random.key(0)
  phase = np.arange(problem.num_steps) % every
  counts = {'tuned': int(np.sum(phase == window - 1)),
            'carry': int(np.sum(phase < window - 1)),
            'plain': int(np.sum(phase >= window))}
  total = sum(n * _flops(tuner.phases[name], params, state, key)
              for name, n in counts.items() if n)
  c = _unit_costs(_hashable(problem))
  return (total + c['val']) / _run_flops(problem)


def population_cost(problem, size: int) -> float:
  """Cost in runs of ``size`` members scored ten times each."""
  c = _unit_costs(_hashable(problem))
  rounds = problem.num_steps // _every(problem)
  total = size * (problem.num_steps * c['step'] + rounds * c['val'])
  return total / _run_flops(problem)

# ------------------------------------------------------------------ methods


def _record(figures, cost: float, trajectory: dict) -> dict:
  val, test, accuracy = (float(x) for x in np.asarray(figures))
  return {'val_loss': val, 'test_loss': test, 'test_accuracy': accuracy,
          'cost_runs': float(cost), 'trajectory': trajectory}


def _thin(steps, values: dict, points: int = 100) -> dict:
  index = np.unique(np.linspace(0, len(steps) - 1, points).astype(int))
  out = {'steps': [int(steps[i]) for i in index]}
  out.update({k: [float(v) for v in np.asarray(x)[index]]
              for k, x in values.items()})
  return out


def run_default(problem, seed: int) -> dict:
  """One run at the declared initial values (a reference, not a tuner)."""
  init_key, key = _keys(seed)
  unit = problem.space.init()
  values = {k: float(v) for k, v in problem.space.from_unit(unit).items()}
  return _record(fixed_run(problem, unit, init_key, key), 1.0,
                 {'steps': [0, problem.num_steps],
                  **{k: [v, v] for k, v in values.items()}})


def run_online(problem, seed: int) -> dict:
  """The online hypergradient tuner, one run."""
  init_key, key = _keys(seed)
  figures, values = online_run(problem, init_key, key)
  return _record(figures, tuner_cost(problem, online_tuner(problem)),
                 _thin(np.arange(1, problem.num_steps + 1), values))


def run_population(problem, seed: int, method: str) -> dict:
  """PBT (8 members), random search (16) or the best of a 16-point grid."""
  figures, history, best = population_run(
      problem, jax.random.key(seed), method, POPULATION[method])
  size = history['score'].shape[1]
  return _record(figures, population_cost(problem, size),
                 _lineage(problem, history, int(best)))


def _lineage(problem, history, best: int) -> dict:
  """Hyperparameters the best member's line trained with, round by round
  (under PBT a schedule: before each copy, the donor's)."""
  unit = {k: np.asarray(v) for k, v in history['unit'].items()}
  origin = np.asarray(history['origin'])
  rounds, every = origin.shape[0], _every(problem)
  members = [best] * rounds
  for r in range(rounds - 2, -1, -1):
    members[r] = origin[r][members[r + 1]]
  values = problem.space.from_unit(
      {k: jnp.asarray(u[np.arange(rounds), members]) for k, u in unit.items()})
  return {'steps': [r * every for r in range(rounds)],
          **{k: [float(x) for x in np.asarray(v)] for k, v in values.items()}}


def require_optuna():
  """Returns the optuna module.

  Raises:
    ImportError: optuna is not installed; the message names the extra.
  """
  try:
    import optuna  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError("the 'optuna_tpe' method needs Optuna, the 'tune' extra:"
                      " pip install 'l2l[tune]' (or pip install 'optuna>=4')"
                      ) from error
  return optuna


def run_optuna(problem, seed: int) -> dict:
  """Optuna's TPE sampler, 16 trials through its ask/tell interface.

  Raises:
    ImportError: optuna is not installed; the message names the extra.
  """
  optuna = require_optuna()
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.create_study(
      sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=8))
  init_key, key = _keys(seed)
  best = None
  for _ in range(TPE_TRIALS):
    trial = study.ask()
    unit = {n: jnp.float32(trial.suggest_float(n, 0.0, 1.0))
            for n in problem.space.names}
    figures = np.asarray(fixed_run(problem, unit, init_key, key))
    study.tell(trial, float(figures[0]) if np.isfinite(figures[0])
               else float('inf'))
    if best is None or not figures[0] >= best[0][0]:
      best = (figures, unit)
  values = problem.space.from_unit(best[1])
  trajectory = {'steps': [0, problem.num_steps],
                **{k: [float(v)] * 2 for k, v in values.items()}}
  return _record(best[0], TPE_TRIALS, trajectory)

# ------------------------------------------------------------ learned tuner

#: ES iterations of the learned tuner's meta-training, per suite size; its
#: problems train for their 'full' length (200 steps) in both.
META_ITERATIONS = {'small': 24, 'full': 60}
META_SEED = 100


def learned_tuner_params(path: str, *, size: str = 'small', train: bool = True,
                         progress: bool = True) -> dict:
  """The learned tuner's meta-parameters: read from ``path`` if it exists,
  else (``train``) meta-trained on ``tasks.regularisation.META_TRAIN`` with
  :func:`l2l.hparams.meta_train_tuner` (random hyperparameter starts; the
  iterate best on ``META_VALID`` is kept) and saved there atomically.

  Raises:
    FileNotFoundError: ``path`` is missing and ``train`` is false.
  """
  import l2l  # pylint: disable=g-import-not-at-top
  from tasks import regularisation  # pylint: disable=g-import-not-at-top
  like = hparams.init_tuner_params(jax.random.key(0))
  if os.path.exists(path):
    return jax.tree.map(jnp.asarray, l2l.load_checkpoint(path, like)[0])
  if not train:
    raise FileNotFoundError(f'no learned tuner at {path}')
  make = lambda names: [regularisation.make_problem(n, size='full',
                                                    seed=META_SEED)
                         for n in names]
  bar = tqdm.tqdm(total=META_ITERATIONS[size], unit='ES step',
                  desc='meta-training the tuner', disable=not progress)
  validated = []
  def report(iteration, fitness):
    del iteration
    bar.update()
    bar.set_postfix(log_val=f'{fitness:.3f}')
  meta_params, log = hparams.meta_train_tuner(
      make(regularisation.META_TRAIN), key=jax.random.key(META_SEED),
      num_iterations=META_ITERATIONS[size], every=HYPER_EVERY, window=WINDOW,
      random_start=True, validation=make(regularisation.META_VALID),
      progress=report, on_validation=lambda i, s: validated.append((i, s)))
  bar.close()
  l2l.save_checkpoint(path, meta_params, {
      'kind': 'hparams_tuner', 'problems': list(regularisation.META_TRAIN),
      'validation': list(regularisation.META_VALID), 'size': size,
      'iterations': META_ITERATIONS[size], 'fitness_log': log,
      'validation_log': validated})
  return meta_params


def learned_tuner(meta_params, problem, every: int = HYPER_EVERY,
                  window: int = WINDOW):
  """The problem's AdamW wrapped in :func:`l2l.hparams.learned_tuner`."""
  return hparams.learned_tuner(
      meta_params, problem.make_optimizer, problem.space,
      train_loss=problem.train_loss, val_loss=problem.val_batch_loss,
      num_steps=problem.num_steps, every=every, window=window)


@functools.partial(jax.jit, static_argnames=('every', 'window'))
def learned_run(meta_params, problem, init_key, key, every: int = HYPER_EVERY,
                window: int = WINDOW):
  """Final figures and values at every step of the learned tuner."""
  tuner = learned_tuner(meta_params, problem, every, window)
  params = problem.init_params(init_key)
  params, _, metrics = hparams.run(tuner.step, params, tuner.init(params),
                                   key, problem.num_steps)
  return _final(problem, params), metrics['values']


def run_learned(problem, seed: int, meta_params) -> dict:
  """The meta-learned tuner, one run; its network's flops are counted."""
  init_key, key = _keys(seed)
  figures, values = learned_run(meta_params, problem, init_key, key)
  return _record(figures, tuner_cost(problem, learned_tuner(meta_params,
                                                            problem)),
                 _thin(np.arange(1, problem.num_steps + 1), values))
