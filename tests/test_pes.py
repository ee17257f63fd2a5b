"""PES: unbiased for the smoothed loss of a whole episode, where ES over
truncations is not."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2l

LOG_LR, SIGMA, HORIZON = float(np.log(0.3)), 0.1, 4


class _Scalar:
  """``w^2 / 2`` from ``w = 1``: with SGD at rate ``e^theta`` the episode's
  loss is :math:`\\sum_{t=1}^{T} (1 - e^\\theta)^{2t} / 2`."""
  name = 'scalar'

  def init_params(self, key):
    del key
    return {'w': jnp.ones(1)}

  def sample_problem(self, key):
    del key
    return ()

  def loss(self, params, problem, key):
    del problem, key
    return 0.5 * jnp.sum(params['w']**2)

  def full_loss(self, params, problem):
    return self.loss(params, problem, None)


def _sgd(meta_params):
  return optax.sgd(jnp.exp(meta_params['log_lr']))


def _smoothed_episode_gradient(theta, sigma, horizon):
  """:math:`E_\\epsilon L'(\\theta + \\epsilon)`, by Gauss-Hermite
  quadrature (exact to float precision here)."""
  nodes, weights = np.polynomial.hermite_e.hermegauss(80)
  rate = np.exp(theta + sigma * nodes)
  derivative = -rate * sum(t * (1 - rate)**(2 * t - 1)
                           for t in range(1, horizon + 1))
  return float(np.sum(weights * derivative) / np.sqrt(2 * np.pi))


def _episode_estimates(step_fn, start, num_episodes):
  """Per episode, the sum of the estimates of its truncations, with the
  meta-params held fixed (SGD at rate 1 reveals each estimate)."""
  task, meta_params = _Scalar(), {'log_lr': jnp.float32(LOG_LR)}
  sgd = optax.sgd(1.0)
  step = jax.jit(functools.partial(step_fn, optimizer_fn=_sgd,
                                   meta_optimizer=sgd, unroll_length=1),
                 static_argnums=1)
  totals = []
  for episode in range(num_episodes):
    state = start(l2l.MetaTrainState(
        meta_params, sgd.init(meta_params), None, jnp.zeros([], jnp.int32)),
                  task, jax.random.key(episode))
    total = 0.0
    for t in range(HORIZON):
      new, _ = step(state, task, jax.random.key(1000 * episode + t))
      total += float(state.meta_params['log_lr'] - new.meta_params['log_lr'])
      state = new._replace(meta_params=meta_params)
    totals.append(total)
  totals = np.asarray(totals)
  return totals.mean(), totals.std(ddof=1) / np.sqrt(len(totals))


def _pes_start(state, task, key, num_pairs=2000):
  inner = l2l.init_inner_states(task, _sgd(state.meta_params), key, num_pairs)
  return l2l.pes_start(state, inner)


def _es_start(state, task, key, num_tasks=1):
  return state._replace(inner=l2l.init_inner_states(
      task, _sgd(state.meta_params), key, num_tasks))


def test_pes_is_unbiased_and_es_over_truncations_is_not():
  want = _smoothed_episode_gradient(LOG_LR, SIGMA, HORIZON)
  pes_mean, pes_error = _episode_estimates(
      functools.partial(l2l.pes_meta_step, sigma=SIGMA), _pes_start, 10)
  es_mean, es_error = _episode_estimates(
      functools.partial(l2l.es_meta_step, sigma=SIGMA, num_pairs=2000),
      _es_start, 10)
  print(f'smoothed episode gradient {want:.4f}; PES {pes_mean:.4f} ± '
        f'{pes_error:.4f}; ES over truncations {es_mean:.4f} ± {es_error:.4f}')
  assert abs(pes_mean - want) < 3 * pes_error + 1e-3
  assert abs(es_mean - want) > 10 * es_error + 0.05
  assert pes_error < 0.1 * abs(want)  # the test has the power to tell


@pytest.mark.parametrize('design', ['paper', 'free'])
def test_pes_meta_step_trains_every_design(design):
  """Finite estimates, moving meta-params, kept shapes and dtypes; pairs
  share problems (common random numbers) until their perturbations
  differ."""
  task = _Scalar()
  meta_params = l2l.init_meta_params(jax.random.key(0), design=design,
                                     hidden_size=4)
  meta_optimizer = optax.adam(1e-3)
  inner = l2l.init_inner_states(task, l2l.lstm_optimizer(meta_params),
                                jax.random.key(1), 3)
  state = l2l.pes_start(l2l.MetaTrainState(
      meta_params, meta_optimizer.init(meta_params), inner,
      jnp.zeros([], jnp.int32)), inner)
  assert jax.tree.leaves(state.inner.params)[0].shape[0] == 6
  keys = jax.random.key_data(state.inner.key)
  np.testing.assert_array_equal(keys[:3], keys[3:])
  step = jax.jit(functools.partial(
      l2l.pes_meta_step, optimizer_fn=l2l.lstm_optimizer,
      meta_optimizer=meta_optimizer, unroll_length=3, log_losses=True),
                 static_argnums=1)
  for i in range(2):
    state, metrics = step(state, task, jax.random.key(i))
    assert not metrics['skipped'] and np.isfinite(metrics['grad_norm'])
  dtypes = lambda tree: [(x.dtype, x.shape) for x in jax.tree.leaves(tree)]
  assert dtypes(state.meta_params) == dtypes(meta_params)
  assert any(np.any(a != b) for a, b in zip(
      jax.tree.leaves(state.meta_params), jax.tree.leaves(meta_params)))
  assert int(state.inner.step[0]) == 6


def test_pes_meta_step_errors():
  task, meta_params = _Scalar(), {'log_lr': jnp.float32(LOG_LR)}
  state = _es_start(l2l.MetaTrainState(meta_params, (), None,
                                       jnp.zeros([], jnp.int32)), task,
                    jax.random.key(0))
  kwargs = dict(optimizer_fn=_sgd, meta_optimizer=optax.sgd(1.0),
                unroll_length=1)
  with pytest.raises(ValueError, match='made by l2l.pes_start'):
    l2l.pes_meta_step(state, task, jax.random.key(0), **kwargs)
  with pytest.raises(ValueError, match='sigma > 0'):
    l2l.pes_meta_step(state, task, jax.random.key(0), sigma=0.0, **kwargs)
