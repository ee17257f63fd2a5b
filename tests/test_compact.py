"""The compact design: fresh, it is the free design's nominal rule; its
learned parts change updates, keep shapes, dtypes and trees, stay within
the state budget, compile once and meta-train under every estimator."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2l
from l2l import _compact

KEY = jax.random.key(0)


def _perturbed(key=jax.random.key(1), size=0.3, parts=('params', 'mlp')):
  """Compact meta-params whose read-outs (the LSTM's, the MLP's or both:
  ``parts``) are not zero; the fade-out timescale stays fresh."""
  meta_params = l2l.init_meta_params(KEY, design='compact', hidden_size=4,
                                     num_layers=1)
  keys = iter(jax.random.split(key, 8))
  noisy = lambda x: size * jax.random.normal(next(keys), x.shape, x.dtype)
  for part in parts:
    out = meta_params[part]['output']
    out.update({k: noisy(out[k]) for k in ('kernel', 'bias')})
  return meta_params


def _params():
  """One tree for the table of leaves: matrices, rank 3, vector, scalar,
  zero size and None, in float32 and bfloat16."""
  line = lambda n, d, lo=-1.0: jnp.linspace(lo, 1.0, n, dtype=d)
  return {'f32': {'w': line(12, jnp.float32).reshape(3, 4),
                  'b': jnp.zeros(4, jnp.float32),
                  'r3': line(24, jnp.float32, 0.1).reshape(2, 3, 4),
                  's': jnp.asarray(0.7, jnp.float32),
                  'empty': jnp.ones((0, 3), jnp.float32), 'none': None},
          'bf16': {'w': line(6, jnp.bfloat16).reshape(2, 3),
                   'b': line(3, jnp.bfloat16)}}


def _grad(params, i):
  """Gradients of a quadratic bowl plus a term that changes from step to
  step, as minibatches do."""
  return jax.tree.map(
      lambda p: (p.astype(jnp.float32) - 0.5 + 0.3 * jnp.sin(3 * p + i)
                 ).astype(p.dtype), params)


@functools.partial(jax.jit, static_argnums=(2,))
@chex.assert_max_traces(n=2)  # once per design: new meta-params retrace nothing
def _trajectory(meta_params, params, steps=12):
  """Params and state after ``steps`` updates, in one scan; traced once for
  the compact design and once for the free one, whatever the values of
  their meta-params (fresh, perturbed, other nominal rates)."""
  optimizer = l2l.lstm_optimizer(meta_params)

  def step(carry, i):
    params, state = carry
    updates, state = optimizer.update(_grad(params, i), state, params)
    return (optax.apply_updates(params, updates), state), None

  return jax.lax.scan(step, (params, optimizer.init(params)),
                      jnp.arange(steps, dtype=jnp.float32))[0]


def _leaves_differ(a, b):
  return any(np.any(np.asarray(x, np.float32) != np.asarray(y, np.float32))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)) if x.size)


@pytest.mark.parametrize('nominal_lr', [0.2, 0.01])
def test_fresh_compact_is_the_free_nominal_rule(nominal_lr):
  """Bit for bit: same params and shared state after 12 steps, on every leaf
  of the table."""
  params = _params()
  (compact_params, compact_state), (free_params, free_state) = [
      _trajectory(l2l.init_meta_params(KEY, design=design, hidden_size=4,
                                       num_layers=1, nominal_lr=nominal_lr),
                  params)
      for design in ('compact', 'free')]
  chex.assert_trees_all_equal(compact_params, free_params)
  chex.assert_trees_all_equal(compact_state.moments, free_state.moments)
  is_entry = lambda x: isinstance(x, dict) and 'tensor' in x
  chex.assert_trees_all_equal(
      jax.tree.map(lambda s: s['tensor'], compact_state.scale,
                   is_leaf=is_entry), free_state.scale)
  assert _leaves_differ(compact_params, params)


@pytest.mark.parametrize('log_fade, corrected', [
    (-30.0, False),  # a timescale of 1e-13 steps: faded from the first step
    (float(np.log(_compact.FADE_STEPS)), True),  # fresh: 100 steps
    (30.0, True),  # 1e13 steps: no fade-out
])
def test_mlp_corrections_fade_out(log_fade, corrected):
  """With a learned MLP (and a fresh LSTM), the updates are the free
  nominal rule's, bit for bit, once the fade-out has ended, and differ
  from them before."""
  params = _params()
  meta_params = _perturbed(parts=('mlp',))
  meta_params['mlp']['output']['log_fade'] = jnp.float32(log_fade)
  learned, _ = _trajectory(meta_params, params)
  free, _ = _trajectory(l2l.init_meta_params(
      KEY, design='free', hidden_size=4, num_layers=1), params)
  assert _leaves_differ(learned, free) == corrected


@pytest.mark.parametrize('log_fade, offset, count, expected', [
    (np.log(100.0), 0.0, 0, 1.0),
    (np.log(100.0), 0.0, 100, np.exp(-1.0)),
    (np.log(100.0), 3e3, 100, np.exp(-np.exp(-3.0))),  # offset bounded by 3
    (np.log(100.0), -3e3, 5, np.exp(-5.0 / (100.0 * np.exp(-3.0)))),
    (0.0, 0.0, 10**6, 0.0),
])
def test_fade_values(log_fade, offset, count, expected):
  value = _compact.fade(jnp.float32(log_fade), jnp.float32(offset),
                        jnp.asarray(count, jnp.int32))
  assert value.dtype == jnp.float32 and value.shape == ()
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def _loss_after_updates(meta_params, params, steps=2):
  """Loss of a linear model after ``steps`` updates from ``params``."""
  optimizer = l2l.lstm_optimizer(meta_params)
  x = jnp.linspace(-1.0, 1.0, 3)
  loss = lambda p: jnp.sum((x @ p['w'] + p['b'] + x[:2] @ p['c'] - 1) ** 2)
  state = optimizer.init(params)
  for _ in range(steps):
    updates, state = optimizer.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  return loss(params)


@jax.jit
def _derivatives(meta_params, params):
  """``jax.grad`` and a ``jax.jvp`` (all-ones tangent) of the loss after
  updates, with respect to the initial params; meta-params are traced, so
  one compile serves every compact meta-params."""
  tangent = jax.tree.map(jnp.ones_like, params)
  return (jax.grad(_loss_after_updates, 1)(meta_params, params),
          jax.jvp(functools.partial(_loss_after_updates, meta_params),
                  (params,), (tangent,))[1])


def test_derivatives_through_updates_stay_finite_at_zero_tensors():
  """Zero-initialised tensors (a bias, a matrix) have rms 0, and a dead
  tensor a gradient that is always 0: derivatives through the update (BPTT
  meta-gradients by ``grad``, hypergradients by ``jvp``) stay finite, and
  fresh they equal the free design's exactly."""
  params = {'w': jnp.ones((3, 2)), 'b': jnp.zeros(2), 'c': jnp.zeros((2, 2)),
            'dead': jnp.ones((2, 2))}  # not in the loss: its gradient is 0
  fresh, free, perturbed = [_derivatives(mp, params) for mp in (
      l2l.init_meta_params(KEY, design='compact', hidden_size=4,
                           num_layers=1),
      l2l.init_meta_params(KEY, design='free', hidden_size=4, num_layers=1),
      _perturbed())]
  chex.assert_tree_all_finite((fresh, perturbed))
  chex.assert_trees_all_equal(fresh, free)
  assert _leaves_differ(perturbed, fresh)


