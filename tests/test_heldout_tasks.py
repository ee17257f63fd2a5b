"""Tests for tasks/heldout.py: the families never drawn in meta-training."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import tasks

HELDOUT = ("autoencoder", "linear_regression", "logistic_regression",
           "rosenbrock", "ill_conditioned_quadratic")
# name -> expected params shapes of the default task.
SHAPES = {
    "autoencoder": {"dense_0": {"w": (40, 16), "b": (16,)},
                    "head": {"w": (16, 40), "b": (40,)}},
    "linear_regression": (20,),
    "logistic_regression": {"head": {"w": (64, 10), "b": (10,)}},
    "rosenbrock": (2,),
    "ill_conditioned_quadratic": (20,),
}
EXACT = ("rosenbrock", "ill_conditioned_quadratic")


def _task(name, **kwargs):
  family = tasks.get_family(name, **kwargs)
  return family.sample_task(np.random.default_rng(0))


_init = jax.jit(lambda task, key: task.init_params(key))
_problem = jax.jit(lambda task, key: task.sample_problem(key))
_loss = jax.jit(lambda task, params, problem, key: task.loss(params, problem,
                                                             key))
_full_loss = jax.jit(lambda task, params, problem: task.full_loss(params,
                                                                  problem))


def test_registered_and_exported():
  for name in HELDOUT:
    assert name in tasks.FAMILIES
    assert tasks.get_family(name).name.endswith(name)
  for name in tasks.__all__:
    assert getattr(tasks, name) is not None, name


@pytest.mark.parametrize("name", HELDOUT)
def test_shapes_finite_and_vmap(name):
  task = _task(name)
  keys = jax.random.split(jax.random.key(0), 3)
  params = _init(task, keys[0])
  problem = _problem(task, keys[1])
  chex.assert_trees_all_equal_shapes_and_dtypes(
      params, jax.tree.map(lambda s: jnp.zeros(s, jnp.float32), SHAPES[name],
                           is_leaf=lambda s: isinstance(s, tuple)))
  loss = _loss(task, params, problem, keys[2])
  full_loss = _full_loss(task, params, problem)
  chex.assert_shape((loss, full_loss), ())
  chex.assert_tree_all_finite((loss, full_loss))
  if name in EXACT:
    assert loss == full_loss
  batch_params = jax.jit(jax.vmap(task.init_params))(keys)
  batch_problems = jax.jit(jax.vmap(task.sample_problem))(keys)
  losses = jax.jit(jax.vmap(task.loss))(batch_params, batch_problems, keys)
  chex.assert_shape(losses, (3,))
  chex.assert_tree_all_finite(losses)
  second = jax.tree.map(lambda leaf: leaf[1], (batch_params, batch_problems))
  np.testing.assert_allclose(losses[1], _loss(task, *second, keys[1]),
                             rtol=1e-4)


@pytest.mark.parametrize("name", HELDOUT)
def test_loss_decreases_under_adam(name):
  task = _task(name)
  opt = optax.adam(1e-2)
  problem = _problem(task, jax.random.key(1))

  @jax.jit
  def train(task, params, key):
    def step(carry, key):
      params, state = carry
      grads = jax.grad(task.loss)(params, problem, key)
      updates, state = opt.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None
    keys = jax.random.split(key, 30)
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), keys)
    return params

  params = _init(task, jax.random.key(0))
  before = _full_loss(task, params, problem)
  after = _full_loss(task, train(task, params, jax.random.key(2)), problem)
  assert bool(jnp.isfinite(after))
  assert after < before, (task.name, float(before), float(after))


def test_rosenbrock_minimum():
  task = _task("rosenbrock")
  at_minimum = jnp.asarray([1.0, 1.0], jnp.float32)
  assert float(task.full_loss(at_minimum, ())) == 0.0
  grad = jax.grad(task.full_loss)(at_minimum, ())
  np.testing.assert_array_equal(grad, [0.0, 0.0])
  start = task.init_params(jax.random.key(0))
  np.testing.assert_allclose(start, [-1.5, 2.0], atol=0.5)
  assert float(task.full_loss(start, ())) > 1.0
  # (a - x)² + b (y - x²)² at (0, 1): 1 + 100.
  assert float(task.full_loss(jnp.asarray([0.0, 1.0]), ())) == 101.0


def test_ill_conditioned_quadratic_spectrum():
  task = _task("ill_conditioned_quadratic")
  problems = jax.vmap(task.sample_problem)(jax.random.split(
      jax.random.key(0), 2))
  first = jax.tree.map(lambda leaf: leaf[0], problems)
  rotation = first.rotation
  np.testing.assert_allclose(rotation @ rotation.T, np.eye(20), atol=1e-5)
  assert not np.allclose(problems.rotation[0], problems.rotation[1])
  hessian = jax.hessian(task.full_loss)(jnp.zeros(20), first)
  eigenvalues = np.linalg.eigvalsh(np.asarray(hessian, np.float64))
  np.testing.assert_allclose(eigenvalues, np.geomspace(1e-3, 1e3, 20),
                             rtol=1e-2, atol=1e-3)
  assert float(task.full_loss(jnp.zeros(20), first)) == 0.0


def test_linear_regression_minimum_is_the_noise():
  task = _task("linear_regression")
  problem = task.sample_problem(jax.random.key(0))
  chex.assert_shape((problem.x, problem.w_star, problem.noise),
                    [(200, 20), (20,), (200,)])
  noise_only = task.full_loss(problem.w_star, problem)
  np.testing.assert_allclose(noise_only, np.mean(np.square(problem.noise)),
                             rtol=1e-5)
  assert float(noise_only) < 0.1 * float(
      task.full_loss(task.init_params(jax.random.key(0)), problem))


def test_data_families_have_splits():
  for name in ("autoencoder", "logistic_regression"):
    train, test = _task(name, split="train"), _task(name, split="test")
    assert train.x.shape[0] > test.x.shape[0]
  assert _task("autoencoder", split="test").x.shape == (1000, 40)
  assert _task("logistic_regression", split="test").x.shape == (360, 8, 8, 1)


def test_autoencoder_structure_options():
  task = _task("autoencoder", dataset="digits", hidden_sizes=((32, 8, 32),),
               activations=("relu",), batch_sizes=(16,))
  params = task.init_params(jax.random.key(0))
  assert [params[k]["w"].shape for k in ("dense_0", "dense_1", "dense_2",
                                         "head")] == [(64, 32), (32, 8),
                                                      (8, 32), (32, 64)]
  assert task.name == "digits_autoencoder_32x8x32_relu_b16"
  # A perfect reconstruction has zero loss.
  identity = {"dense_0": {"w": jnp.eye(4), "b": jnp.zeros(4)},
              "head": {"w": jnp.eye(4), "b": jnp.zeros(4)}}
  small = tasks.AutoencoderTask(x=jnp.full((5, 4), 0.5), hidden_sizes=(4,),
                                activation="relu")
  assert float(small.full_loss(identity, ())) == 0.0


@pytest.mark.parametrize("name, kwargs", [
    ("autoencoder", dict(hidden_sizes=((),))),
    ("autoencoder", dict(split="valid")),
    ("linear_regression", dict(dim=0)),
    ("linear_regression", dict(noise_std=-1.0)),
    ("logistic_regression", dict(dataset="imagenet")),
    ("ill_conditioned_quadratic", dict(min_eigenvalue=0.0)),
])
def test_bad_options_are_refused(name, kwargs):
  with pytest.raises(ValueError):
    tasks.get_family(name, **kwargs)
