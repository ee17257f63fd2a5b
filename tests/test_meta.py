"""Meta-training machinery: convergence, skipped meta-steps, unroll shapes."""

import functools

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2l
from l2l import _fit
import tasks
from meta_train import config as config_lib
from meta_train import train as train_lib

KEY = jax.random.key(0)
META_OPT = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))


@flax.struct.dataclass
class ScaledSquare:
  """f(x) = c * |x|^2 with the scale c as the problem."""
  name: str = flax.struct.field(pytree_node=False, default='scaled_square')

  def init_params(self, key):
    return {'x': jax.random.normal(key, (3,))}

  def sample_problem(self, key):
    del key
    return jnp.float32(1.0)

  def loss(self, params, problem, key):
    del key
    return problem * jnp.sum(jnp.sin(params['x']) ** 2)

  full_loss = lambda self, params, problem: self.loss(params, problem, None)


def _state(task, num_tasks=2):
  meta_params = l2l.init_meta_params(KEY)
  inner = l2l.init_inner_states(task, l2l.lstm_optimizer(meta_params),
                                jax.random.key(1), num_tasks)
  return l2l.MetaTrainState(meta_params, META_OPT.init(meta_params), inner,
                            jnp.zeros([], jnp.int32))


_step = jax.jit(functools.partial(
    l2l.meta_step, optimizer_fn=l2l.lstm_optimizer, meta_optimizer=META_OPT,
    unroll_length=4))


def _final_x_squared(meta_params, num_steps):
  opt = l2l.lstm_optimizer(meta_params)

  def body(carry, _):
    x, opt_state = carry
    update, opt_state = opt.update(2 * x, opt_state)
    return (x + update, opt_state), None

  x0 = jnp.float32(1.0)
  (x, _), _ = jax.lax.scan(body, (x0, opt.init(x0)), length=num_steps)
  return float(x) ** 2


def test_meta_training_converges_on_x_squared():
  """Paper's sanity check: f(x) = x^2 from x0 = 1 reaches below 1e-5.

  The learned optimizer is run for one episode (100 steps) every 50
  meta-steps; it must get there within 500 meta-steps. With seed 3 the
  untrained optimizer makes the loss worse (about 8 after 100 steps), so
  passing needs meta-training to work.
  """
  config = config_lib.TrainConfig(family='x_squared', meta_steps=500, seed=3,
                                  design='paper',
                                  num_tasks=1, meta_lr=1e-2,
                                  checkpoint_every=10**6)
  trainer = train_lib.Trainer(config)
  state = trainer.initial_state()
  first = _final_x_squared(state.meta_params, config.episode_length)
  finals = []
  for step in range(config.meta_steps):
    state, _ = trainer.step(state, step)
    if (step + 1) % 50 == 0:
      finals.append(_final_x_squared(state.meta_params, config.episode_length))
      if finals[-1] < 1e-5:
        break
  assert first > 1.0, first
  assert finals[-1] < 1e-5, finals


def test_non_finite_meta_gradient_is_skipped_and_counted():
  task = ScaledSquare()
  state = _state(task)
  poisoned = state.inner.problem.at[0].set(jnp.nan)
  state = state._replace(inner=state.inner._replace(problem=poisoned))
  before = state.meta_params
  new, metrics = _step(state, task, jax.random.key(2))
  chex.assert_trees_all_equal(new.meta_params, before)
  chex.assert_trees_all_equal(new.meta_opt_state, state.meta_opt_state)
  assert bool(metrics['skipped']) and int(new.num_skipped) == 1
  # The diverged problem restarts fresh; the healthy one carries on.
  assert float(new.inner.problem[0]) == 1.0 and int(new.inner.step[0]) == 0
  assert int(new.inner.step[1]) == 4
  chex.assert_tree_all_finite(new.inner.params)


def test_finite_meta_step_changes_meta_params():
  task = ScaledSquare()
  state = _state(task)
  new, metrics = _step(state, task, jax.random.key(2))
  assert not bool(metrics['skipped']) and int(new.num_skipped) == 0
  assert not np.allclose(new.meta_params['params']['output']['kernel'],
                         state.meta_params['params']['output']['kernel'])
  np.testing.assert_array_equal(new.inner.step, [4, 4])


