"""The held-out kinds of network of the extended suite (tasks/unseen.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import tasks
from tasks import unseen

FAMILIES = ['mnist1d_attention', 'mnist1d_gru', 'digits_mlp_layernorm',
            'digits_mlp_batchnorm']


@pytest.fixture(scope='module', params=FAMILIES)
def task(request):
  return tasks.get_family(request.param, split='test').sample_task(
      np.random.default_rng(0))


def test_loss_is_a_finite_scalar_and_adam_lowers_it(task):
  """Every leaf gets a gradient; 60 Adam steps lower the full loss from
  about chance."""
  params = task.init_params(jax.random.key(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  optimizer = optax.adam(3e-3)

  @jax.jit
  def train(params):
    def step(carry, key):
      params, state = carry
      grads = jax.grad(task.loss)(params, (), key)
      updates, state = optimizer.update(grads, state)
      return (optax.apply_updates(params, updates), state), grads
    keys = jax.random.split(jax.random.key(1), 60)
    (params, _), grads = jax.lax.scan(
        step, (params, optimizer.init(params)), keys)
    first = jax.tree.map(lambda g: g[0], grads)
    return params, first, task.full_loss(params, ())

  trained, grads, after = train(params)
  before = jax.jit(lambda params: task.full_loss(params, ()))(params)
  assert before.shape == () and np.isfinite(before)
  assert np.log(10) * 0.7 < before < np.log(10) * 1.5  # near chance at init
  assert after < 0.9 * before
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    assert np.all(np.isfinite(g)) and np.any(g != 0), path


def test_attention_matches_a_per_head_reference():
  """Self-attention against a loop over heads, in numpy."""
  rng = np.random.default_rng(0)
  width, heads = 8, 2
  params = {'qkv': {'w': rng.normal(size=(width, 3 * width)),
                    'b': rng.normal(size=3 * width)},
            'out': {'w': np.eye(width), 'b': np.zeros(width)}}
  h = rng.normal(size=(2, 5, width))
  got = jax.jit(unseen._attention, static_argnums=2)(params, h, heads)
  qkv = (h @ params['qkv']['w'] + params['qkv']['b']).reshape(
      2, 5, 3, heads, width // heads)
  want = np.zeros_like(h)
  for b in range(2):
    for k in range(heads):
      q, kk, v = qkv[b, :, 0, k], qkv[b, :, 1, k], qkv[b, :, 2, k]
      logits = q @ kk.T / np.sqrt(width // heads)
      weights = np.exp(logits - logits.max(-1, keepdims=True))
      weights /= weights.sum(-1, keepdims=True)
      want[b, :, k * (width // heads):(k + 1) * (width // heads)] = weights @ v
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_norms_normalise():
  h = np.random.default_rng(0).normal(size=(32, 6)) * 5 + 3
  ones = {'scale': np.ones(6), 'offset': np.zeros(6)}
  by_batch, by_layer = jax.jit(lambda h: (unseen.batch_norm(ones, h),
                                          unseen.layer_norm(ones, h)))(h)
  np.testing.assert_allclose(np.mean(by_batch, 0), 0, atol=1e-5)
  np.testing.assert_allclose(np.std(by_batch, 0), 1, rtol=1e-3)
  np.testing.assert_allclose(np.mean(by_layer, 1), 0, atol=1e-5)
  np.testing.assert_allclose(np.std(by_layer, 1), 1, rtol=1e-3)


@pytest.mark.parametrize('kwargs, message', [
    (dict(model='lstm'), 'Unknown sequence model'),
    (dict(widths=(15,)), 'multiples of num_heads'),
])
def test_bad_sequence_options_are_named(kwargs, message):
  with pytest.raises(ValueError, match=message):
    tasks.SequenceFamily(**kwargs)


def test_bad_norm_is_named():
  with pytest.raises(ValueError, match='Unknown norm'):
    tasks.NormalisedMLPFamily(norm='group')
