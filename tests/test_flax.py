"""l2l.lstm_optimizer trains a flax model as any optax optimizer would."""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import l2l


class Regressor(nnx.Module):

  def __init__(self, rngs):
    self.hidden = nnx.Linear(3, 8, rngs=rngs)
    self.out = nnx.Linear(8, 1, rngs=rngs)

  def __call__(self, x):
    return self.out(jnp.tanh(self.hidden(x)))[:, 0]


def test_nnx_optimizer_reduces_loss():
  x = jax.random.normal(jax.random.key(1), (64, 3))
  y = jnp.sin(x @ jnp.array([1.0, -2.0, 0.5]))
  model = Regressor(nnx.Rngs(0))
  optimizer = nnx.Optimizer(
      model, optax.chain(optax.clip_by_global_norm(1.0), l2l.lstm_optimizer()),
      wrt=nnx.Param)
  loss_fn = lambda m: jnp.mean((m(x) - y) ** 2)

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  first = float(loss_fn(model))
  for _ in range(100):
    step(model, optimizer)
  assert float(loss_fn(model)) < 0.7 * first


def test_nnx_optimizer_takes_the_plain_optax_steps():
  """Through ``nnx.Optimizer`` (which hands params and stored dicts back as
  ``nnx.State``) the default takes exactly the steps it takes on plain
  dicts."""
  model = Regressor(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (16, 3))
  y = jnp.sin(x[:, 0])
  graphdef, state = nnx.split(model)
  params = nnx.to_pure_dict(state)

  def pure_loss(p):
    copy = nnx.split(nnx.merge(graphdef, state))[1]
    nnx.replace_by_pure_dict(copy, p)
    return jnp.mean((nnx.merge(graphdef, copy)(x) - y) ** 2)

  tx = l2l.lstm_optimizer()
  opt_state = tx.init(params)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  for _ in range(2):
    updates, opt_state = tx.update(jax.grad(pure_loss)(params), opt_state,
                                   params)
    params = optax.apply_updates(params, updates)
    optimizer.update(model, nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(
        model))
  got = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  assert jax.tree.structure(got) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
    assert jnp.array_equal(a, b)
