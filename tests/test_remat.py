"""Rematerialised unrolls: the same meta-step in less memory."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2l
import tasks


def _state(task, num_tasks=2):
  meta_params = l2l.init_meta_params(jax.random.key(0), design='free',
                                     hidden_size=4)
  kernel = meta_params['params']['output']['kernel']
  meta_params['params']['output']['kernel'] = 0.1 * jax.random.normal(
      jax.random.key(1), kernel.shape)
  inner = l2l.init_inner_states(task, l2l.lstm_optimizer(meta_params),
                                jax.random.key(2), num_tasks)
  return l2l.MetaTrainState(meta_params, optax.adam(1e-3).init(meta_params),
                            inner, jnp.zeros([], jnp.int32))


def _step(unroll_length, remat_chunk):
  return jax.jit(functools.partial(
      l2l.meta_step, optimizer_fn=l2l.lstm_optimizer,
      meta_optimizer=optax.adam(1e-3), unroll_length=unroll_length,
      log_losses=True, remat_chunk=remat_chunk), static_argnums=1)


def test_remat_gives_the_same_meta_step_in_less_memory():
  task = tasks.get_family('quadratic').sample_task(np.random.default_rng(0))
  state, key = _state(task), jax.random.key(3)
  plain, remat = (_step(64, chunk).lower(state, task, key).compile()
                  for chunk in (None, 8))
  (a, metrics_a), (b, metrics_b) = (f(state, key)  # task is static
                                    for f in (plain, remat))
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6,
                                 atol=1e-9), a.meta_params, b.meta_params)
  # chunked scans are compiled (and round) differently
  for name in ('meta_loss', 'grad_norm'):
    np.testing.assert_allclose(metrics_a[name], metrics_b[name], rtol=2e-3)
  assert not metrics_a['skipped'] and metrics_a['grad_norm'] > 0
  memory = lambda f: f.memory_analysis().temp_size_in_bytes
  assert memory(remat) < 0.5 * memory(plain), (memory(remat), memory(plain))


@pytest.mark.parametrize('chunk', [0, 3, 50])
def test_remat_chunk_must_divide_the_unroll(chunk):
  task = tasks.get_family('quadratic').sample_task(np.random.default_rng(0))
  state = _state(task)
  with pytest.raises(ValueError, match='positive divisor of unroll_length 10'):
    l2l.unroll(state.meta_params, task,
               jax.tree.map(lambda x: x[0], state.inner),
               optimizer_fn=l2l.lstm_optimizer, unroll_length=10,
               remat_chunk=chunk)
