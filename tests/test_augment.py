"""Task augmentation: the augmented task's optimum and start map back to the
original's, shapes and dtypes are kept, scales are traced, and randomised
horizons give every run with one seed the same episodes."""

import argparse

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from meta_train import config as config_lib
from meta_train import train


class _TreeQuadratic:
  """``|A w - y|^2 + |b - 1|^2`` over a dict of a matrix and a vector; not a
  pytree (a user's plain class), with an exact optimum."""
  name = 'tree_quadratic'

  def init_params(self, key):
    return {'w': jax.random.normal(key, (3, 2)), 'b': jnp.zeros(2)}

  def sample_problem(self, key):
    a, y = jax.random.normal(key, (2, 3, 3))
    return a + 3 * jnp.eye(3), y[:, :2]

  def loss(self, params, problem, key):
    del key
    a, y = problem
    return (jnp.sum((a @ params['w'] - y)**2)
            + jnp.sum((params['b'] - 1)**2))

  def full_loss(self, params, problem):
    return self.loss(params, problem, None)

  def optimum(self, problem):
    a, y = problem
    return {'w': jnp.linalg.solve(a, y), 'b': jnp.ones(2)}


def _quadratic_optimum(problem):
  return jnp.linalg.lstsq(problem.w, problem.y)[0]


CASES = {
    'quadratic': (tasks.QuadraticTask(dim=4), _quadratic_optimum),
    'tree_quadratic': (_TreeQuadratic(), _TreeQuadratic().optimum),
}


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('seed', [0, 1])
def test_optimum_and_start_map_back(case, seed):
  task, optimum = CASES[case]
  augmented = tasks.augment_task(task, np.random.default_rng(seed),
                                 param_scale_range=(0.01, 100.0))
  problem = augmented.sample_problem(jax.random.key(seed))
  theta = optimum(problem)
  phi = jax.tree.map(lambda s, t: t / s, augmented.param_scales, theta)
  chex.assert_trees_all_close(augmented.original_params(phi), theta,
                              rtol=1e-5)
  # phi* is a stationary point (per leaf, against a point 0.1 away), and
  # the loss is the original's times c.
  gradient = jax.grad(augmented.full_loss)
  for at_optimum, away in zip(
      jax.tree.leaves(gradient(phi, problem)),
      jax.tree.leaves(gradient(jax.tree.map(lambda p: p + 0.1, phi),
                               problem))):
    assert jnp.max(jnp.abs(at_optimum)) < 1e-3 * jnp.max(jnp.abs(away))
  np.testing.assert_allclose(
      augmented.full_loss(phi, problem),
      augmented.loss_scale * task.full_loss(theta, problem), rtol=1e-4,
      atol=1e-5)
  # the chain rule: grad_phi = c s grad_theta, at any point
  point = jax.tree.map(lambda p: p + 0.3, phi)
  want = jax.tree.map(
      lambda s, g: augmented.loss_scale * s * g, augmented.param_scales,
      jax.grad(task.full_loss)(augmented.original_params(point), problem))
  chex.assert_trees_all_close(jax.grad(augmented.full_loss)(point, problem),
                              want, rtol=1e-4)
  # the start is the original's
  key = jax.random.key(7)
  chex.assert_trees_all_close(
      augmented.original_params(augmented.init_params(key)),
      task.init_params(key), rtol=1e-6)


def test_shapes_dtypes_and_one_structure_for_all_scales():
  family = tasks.AugmentedFamily(tasks.get_family('quadratic', dim=3))
  drawn = [family.sample_task(np.random.default_rng(i)) for i in range(3)]
  assert family.name == 'augmented_quadratic'
  assert len({jax.tree.structure(t) for t in drawn}) == 1
  assert len({float(t.loss_scale) for t in drawn}) == 3
  for t in drawn:
    assert 0.1 <= float(jax.tree.leaves(t.param_scales)[0]) <= 10.0
    assert 0.01 <= float(t.loss_scale) <= 100.0

  @jax.jit
  @chex.assert_max_traces(n=1)
  def losses(task, keys):
    def one(key):
      params = task.init_params(key)
      return params, task.loss(params, task.sample_problem(key), key)
    return jax.vmap(one)(keys)

  original = tasks.QuadraticTask(dim=3)
  for t in drawn:
    params, loss = losses(t, jax.random.split(jax.random.key(0), 2))
    assert params.shape == (2, 3) and params.dtype == jnp.float32
    assert loss.shape == (2,) and loss.dtype == jnp.float32
    assert jnp.all(jnp.isfinite(loss))
  chex.assert_trees_all_equal_shapes_and_dtypes(
      drawn[0].init_params(jax.random.key(0)),
      original.init_params(jax.random.key(0)))


@pytest.mark.parametrize('kwargs, message', [
    (dict(param_scale_range=(0.0, 1.0)), 'param_scale_range must satisfy'),
    (dict(loss_scale_range=(2.0, 1.0)), 'loss_scale_range must satisfy'),
    (dict(loss_scale_range=3.0), 'loss_scale_range must be a pair'),
])
def test_bad_ranges_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    tasks.AugmentedFamily(tasks.get_family('quadratic'), **kwargs)


def test_family_required():
  with pytest.raises(TypeError, match='needs a task family'):
    tasks.AugmentedFamily(tasks.QuadraticTask())