def test_meta_step_does_not_retrace_for_same_structure():
  family = tasks.get_family('quadratic')

  @jax.jit
  @chex.assert_max_traces(n=1)
  def counted(state, task, key):
    return l2l.meta_step(state, task, key, optimizer_fn=l2l.lstm_optimizer,
                         meta_optimizer=META_OPT, unroll_length=3)

  state = _state(family.sample_task(np.random.default_rng(0)))
  for i in range(3):
    task = family.sample_task(np.random.default_rng(i))
    state, _ = counted(state, task, jax.random.key(i))


def test_unroll_returns_losses_after_each_update():
  task = ScaledSquare()
  meta_params = l2l.init_meta_params(KEY)
  inner = jax.tree.map(lambda x: x[0], _state(task, 1).inner)
  losses, new = l2l.unroll(meta_params, task, inner,
                           optimizer_fn=l2l.lstm_optimizer, unroll_length=5)
  assert losses.shape == (5,) and int(new.step) == 5
  np.testing.assert_allclose(losses[-1], task.loss(new.params, 1.0, None),
                             rtol=1e-6)


def test_second_order_changes_the_meta_gradient():
  task = ScaledSquare()
  meta_params = l2l.init_meta_params(KEY)
  inner = jax.tree.map(lambda x: x[0], _state(task, 1).inner)

  def meta_grad(second_order):
    return jax.grad(lambda m: jnp.sum(l2l.unroll(
        m, task, inner, optimizer_fn=l2l.lstm_optimizer, unroll_length=3,
        second_order=second_order)[0]))(meta_params)

  first, second = meta_grad(False), meta_grad(True)
  chex.assert_tree_all_finite((first, second))
  assert not np.allclose(first['params']['output']['kernel'],
                         second['params']['output']['kernel'])


def test_zero_loss_weights_give_zero_meta_gradient():
  task = ScaledSquare()
  state = _state(task)
  step = jax.jit(functools.partial(
      l2l.meta_step, optimizer_fn=l2l.lstm_optimizer, meta_optimizer=META_OPT,
      unroll_length=4, loss_weights=jnp.zeros(4)))
  _, metrics = step(state, task, jax.random.key(0))
  assert float(metrics['grad_norm']) == 0.0 and float(metrics['meta_loss']) == 0


def _tiny_hyper_state(task, num_tasks=4):
  meta_params = l2l.init_meta_params(KEY, design='hyper', hidden_size=2,
                                     num_layers=1)
  meta_params['params']['output']['kernel'] = 0.5 * jnp.ones_like(
      meta_params['params']['output']['kernel'])
  inner = l2l.init_inner_states(task, l2l.lstm_optimizer(meta_params),
                                jax.random.key(1), num_tasks)
  return l2l.MetaTrainState(meta_params, optax.sgd(1.0).init(meta_params),
                            inner, jnp.zeros([], jnp.int32))


@functools.lru_cache(maxsize=None)
def _compiled(step_fn, **kw):
  """One jitted step per (step_fn, options), so that tests that run a step
  on several states of one shape compile it once."""
  return jax.jit(functools.partial(
      step_fn, optimizer_fn=l2l.lstm_optimizer, meta_optimizer=optax.sgd(1.0),
      unroll_length=6, **{'log_losses': True, **kw}))


def _estimate(step_fn, state, **kw):
  """The meta-gradient a step used: with sgd(1) it is old - new params."""
  new, metrics = _compiled(step_fn, **kw)(state, ScaledSquare(),
                                          jax.random.key(2))
  flat = lambda t: jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(t)])
  return flat(state.meta_params) - flat(new.meta_params), metrics


def test_es_estimate_agrees_with_the_exact_meta_gradient():
  # A smooth, short unroll of a small network, where the exact
  # (second-order) gradient is the reference.
  state = _tiny_hyper_state(ScaledSquare())
  exact, _ = _estimate(l2l.meta_step, state, second_order=True)
  es, metrics = _estimate(l2l.es_meta_step, state, num_pairs=2048,
                          sigma=1e-3)
  cosine = exact @ es / (jnp.linalg.norm(exact) * jnp.linalg.norm(es))
  assert cosine > 0.9, cosine
  np.testing.assert_allclose(jnp.linalg.norm(es), jnp.linalg.norm(exact),
                             rtol=0.3)
  assert not metrics['skipped']