def test_learned_parts_keep_shapes_dtypes_and_trees():
  params = _params()
  meta_params = _perturbed()
  state = l2l.lstm_optimizer(meta_params).init(params)
  new_params, new_state = _trajectory(meta_params, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_params, params)
  chex.assert_tree_all_finite(new_params)
  chex.assert_trees_all_equal_structs(new_state, state)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
  assert int(new_state.count) == 12
  for layer in new_state.cell + new_state.hidden:  # per tensor
    assert {x.shape for x in jax.tree.leaves(layer)} == {(4,)}
  entries = jax.tree.leaves(state.scale, is_leaf=lambda x: isinstance(x, dict)
                            and 'tensor' in x)
  for p, s in zip(jax.tree.leaves(params), entries):
    assert ('rows' in s) == (p.ndim >= 2)
    if p.ndim >= 2:
      assert s['rows'].shape == p.shape[:-1]
      assert s['cols'].shape == p.shape[:-2] + p.shape[-1:]
  fresh, _ = _trajectory(l2l.init_meta_params(KEY, design='compact',
                                              hidden_size=4, num_layers=1),
                         params)
  assert _leaves_differ(new_params, fresh)


def test_state_budget_is_at_most_32_bytes_per_parameter():
  """24 bytes per coordinate (six float32 accumulators) plus per-tensor and
  factored entries, on a tree of 1e6 float32 parameters."""
  params = {f'layer_{i}': {'w': jnp.zeros((300, 330)), 'b': jnp.zeros(330)}
            for i in range(10)}
  size = sum(x.size for x in jax.tree.leaves(params))
  state = jax.eval_shape(l2l.lstm_optimizer(_perturbed()).init, params)
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  assert 24 < state_bytes / size < 24.1


def test_a_non_finite_coordinate_stays_in_its_coordinate():
  params = {'w': jnp.linspace(-1, 1, 12).reshape(3, 4)}
  optimizer = l2l.lstm_optimizer(_perturbed())
  grads = {'w': jnp.ones((3, 4)).at[1, 2].set(jnp.nan)}
  updates, state = jax.jit(optimizer.update)(grads, optimizer.init(params),
                                             params)
  finite = np.isfinite(np.asarray(updates['w']))
  assert not finite[1, 2] and finite.sum() == 11
  chex.assert_tree_all_finite(state.scale)