def test_meta_train_flags_augment_and_randomise_horizons():
  parser = argparse.ArgumentParser()
  config_lib.add_arguments(parser)
  config = config_lib.from_arguments(parser.parse_args(
      ['--augment', '--random-horizons', '--design', 'compact',
       '--unroll-length', '5', '--episode-length', '20', '--meta-steps',
       '200', '--num-tasks', '2']))
  assert config.augment and config.random_horizons
  trainer = train.Trainer(config)
  assert isinstance(trainer.task(3), tasks.AugmentedTask)
  episodes = [trainer.episode_of(step) for step in range(200)]
  assert episodes[0] == (0, 0)
  lengths = np.bincount([e for e, _ in episodes])[:-1]  # whole episodes
  assert lengths.min() >= 1 and lengths.max() <= 7
  assert len(set(lengths.tolist())) > 2 and 2.5 < lengths.mean() < 5.5
  for (e0, o0), (e1, o1) in zip(episodes, episodes[1:]):
    assert (e1, o1) in ((e0, o0 + 1), (e0 + 1, 0))
  # the same seed gives the same episodes (a resumed run sees them again)
  assert [train.Trainer(config).episode_of(s) for s in range(200)] == episodes
  fixed = train.Trainer(config_lib.TrainConfig(unroll_length=5,
                                               episode_length=20))
  assert [fixed.episode_of(s) for s in (0, 3, 4, 9)] == [
      (0, 0), (0, 3), (1, 0), (2, 1)]


def _subset_task(num_examples: int, min_examples: int):
  """A linear classifier on ``num_examples`` random inputs, trained on
  random subsets of at least ``min_examples``."""
  x = jax.random.normal(jax.random.key(0), (num_examples, 3))
  base = tasks.MLPTask(x=x, y=jnp.ones(num_examples, jnp.int32),
                       hidden_sizes=(), batch_size=16, name='linear')
  return tasks.SubsetTask(base, min_examples)


def _confident(task):
  """Zero weights and a head bias of 10 on class 0: an example labelled 0
  costs ~4.5e-4, one labelled 1 costs ~10."""
  params = task.init_params(jax.random.key(1))
  params = jax.tree.map(jnp.zeros_like, params)
  params['head']['b'] = params['head']['b'].at[0].set(10.0)
  return params


@pytest.mark.parametrize('num_examples, min_examples', [
    (200, 20), (200, 200), (57, 1)])
def test_subset_problems_train_on_their_subset_only(num_examples,
                                                    min_examples):
  task = _subset_task(num_examples, min_examples)
  params = _confident(task)
  relabelled = lambda y: task.replace(task=task.task.replace(y=y))
  loss = jax.jit(lambda y, problem, key: relabelled(y).loss(
      params, problem, key))
  full_loss = jax.jit(lambda y, problem: relabelled(y).full_loss(
      params, problem))
  sizes = []
  for seed in range(8):
    size, offset = problem = task.sample_problem(jax.random.key(seed))
    assert size.dtype == jnp.int32 and size.shape == offset.shape == ()
    assert min_examples <= int(size) <= num_examples
    assert 0 <= int(offset) < num_examples
    sizes.append(int(size))
    # Label 0 (cheap) exactly on the subset's positions, 1 (dear) elsewhere.
    inside = (np.arange(num_examples) - int(offset)) % num_examples < int(size)
    y = jnp.asarray(np.where(inside, 0, 1), jnp.int32)
    assert float(full_loss(y, problem)) < 1e-3
    assert float(full_loss(1 - y, problem)) > 9
    for key in range(4):
      batch = loss(y, problem, jax.random.key(key))
      assert batch.shape == () and float(batch) < 1e-3
  # Problems of every size ran one compiled program.
  assert loss._cache_size() == 1 and full_loss._cache_size() == 1
  if min_examples < num_examples:
    assert len(set(sizes)) > 3  # sizes vary across problems


def test_subset_family_errors():
  family = tasks.get_family('mnist1d_mlp_paper')
  with pytest.raises(ValueError, match='min_examples must be in 1..4000'):
    tasks.SubsetFamily(family, 5000).sample_task(np.random.default_rng(0))
  with pytest.raises(TypeError, match='data-set classifiers'):
    tasks.SubsetFamily(tasks.get_family('quadratic')).sample_task(
        np.random.default_rng(0))
  with pytest.raises(TypeError, match='needs a task family'):
    tasks.SubsetFamily(object())
  task = tasks.SubsetFamily(family, 500).sample_task(np.random.default_rng(0))
  assert task.name.startswith('subset500_mnist1d_mlp')


def test_subsets_of_a_mixture_keep_members_without_data():
  mixture = tasks.get_family('quadratic+mnist1d_mlp_paper')
  family = tasks.on_subsets(mixture, 300)
  assert isinstance(family, tasks.MixtureFamily)
  quadratic, mlp = family.families
  assert quadratic is mixture.families[0]
  assert isinstance(mlp, tasks.SubsetFamily) and mlp.min_examples == 300
  names = {type(family.sample_task(np.random.default_rng(seed))).__name__
           for seed in range(8)}
  assert names == {'QuadraticTask', 'SubsetTask'}
  with pytest.raises(ValueError, match='min_examples must be in 1..4000'):
    tasks.on_subsets(mixture, 5000)
  with pytest.raises(TypeError, match='no member of quadratic\\+x_squared'):
    tasks.on_subsets(tasks.get_family('quadratic+x_squared'), 300)
  with pytest.raises(TypeError, match='data-set classifiers'):
    tasks.on_subsets(tasks.get_family('quadratic'), 300)