def test_es_meta_step_is_deterministic_in_its_key_and_validates():
  state = _tiny_hyper_state(ScaledSquare())
  # the options of test_rank_fitness_ignores_the_loss_scale: one program
  options = dict(num_pairs=8, fitness='difference', log_losses=False)
  first, _ = _estimate(l2l.es_meta_step, state, **options)
  again, _ = _estimate(l2l.es_meta_step, state, **options)
  np.testing.assert_array_equal(first, again)
  with pytest.raises(ValueError, match='num_pairs >= 1 and sigma > 0'):
    _estimate(l2l.es_meta_step, state, num_pairs=0)


@pytest.mark.parametrize('plus, minus, want', [
    ([1.0, 2.0], [3.0, 1.0], [-2.0, 1.0]),
    # A diverged run scores as the worst finite one (3) plus one.
    ([np.inf, 2.0], [3.0, np.nan], [1.0, -2.0]),
])
def test_diverged_perturbations_rank_worst(plus, minus, want):
  got = l2l._meta._rank_diverged(jnp.asarray(plus), jnp.asarray(minus))
  np.testing.assert_allclose(got, want)


def test_es_step_with_every_run_diverged_is_skipped():
  got = l2l._meta._rank_diverged(jnp.full(2, jnp.nan), jnp.full(2, jnp.inf))
  assert not np.any(np.isfinite(got))


@pytest.mark.parametrize('plus, minus, want', [
    # Ranks 1, 3.5, 5 | 2, 3.5, 0 of 0..5, centred: r / 5 - 1/2.
    ([1.0, 5.0, np.nan], [2.0, 5.0, 0.0], [-0.2, 0.0, 1.0]),
    # Only the order counts.
    ([1e3, 5e3, 3.0], [2e3, 5e3, 0.0], [-0.2, 0.0, 0.2]),
    # Every run diverged: non-finite, so the step is skipped.
    ([np.inf, np.nan], [np.nan, np.inf], [np.nan, np.nan]),
])
def test_centred_rank_differences(plus, minus, want):
  got = l2l._meta._centred_rank_difference(jnp.asarray(plus),
                                           jnp.asarray(minus))
  np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize('fitness, ratio', [('difference', 1e3),
                                            ('rank', 1.0)])
def test_rank_fitness_ignores_the_loss_scale(fitness, ratio):
  """Scaling the loss by 1000 leaves the (scale-free) inner runs alone."""
  state = _tiny_hyper_state(ScaledSquare())
  scaled = state._replace(inner=state.inner._replace(
      problem=1e3 * state.inner.problem))
  estimate = lambda s: _estimate(l2l.es_meta_step, s, num_pairs=8,
                                 fitness=fitness, log_losses=False)[0]
  small, large = estimate(state), estimate(scaled)
  assert float(jnp.linalg.norm(small)) > 0
  np.testing.assert_allclose(large, ratio * small, rtol=1e-2,
                             atol=1e-6 * float(jnp.max(jnp.abs(large))))


def test_es_fitness_is_validated():
  state = _tiny_hyper_state(ScaledSquare())
  with pytest.raises(ValueError, match="fitness must be one of"):
    _estimate(l2l.es_meta_step, state, num_pairs=2, fitness='ranks')


@pytest.mark.parametrize('subset, moved, kept', [
    ('all', {'nominal', 'output', 'lstm_0_x'}, None),
    ('readout', {'nominal', 'output'}, 'the rest'),
    ('output', {'output'}, 'the rest'),
    ('learned', {'output', 'lstm_0_x', 'lstm_0_h'}, 'nominal'),
    ('scheduler', {'output', 'lstm_0_x', 'lstm_0_h'}, 'nominal'),
    ('step_sizes', {'output', 'lstm_0_x', 'lstm_0_h'}, 'nominal'),
])
def test_es_moves_only_trainable_leaves(subset, moved, kept):
  state = _tiny_hyper_state(ScaledSquare())
  trainable = functools.partial(train_lib.trainable_leaves, subset=subset)
  new, _ = jax.jit(functools.partial(
      l2l.es_meta_step, optimizer_fn=l2l.lstm_optimizer,
      meta_optimizer=optax.sgd(1.0), unroll_length=6, num_pairs=4,
      trainable=trainable))(state, ScaledSquare(), jax.random.key(2))
  differs = lambda a, b: any(bool(jnp.any(x != y)) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))
  old_params, new_params = state.meta_params, new.meta_params
  changed = {name for name in old_params['params']
             if differs(old_params['params'][name], new_params['params'][name])}
  if differs(old_params['nominal'], new_params['nominal']):
    changed.add('nominal')
  assert moved <= changed
  if kept == 'the rest':
    assert changed == moved
  elif kept == 'nominal':
    assert 'nominal' not in changed