def test_errors_name_the_problem():
  params = {'w': jnp.ones((2, 3))}
  optimizer = l2l.lstm_optimizer(_perturbed())
  state = optimizer.init(params)
  with pytest.raises(ValueError, match='reads the parameter values'):
    optimizer.update(params, state)
  with pytest.raises(ValueError, match='has shape'):
    optimizer.update({'w': jnp.ones((3, 2))}, state, params)
  bad = _perturbed()
  bad['mlp']['hidden']['kernel'] = jnp.zeros((3, _compact.MLP_HIDDEN))
  with pytest.raises(ValueError, match='mlp weights'):
    l2l.lstm_optimizer(bad)


def test_averaged_params_and_checkpoint_round_trip(tmp_path):
  meta_params = _perturbed()
  params, state = _trajectory(meta_params, _params())
  beta = float(l2l.init_meta_params(KEY, design='compact')['nominal'][
      'interpolation'])
  average = l2l.averaged_params(params, state, meta_params)
  chex.assert_trees_all_equal_shapes_and_dtypes(average, params)
  chex.assert_trees_all_close(
      average['f32'], jax.tree.map(lambda p, e: p - (1 - beta) * e,
                                   params['f32'], state.moments[-1]['f32']),
      rtol=1e-6)
  assert _leaves_differ(average, params)
  path = tmp_path / 'compact.npz'
  l2l.save_meta_params(path, meta_params)
  loaded, manifest = l2l.load_meta_params(path)
  assert manifest['config']['design'] == 'compact'
  chex.assert_trees_all_equal(loaded, meta_params)


class _Quadratic:
  """``sum(a (w - 1)^2)`` over a matrix (the factored path), with a
  per-problem curvature ``a`` per row; one leaf keeps compilation short."""
  name = 'quadratic_matrix'

  def init_params(self, key):
    return {'w': jax.random.normal(key, (3, 2))}

  def sample_problem(self, key):
    return jnp.exp(jax.random.uniform(key, (3, 1), minval=-1.0, maxval=1.0))

  def loss(self, params, problem, key):
    noise = 0.01 * jax.random.normal(key, ())
    return jnp.sum(problem * (params['w'] - 1)**2) + noise**2

  def full_loss(self, params, problem):
    return self.loss(params, problem, jax.random.key(0))


@pytest.fixture(scope='module')
def meta_state():
  task, meta_optimizer = _Quadratic(), optax.adam(3e-3)
  meta_params = _perturbed(size=0.05)
  inner = jax.jit(lambda key: l2l.init_inner_states(
      task, l2l.lstm_optimizer(meta_params), key, 2))(jax.random.key(1))
  return task, meta_optimizer, l2l.MetaTrainState(
      meta_params, meta_optimizer.init(meta_params), inner,
      jnp.zeros([], jnp.int32))


# BPTT: test_meta_train_reduces_the_meta_loss_of_fixed_problems. ES runs
# the same forward unrolls as PES (each meta-step compiles for ~20 s of CPU,
# so the test budget holds two).
ESTIMATORS = {
    'pes': lambda state, inner: (l2l.pes_meta_step, {},
                                 l2l.pes_start(state, inner)),
}


@pytest.mark.parametrize('estimator', ESTIMATORS)
def test_every_estimator_gives_finite_moving_meta_gradients(meta_state,
                                                            estimator):
  task, meta_optimizer, state = meta_state
  function, kwargs, state = ESTIMATORS[estimator](state, state.inner)
  step = jax.jit(functools.partial(
      function, optimizer_fn=l2l.lstm_optimizer, meta_optimizer=meta_optimizer,
      unroll_length=4, log_losses=True, **kwargs), static_argnums=1)
  new_state, metrics = step(state, task, jax.random.key(2))
  assert not metrics['skipped'] and np.isfinite(metrics['grad_norm'])
  assert metrics['grad_norm'] > 0
  moved = [np.any(a != b) for a, b in zip(
      jax.tree.leaves(new_state.meta_params['mlp']),
      jax.tree.leaves(state.meta_params['mlp']))]
  assert any(moved)


def test_meta_train_reduces_the_meta_loss_of_fixed_problems():
  """BPTT meta-training of all compact meta-params lowers the summed log
  loss of problems it did not train on."""
  task = _Quadratic()
  meta_params = l2l.init_meta_params(KEY, design='compact', hidden_size=4,
                                     num_layers=1, nominal_lr=0.02)
  inner = jax.jit(lambda key: l2l.init_inner_states(
      task, l2l.lstm_optimizer(meta_params), key, 4))(jax.random.key(99))

  @jax.jit
  def meta_loss(meta_params):
    losses, _ = jax.vmap(functools.partial(
        l2l.unroll, meta_params, task, optimizer_fn=l2l.lstm_optimizer,
        unroll_length=6))(inner)
    return jnp.mean(jnp.log(losses))

  trained, log = l2l.meta_train(
      task, key=0, meta_params=meta_params, estimator='bptt', meta_steps=10,
      num_tasks=2, unroll_length=6, meta_lr=0.03, trainable='all')
  assert log['meta_loss'].shape == (10,) and not log['skipped'].any()
  before, after = float(meta_loss(meta_params)), float(meta_loss(trained))
  assert np.isfinite(after) and after < before - 0.1, (before, after)
