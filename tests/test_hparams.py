"""l2l.hparams: declarations and their errors, the one-step hypergradient
against finite differences and the ridge regression optimum, population-based
training's exploit/explore bookkeeping, random and grid search."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

import l2l
from l2l import hparams

H = hparams.Hyperparameter

# ---------------------------------------------------------------- declarations

BAD_DECLARATIONS = [
    (('wd', 1e-3, 1e-1, 1e-4, 'log'), ValueError, "'wd'.*below the upper"),
    (('wd', 1.0, 1e-4, 1e-1, 'log'), ValueError, "'wd'.*outside its bounds"),
    (('wd', 1e-3, 0.0, 1e-1, 'log'), ValueError, "'wd'.*positive bounds"),
    (('wd', 1e-3, -1.0, 1e-1, 'log'), ValueError, "'wd'.*positive bounds"),
    (('p', 0.5, 0.0, 0.9, 'logit'), ValueError, "'p'.*inside \\(0, 1\\)"),
    (('p', 0.5, 0.1, 1.0, 'logit'), ValueError, "'p'.*inside \\(0, 1\\)"),
    (('p', 0.5, 0.1, 0.9, 'sqrt'), ValueError, "'p'.*unknown transform"),
    (('p', 0.5, 0.5, 0.5), ValueError, "'p'.*below the upper"),
    (('p', float('nan'), 0.0, 1.0), ValueError, "'p'.*finite"),
    (('p', '0.5', 0.0, 1.0), TypeError, "'p'.*must be a number"),
    (('not a name', 0.5, 0.0, 1.0), TypeError, 'identifier'),
]


@pytest.mark.parametrize('fields,error,match', BAD_DECLARATIONS)
def test_invalid_declaration_raises_naming_it(fields, error, match):
  with pytest.raises(error, match=match):
    hparams.declare(fields)


@pytest.mark.parametrize('args,match', [
    ((), 'at least one'),
    ((('a', 0.5, 0.0, 1.0), ('a', 0.2, 0.0, 1.0)), "'a' is declared twice"),
    (('a',), 'expected a Hyperparameter'),
])
def test_invalid_space_raises(args, match):
  with pytest.raises((ValueError, TypeError), match=match):
    hparams.declare(*args)


SPACE = hparams.declare(H('wd', 1e-3, 1e-5, 1e-1, 'log'),
                        H('drop', 0.2, 0.05, 0.95, 'logit'),
                        ('smooth', 0.1, 0.0, 0.5))


@pytest.mark.parametrize('name,value,unit', [
    ('wd', 1e-3, 0.5), ('wd', 1e-5, 0.0), ('wd', 1e-1, 1.0),
    ('drop', 0.5, 0.5), ('drop', 0.05, 0.0),
    ('smooth', 0.1, 0.2), ('smooth', 0.5, 1.0)])
def test_unit_coordinates_follow_the_transform(name, value, unit):
  values = {'wd': 1e-3, 'drop': 0.2, 'smooth': 0.1} | {name: value}
  u = SPACE.to_unit(values)
  assert u[name].dtype == jnp.float32
  np.testing.assert_allclose(u[name], unit, atol=1e-6)
  np.testing.assert_allclose(SPACE.from_unit(u)[name], value, rtol=1e-5,
                             atol=1e-7)


def test_from_unit_clips_to_bounds_and_checks_keys():
  values = SPACE.from_unit({'wd': 2.0, 'drop': -1.0, 'smooth': 0.5})
  np.testing.assert_allclose([values['wd'], values['drop'], values['smooth']],
                             [1e-1, 0.05, 0.25], rtol=1e-5)
  with pytest.raises(ValueError, match='expected a dict with keys'):
    SPACE.from_unit({'wd': 0.5})


@pytest.mark.parametrize('num,shape', [(16, (3, 2, 2)), (8, (2, 2, 2)),
                                       (27, (3, 3, 3))])
def test_grid_is_factorial_within_budget(num, shape):
  grid = SPACE.grid(num)
  assert {k: v.shape for k, v in grid.items()} == {
      k: (int(np.prod(shape)),) for k in SPACE.names}
  for name, count in zip(SPACE.names, shape):
    np.testing.assert_allclose(np.unique(grid[name]),
                               np.linspace(0, 1, count), atol=1e-6)
  with pytest.raises(ValueError, match='too few'):
    SPACE.grid(7)


def test_sample_is_uniform_in_unit_coordinates():
  sample = SPACE.sample(jax.random.key(0), 4000)
  for name in SPACE.names:
    assert sample[name].shape == (4000,)
    assert 0.0 <= float(sample[name].min()) and float(sample[name].max()) <= 1
    np.testing.assert_allclose(float(sample[name].mean()), 0.5, atol=0.02)

# ----------------------------------------------------------- ridge regression


def _ridge(seed, num=64, dim=8, noise=4.0):
  """Train and validation sets with orthogonal designs (X^T X / n = I), so
  the ridge solution is b / (1 + wd) and the best weight decay is
  |b|^2 / (b . b_val) - 1, with b = X^T y / n."""
  rng = np.random.default_rng(seed)
  def design():
    q, _ = np.linalg.qr(rng.normal(size=(num, dim)))
    return np.sqrt(num) * q
  w = rng.normal(size=dim)
  x, x_val = design(), design()
  y = x @ w + noise * rng.normal(size=num)
  y_val = x_val @ w + noise * rng.normal(size=num)
  b, b_val = x.T @ y / num, x_val.T @ y_val / num
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  return (f32(x), f32(y), f32(x_val), f32(y_val)), b @ b / (b @ b_val) - 1


RIDGE, BEST_WD = _ridge(0)
RIDGE_SPACE = hparams.declare(H('weight_decay', 1e-2, 1e-3, 10.0, 'log'),
                              H('l2', 1e-3, 1e-4, 1.0, 'log'))
OPTIMIZERS = {
    'sgd': lambda h: optax.chain(optax.add_decayed_weights(h['weight_decay']),
                                 optax.sgd(0.5)),
    'adam': lambda h: optax.adamw(0.05, weight_decay=h['weight_decay']),
    'l2l': lambda h: optax.chain(optax.add_decayed_weights(h['weight_decay']),
                                 l2l.lstm_optimizer(learning_rate=0.1)),
}


def _train_loss(params, values, key):
  del key
  x, y, _, _ = RIDGE
  return (0.5 * jnp.mean((x @ params - y) ** 2)
          + 0.5 * values['l2'] * jnp.sum(params ** 2))


def _val_loss(params, key):
  del key
  _, _, x_val, y_val = RIDGE
  return 0.5 * jnp.mean((x_val @ params - y_val) ** 2)


@pytest.mark.parametrize('optimizer', sorted(OPTIMIZERS))
def test_hypergradient_matches_finite_differences(optimizer):
  make = OPTIMIZERS[optimizer]
  fns = dict(space=RIDGE_SPACE, make_optimizer=make, train_loss=_train_loss,
             val_loss=_val_loss)
  params = 0.3 * jnp.ones(8)
  unit = {'weight_decay': jnp.float32(0.6), 'l2': jnp.float32(0.85)}
  inner = make(RIDGE_SPACE.from_unit(unit)).init(params)
  # Two steps first, so the optimizer state is not at its start.
  step = jax.jit(functools.partial(hparams.train_step, space=RIDGE_SPACE,
                                   make_optimizer=make,
                                   train_loss=_train_loss))
  for k in range(2):
    params, inner, _ = step(params, inner, unit, jax.random.key(k))
  key = jax.random.key(5)
  grads, (new_params, _, _) = jax.jit(
      functools.partial(hparams.hypergradient, **fns))(unit, params, inner,
                                                        key)
  loss = jax.jit(lambda u: hparams.lookahead_loss(u, params, inner, key,
                                                 **fns)[0])
  _assert_central_differences(grads, loss, unit)
  assert new_params.shape == (8,) and new_params.dtype == jnp.float32


def _assert_central_differences(grads, loss, unit, eps=1e-2):
  """Each hypergradient is nonzero and matches central differences of
  ``loss`` in that unit coordinate."""
  for name in RIDGE_SPACE.names:
    shift = lambda s: unit | {name: unit[name] + s}
    finite = (loss(shift(eps)) - loss(shift(-eps))) / (2 * eps)
    assert abs(float(grads[name])) > 1e-4, name
    np.testing.assert_allclose(grads[name], finite, rtol=3e-2, atol=1e-5,
                               err_msg=name)


def _window_loss(unit, params, inner, keys, make):
  """Validation loss after ``len(keys)`` training steps at fixed ``unit``."""
  step = functools.partial(hparams.train_step, space=RIDGE_SPACE,
                           make_optimizer=make, train_loss=_train_loss)
  def body(carry, k):
    return step(*carry, unit, k)[:2], None
  return _val_loss(jax.lax.scan(body, (params, inner), keys)[0][0], None)


@pytest.mark.parametrize('optimizer,window', [('adam', 4)])
def test_window_hypergradient_matches_finite_differences(optimizer, window):
  """Forward-mode tangents carried over a window give the derivative of the
  validation loss ``window`` steps later (both hyperparameters: weight
  decay through the update, the L2 term through the training gradient)."""
  make = OPTIMIZERS[optimizer]
  fns = dict(space=RIDGE_SPACE, make_optimizer=make, train_loss=_train_loss)
  params = 0.3 * jnp.ones(8)
  unit = {'weight_decay': jnp.float32(0.6), 'l2': jnp.float32(0.85)}
  inner = make(RIDGE_SPACE.from_unit(unit)).init(params)
  keys = jax.random.split(jax.random.key(2), window)

  @jax.jit
  def forward(unit, params, inner):
    def body(carry, k):
      p, s, t = carry
      p, s, t, _ = hparams.tangent_step(p, s, t, unit, k, **fns)
      return (p, s, t), None
    tangent = hparams.init_tangent(params, inner, 2)
    p, _, tangent = jax.lax.scan(body, (params, inner, tangent), keys)[0]
    return hparams.tangent_hypergradient(p, tangent, _val_loss, keys[0],
                                         RIDGE_SPACE.names), tangent
  (grads, val), tangent = forward(unit, params, inner)
  loss = jax.jit(lambda u: _window_loss(u, params, inner, keys, make))
  np.testing.assert_allclose(val, loss(unit), rtol=1e-5)
  assert tangent.params.shape == (2, 8) and tangent.params.dtype == jnp.float32
  _assert_central_differences(grads, loss, unit)


def test_window_of_one_is_the_one_step_hypergradient():
  make = OPTIMIZERS['adam']
  fns = dict(space=RIDGE_SPACE, make_optimizer=make, train_loss=_train_loss)
  params, key = 0.3 * jnp.ones(8), jax.random.key(4)
  unit = {'weight_decay': jnp.float32(0.4), 'l2': jnp.float32(0.7)}
  inner = make(RIDGE_SPACE.from_unit(unit)).init(params)
  one_step, _ = jax.jit(functools.partial(
      hparams.hypergradient, val_loss=_val_loss, **fns))(unit, params, inner,
                                                         key)
  @jax.jit
  def windowed(unit, params, inner):
    train_key, val_key = jax.random.split(key)
    p, _, tangent, _ = hparams.tangent_step(
        params, inner, hparams.init_tangent(params, inner, 2), unit,
        train_key, **fns)
    return hparams.tangent_hypergradient(p, tangent, _val_loss, val_key,
                                         RIDGE_SPACE.names)[0]
  windowed = windowed(unit, params, inner)
  for name in RIDGE_SPACE.names:
    np.testing.assert_allclose(windowed[name], one_step[name], rtol=1e-5)


@pytest.fixture(scope='module')
def ridge_run():
  space = hparams.declare(H('weight_decay', 1e-2, 1e-3, 10.0, 'log'))
  make = OPTIMIZERS['sgd']
  tuner = hparams.online_tuner(
      make, space, every=1, learning_rate=0.02, val_loss=_val_loss,
      train_loss=lambda p, h, k: _train_loss(p, h | {'l2': 0.0}, k))
  params = jnp.zeros(8)
  run = jax.jit(lambda p, s, k: hparams.run(tuner.step, p, s, k, 600))
  return run(params, tuner.init(params), jax.random.key(0))


def test_online_tuner_finds_the_best_ridge_weight_decay(ridge_run):
  assert 0.1 < BEST_WD < 5.0  # inside the bounds, away from them
  _, state, metrics = ridge_run
  trajectory = metrics['values']['weight_decay']
  assert trajectory.shape == (600,) and trajectory.dtype == jnp.float32
  np.testing.assert_allclose(trajectory[0], 1e-2, rtol=1e-5)
  np.testing.assert_allclose(trajectory[-100:].mean(), BEST_WD, rtol=0.02)
  assert int(state.count) == 600 and int(state.hyper_count) == 600


def test_online_tuner_updates_every_k_steps():
  space = hparams.declare(H('weight_decay', 1e-2, 1e-3, 10.0, 'log'))
  tuner = hparams.online_tuner(
      OPTIMIZERS['sgd'], space, every=4, val_loss=_val_loss,
      train_loss=lambda p, h, k: _train_loss(p, h | {'l2': 0.0}, k))
  # Not at 0, where weight decay has no hypergradient and step 0's update
  # would change nothing.
  params = jnp.full(8, 0.5)
  _, state, metrics = jax.jit(
      lambda p, s, k: hparams.run(tuner.step, p, s, k, 10))(
          params, tuner.init(params), jax.random.key(0))
  values = np.asarray(metrics['values']['weight_decay'])
  # Each step records the value after its update: steps 0, 4 and 8 update.
  start = np.float32(1e-2)  # the declared initial value, in float32
  changed = np.flatnonzero(np.diff(np.concatenate([[start], values])))
  np.testing.assert_array_equal(changed, [0, 4, 8])
  assert int(state.hyper_count) == 3


def test_windowed_tuner_updates_at_the_end_of_each_window():
  space = hparams.declare(H('weight_decay', 1e-2, 1e-3, 10.0, 'log'))
  tuner = hparams.online_tuner(
      OPTIMIZERS['sgd'], space, every=5, window=3, val_loss=_val_loss,
      train_loss=lambda p, h, k: _train_loss(p, h | {'l2': 0.0}, k))
  params = jnp.zeros(8)
  _, state, metrics = jax.jit(
      lambda p, s, k: hparams.run(tuner.step, p, s, k, 12))(
          params, tuner.init(params), jax.random.key(0))
  values = np.asarray(metrics['values']['weight_decay'])
  np.testing.assert_allclose(values[:2], 1e-2, rtol=1e-5)
  # Steps 2 and 7 end the windows [0, 3) and [5, 8).
  np.testing.assert_array_equal(np.flatnonzero(np.diff(values)) + 1, [2, 7])
  assert int(state.hyper_count) == 2 and int(state.count) == 12
  assert set(tuner.phases) == {'plain', 'carry', 'tuned'}


def test_tangent_decay_one_carries_the_tangent_across_windows():
  """With ``tangent_decay=1`` (and hyperparameters held still by a tiny
  step) the tangent after two windows of two steps is the tangent of four
  steps from zero; with the default truncation it is that of the last
  two."""
  fns = dict(space=RIDGE_SPACE, make_optimizer=OPTIMIZERS['sgd'],
             train_loss=_train_loss)
  params, keys = jnp.zeros(8), jax.random.split(jax.random.key(0), 4)

  @functools.partial(jax.jit, static_argnums=0)
  def tuned(decay):
    tuner = hparams.online_tuner(val_loss=_val_loss, every=2, window=2,
                                 learning_rate=1e-9, tangent_decay=decay,
                                 **fns)
    def body(carry, k):
      return tuner.step(*carry, k)[:2], None
    return jax.lax.scan(body, (params, tuner.init(params)), keys)[0][1]

  @functools.partial(jax.jit, static_argnums=0)
  def fresh(first):
    unit = RIDGE_SPACE.init()
    p, s = params, OPTIMIZERS['sgd'](RIDGE_SPACE.from_unit(unit)).init(params)
    t = hparams.init_tangent(p, s, 2)
    for i in range(len(keys)):
      t = t if i != first else jax.tree.map(jnp.zeros_like, t)
      p, s, t, _ = hparams.tangent_step(p, s, t, unit,
                                        jax.random.split(keys[i])[0], **fns)
    return t.params
  whole, last_two = fresh(0), fresh(2)
  assert float(jnp.max(jnp.abs(whole - last_two))) > 1e-3
  np.testing.assert_allclose(tuned(1.0).tangent.params, whole, rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(tuned(0.0).tangent.params, last_two,
                             rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(every=0), ValueError, 'every'),
    (dict(every=4, window=5), ValueError, 'window'),
    (dict(window=0), ValueError, 'window'),
    (dict(tangent_decay=1.5), ValueError, 'tangent_decay'),
    (dict(learning_rate=0.0), ValueError, 'learning_rate'),
    (dict(space={'wd': 1}), TypeError, 'declare'),
])
def test_online_tuner_rejects_bad_options(kwargs, error, match):
  args = dict(space=RIDGE_SPACE, train_loss=_train_loss, val_loss=_val_loss)
  with pytest.raises(error, match=match):
    hparams.online_tuner(OPTIMIZERS['sgd'], **(args | kwargs))

# ------------------------------------------------- population-based training


def _population(scores):
  num = len(scores)
  return hparams.PopulationState(
      params={'w': jnp.outer(jnp.arange(num, dtype=jnp.float32), jnp.ones(3))},
      inner_state=(jnp.arange(num) * 10,),
      unit={'a': jnp.full(num, 0.5), 'b': jnp.linspace(0.2, 0.8, num)},
      score=jnp.asarray(scores, jnp.float32), origin=jnp.arange(num))


@pytest.mark.parametrize('scores,fraction,losers,winners', [
    ([5., 1., 3., 2., 8., 0.5, 4., 7.], 0.25, [4, 7], [5, 1]),
    ([1., jnp.nan, 3., 2.], 0.25, [1], [0]),
    ([4., 3., 2., 1., 0., 5.], 0.5, [5, 0, 1], [4, 3, 2]),
])
def test_exploit_copies_better_members_and_explore_perturbs(
    scores, fraction, losers, winners):
  state = _population(scores)
  new = jax.jit(functools.partial(hparams.exploit_explore, fraction=fraction,
                                  perturb=0.1))(state, jax.random.key(1))
  origin = np.asarray(new.origin)
  for i in range(len(scores)):
    if i in losers:
      assert origin[i] in winners, (i, origin)
    else:
      assert origin[i] == i
    j = origin[i]
    np.testing.assert_array_equal(new.params['w'][i], state.params['w'][j])
    assert int(new.inner_state[0][i]) == 10 * j
    for name in ('a', 'b'):
      moved = float(new.unit[name][i]) - float(state.unit[name][j])
      expected = [0.1, -0.1] if i in losers else [0.0]
      assert min(abs(moved - e) for e in expected) < 1e-6, (name, i, moved)


def _search(method, num_members, every=10):
  space = hparams.declare(H('weight_decay', 1e-2, 1e-3, 10.0, 'log'))
  return jax.jit(functools.partial(
      hparams.search, method, OPTIMIZERS['sgd'], space, val_loss=_val_loss,
      train_loss=lambda p, h, k: _train_loss(p, h | {'l2': 0.0}, k),
      init_params=lambda k: jnp.zeros(8), num_members=num_members,
      num_steps=40, every=every))(key=jax.random.key(0))


@pytest.mark.parametrize('method,num_members,size', [
    ('pbt', 8, 8), ('random', 6, 6), ('grid', 5, 5)])
def test_search_methods_share_one_entry_point(method, num_members, size):
  state, history = _search(method, num_members)
  assert history['score'].shape == (4, size)
  assert history['unit']['weight_decay'].shape == (4, size)
  assert state.params.shape == (size, 8)
  best = int(hparams.best_member(state))
  assert float(state.score[best]) == float(jnp.min(state.score))
  origin = np.asarray(history['origin'])
  if method == 'pbt':
    # Exploit after every round but the last: two members replaced each time.
    assert [(o != np.arange(size)).sum() for o in origin] == [2, 2, 2, 0]
  else:
    np.testing.assert_array_equal(origin, np.tile(np.arange(size), (4, 1)))
    unit = history['unit']['weight_decay']
    np.testing.assert_array_equal(unit[0], unit[-1])
  if method == 'grid':
    np.testing.assert_allclose(history['unit']['weight_decay'][0],
                               np.linspace(0, 1, 5), atol=1e-6)


def test_pbt_ends_near_the_best_ridge_weight_decay():
  state, _ = _search('pbt', 8)
  space = hparams.declare(H('weight_decay', 1e-2, 1e-3, 10.0, 'log'))
  best = int(hparams.best_member(state))
  found = float(space.from_unit({'weight_decay': state.unit['weight_decay'][
      best]})['weight_decay'])
  assert abs(np.log(found / BEST_WD)) < np.log(2.0), (found, BEST_WD)


@pytest.mark.parametrize('kwargs,match', [
    (dict(method='bayes'), 'unknown method'),
    (dict(num_steps=45), 'multiple of every'),
    (dict(num_members=1), 'at least 2'),
    (dict(fraction=0.7), 'fraction'),
])
def test_search_rejects_bad_options(kwargs, match):
  args = dict(method='pbt', num_members=4, num_steps=40, every=10,
              fraction=0.25) | kwargs
  method = args.pop('method')
  with pytest.raises(ValueError, match=match):
    hparams.search(method, OPTIMIZERS['sgd'], RIDGE_SPACE,
                   train_loss=_train_loss, val_loss=_val_loss,
                   init_params=lambda k: jnp.zeros(8), key=jax.random.key(0),
                   **args)

# ---------------------------------------------------------- learned tuner


@struct.dataclass
class _RidgeProblem:
  """The ridge regression above as a problem (a pytree without leaves)."""
  space: Any = struct.field(pytree_node=False, default=hparams.declare(
      H('weight_decay', 1e-2, 1e-3, 10.0, 'log')))
  num_steps: int = struct.field(pytree_node=False, default=40)

  def make_optimizer(self, values):
    return OPTIMIZERS['sgd'](values)

  def init_params(self, key):
    del key
    return jnp.zeros(8)

  def val_loss(self, params, key):
    return _val_loss(params, key)

  def train_loss(self, params, values, key):
    return _train_loss(params, values | {'l2': 0.0}, key)


def test_untrained_learned_tuner_is_the_online_tuner():
  problem = _RidgeProblem()
  args = (problem.make_optimizer, problem.space)
  kwargs = dict(train_loss=problem.train_loss, val_loss=problem.val_loss,
                every=5)
  online = hparams.online_tuner(*args, **kwargs)
  learned = hparams.learned_tuner(
      hparams.init_tuner_params(jax.random.key(3)), *args, **kwargs,
      num_steps=problem.num_steps)
  params = jnp.zeros(8)
  results = [jax.jit(lambda p, s, k, t=t: hparams.run(t.step, p, s, k, 40))(
      params, t.init(params), jax.random.key(0)) for t in (online, learned)]
  np.testing.assert_allclose(results[0][2]['values']['weight_decay'],
                             results[1][2]['values']['weight_decay'],
                             rtol=1e-6)
  assert isinstance(results[1][1], hparams.LearnedTunerState)
  assert results[1][1].hidden['weight_decay'].shape == (16,)


def test_meta_train_tuner_moves_and_keeps_the_best_validated_iterate():
  start = hparams.init_tuner_params(jax.random.key(0), hidden_size=4)
  seen, scores = [], []
  meta_params, log = hparams.meta_train_tuner(
      [_RidgeProblem()], key=jax.random.key(1), num_iterations=2, num_pairs=2,
      every=10, meta_params=start, random_start=True,
      validation=[_RidgeProblem()], validate_every=1,
      progress=lambda i, f: seen.append(i),
      on_validation=lambda i, s: scores.append((i, s)))
  assert seen == [0, 1] and len(log) == 2 and np.all(np.isfinite(log))
  assert [i for i, _ in scores] == [0, 1, 2]
  assert np.all(np.isfinite([s for _, s in scores]))
  assert jax.tree.structure(meta_params) == jax.tree.structure(start)
  # The returned iterate is the best validated one: it scores that again,
  # and it is the start only if the start validated best.
  best = int(np.argmin([s for _, s in scores]))
  again = jax.jit(hparams.tuner_fitness, static_argnames=('every', 'window'))(
      meta_params, _RidgeProblem(),
      jax.random.fold_in(jax.random.split(jax.random.key(1))[1], 10**6),
      every=10)
  np.testing.assert_allclose(again, scores[best][1], rtol=1e-5)
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(meta_params), jax.tree.leaves(start)))
  assert (moved > 0) == (best > 0) and np.isfinite(moved)


@pytest.mark.parametrize('call,match', [
    (lambda: hparams.init_tuner_params(jax.random.key(0), 0), 'hidden_size'),
    (lambda: hparams.meta_train_tuner([], key=jax.random.key(0)),
     'at least one problem'),
    (lambda: hparams.meta_train_tuner([_RidgeProblem()], key=jax.random.key(0),
                                      every=7), 'not a multiple'),
    (lambda: hparams.meta_train_tuner([_RidgeProblem()], key=jax.random.key(0),
                                      validate_every=0), 'validate_every'),
])
def test_learned_tuner_rejects_bad_options(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.parametrize('name', hparams.__all__)
def test_public_name_is_documented(name):
  import pathlib  # pylint: disable=g-import-not-at-top
  page = (pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'api'
          / 'hparams.rst').read_text()
  obj = getattr(hparams, name)
  if isinstance(obj, tuple):  # a constant, listed in the text
    assert f'``l2l.hparams.{name}``' in page, name
  else:
    assert f':: l2l.hparams.{name}\n' in page, name
    assert obj.__doc__ and obj.__doc__.strip(), name