@pytest.mark.parametrize('subset, marked', [
    ('all', {'params', 'mlp', 'nominal'}),
    ('learned', {'params', 'mlp'}),
    ('scheduler', {'params'}),
])
def test_compact_subsets_mark_whole_parts(subset, marked):
  """On the compact design: which of its parts (the per-tensor LSTM
  'params', the per-parameter 'mlp', the 'nominal' constants) a subset
  trains, every leaf of a part alike."""
  meta_params = l2l.init_meta_params(KEY, design='compact', hidden_size=2,
                                     num_layers=1)
  marks = train_lib.trainable_leaves(meta_params, subset)
  assert set(marks) == {'params', 'mlp', 'nominal'}
  for part, tree in marks.items():
    assert set(jax.tree.leaves(tree)) == {part in marked}, part


@pytest.mark.parametrize('step_fn', [l2l.es_meta_step, l2l.meta_step])
def test_step_sizes_keeps_the_compact_direction_output_at_zero(step_fn):
  """'step_sizes' trains the compact MLP's step-size output (read-out column
  0) and the rest of the networks, never its direction output (column 1),
  under ES noise and under Adam on a BPTT gradient alike."""
  meta_params = l2l.init_meta_params(KEY, design='compact', hidden_size=2,
                                     num_layers=1)
  trainable = functools.partial(train_lib.trainable_leaves,
                                subset='step_sizes')
  meta_optimizer = _fit.adam_meta_optimizer(trainable, meta_lr=0.1,
                                            clip_norm=1.0)
  inner = l2l.init_inner_states(ScaledSquare(), l2l.lstm_optimizer(meta_params),
                                jax.random.key(1), 2)
  state = l2l.MetaTrainState(meta_params, meta_optimizer.init(meta_params),
                             inner, jnp.zeros([], jnp.int32))
  options = dict(num_pairs=4, trainable=trainable) if (
      step_fn is l2l.es_meta_step) else {}
  new, _ = jax.jit(functools.partial(
      step_fn, optimizer_fn=l2l.lstm_optimizer, meta_optimizer=meta_optimizer,
      unroll_length=6, **options))(state, ScaledSquare(), jax.random.key(2))
  old, got = meta_params['mlp']['output'], new.meta_params['mlp']['output']
  assert float(jnp.max(jnp.abs(got['kernel'][:, 0]))) > 0
  np.testing.assert_array_equal(got['kernel'][:, 1], 0.0)
  assert float(got['bias'][1]) == 0.0
  assert bool(jnp.any(got['bias'][0] != old['bias'][0]))
  np.testing.assert_array_equal(new.meta_params['nominal']['log_lr'],
                                meta_params['nominal']['log_lr'])
  assert bool(jnp.any(new.meta_params['params']['output']['kernel']
                      != meta_params['params']['output']['kernel']))


def _tiny_free_state(task, num_tasks=2):
  meta_params = l2l.init_meta_params(KEY, design='free', hidden_size=2,
                                     num_layers=1)
  inner = l2l.init_inner_states(task, l2l.lstm_optimizer(meta_params),
                                jax.random.key(1), num_tasks)
  meta_optimizer = optax.chain(optax.add_decayed_weights(0.5), optax.sgd(1.0))
  return l2l.MetaTrainState(meta_params, meta_optimizer.init(meta_params),
                            inner, jnp.zeros([], jnp.int32)), meta_optimizer


@pytest.mark.parametrize('step_fn', [l2l.meta_step, l2l.es_meta_step])
def test_meta_steps_never_move_step_counts(step_fn):
  # weight decay would move every leaf; the warm-up, a step count, stays
  state, meta_optimizer = _tiny_free_state(ScaledSquare())
  new, _ = jax.jit(functools.partial(
      step_fn, optimizer_fn=l2l.lstm_optimizer, meta_optimizer=meta_optimizer,
      unroll_length=4))(state, ScaledSquare(), jax.random.key(2))
  old_nominal, new_nominal = (state.meta_params['nominal'],
                              new.meta_params['nominal'])
  assert float(new_nominal['second_moment_warmup']) == 40.0
  # every other nonzero constant moved (weight decay alone moves it)
  assert all(float(new_nominal[k]) != float(v) for k, v in old_nominal.items()
             if k != 'second_moment_warmup' and float(v) != 0.0)
