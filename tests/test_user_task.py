"""Meta-training on a user's own task: l2l.meta_train and --task."""

import dataclasses
import json
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import l2l
import tasks
from meta_train import __main__ as cli
from meta_train import config as config_lib
from meta_train import train as train_lib

SPEC = 'tests.test_user_task:'
# The sizes of every run here: a few seconds of compilation each.
SMALL = dict(meta_steps=3, num_tasks=2, unroll_length=5, es_pairs=2)
ARCHITECTURE = dict(design='paper', hidden_size=4, num_layers=1)


@struct.dataclass
class LeastSquares:
  """Fit ``{'w', 'b'}`` to ``y = x w* + 1`` on 16 examples of 4 features.

  ``scale`` multiplies the inputs (traced, so a family can vary it without
  recompiling); with ``fixed`` every problem is the same one.
  """
  scale: float = 1.0
  fixed: bool = struct.field(pytree_node=False, default=False)
  name: str = struct.field(pytree_node=False, default='least_squares')

  def init_params(self, key):
    del key
    return {'w': jnp.zeros(4), 'b': jnp.zeros([])}

  def sample_problem(self, key):
    x_key, w_key = jax.random.split(jax.random.key(0) if self.fixed else key)
    x = self.scale * jax.random.normal(x_key, (16, 4))
    return x, x @ jax.random.normal(w_key, (4,)) + 1.0

  def loss(self, params, problem, key):
    del key
    return self.full_loss(params, problem)

  def full_loss(self, params, problem):
    x, y = problem
    return jnp.mean(jnp.square(x @ params['w'] + params['b'] - y))


class PlainQuadratic:
  """A task that is not a pytree: ``|x - c|^2 / 2 + (s - 1)^2 / 2``."""
  name = 'plain_quadratic'

  def init_params(self, key):
    del key
    return {'x': jnp.zeros(3), 's': jnp.zeros([])}

  def sample_problem(self, key):
    return jax.random.normal(key, (3,))

  def loss(self, params, problem, key):
    del key
    return self.full_loss(params, problem)

  def full_loss(self, params, problem):
    return 0.5 * (jnp.sum(jnp.square(params['x'] - problem))
                  + jnp.square(params['s'] - 1.0))


@dataclasses.dataclass(frozen=True)
class LeastSquaresFamily:
  """Least squares with a random input scale: one structure, many tasks."""
  name = 'least_squares_family'

  def sample_task(self, rng):
    return LeastSquares(scale=float(rng.uniform(0.5, 2.0)))


TASK = LeastSquares()
NOT_A_TASK = 42


def _initial(key=0):
  """The meta-params python -m meta_train starts from with ARCHITECTURE."""
  return l2l.init_meta_params(jax.random.split(jax.random.key(key), 3)[0],
                              **ARCHITECTURE)


@pytest.mark.parametrize('estimator, task', [
    ('es', TASK), ('bptt', PlainQuadratic()), ('bptt', LeastSquaresFamily()),
    ('pes', TASK), ('pes', LeastSquaresFamily())])
def test_meta_train_returns_meta_params_like_its_input(estimator, task):
  start = _initial()
  seen = []
  meta_params, log = l2l.meta_train(
      task, key=jax.random.key(3), meta_params=start, estimator=estimator,
      trainable='all', progress=lambda step, m: seen.append(step), **SMALL)
  chex.assert_trees_all_equal_shapes_and_dtypes(meta_params, start)
  assert not np.array_equal(meta_params['params']['output']['kernel'],
                            start['params']['output']['kernel'])
  assert set(log) == {'meta_loss', 'final_loss', 'grad_norm', 'skipped',
                      'num_skipped'}
  for name, values in log.items():
    assert values.shape == (3,), name
    assert np.all(np.isfinite(values)), name
  assert log['grad_norm'].min() > 0 and not log['skipped'].any()
  assert seen == [0, 1, 2]
  # The start was copied, not donated.
  chex.assert_trees_all_equal(start, _initial())


def test_meta_train_compiles_its_step_once():
  """The state enters the first step placed as the step returns it, so
  later steps and episodes do not trace (and compile) the step again."""
  traces = []

  class Counted(PlainQuadratic):
    def loss(self, params, problem, key):
      traces.append(None)  # runs when traced only
      return super().loss(params, problem, key)

  counts = []
  for meta_steps in (1, 4):
    traces.clear()
    l2l.meta_train(Counted(), meta_params=_initial(), estimator='bptt',
                   meta_steps=meta_steps, num_tasks=2, unroll_length=5,
                   truncations_per_episode=2)
    counts.append(len(traces))
  assert counts[0] > 0 and counts[0] == counts[1], counts


def test_es_lowers_the_meta_loss():
  # One fixed problem: the meta-loss depends on the meta-params only.
  _, log = l2l.meta_train(LeastSquares(fixed=True), meta_params=_initial(),
                          meta_steps=30, num_tasks=1, unroll_length=5,
                          meta_lr=0.03, trainable='all')
  first, last = log['meta_loss'][:5].mean(), log['meta_loss'][-5:].mean()
  assert last < first - 1.0, (first, last)


@pytest.mark.parametrize('arguments, message', [
    (dict(task=object()), 'task must have the methods init_params'),
    (dict(task=PlainQuadratic), 'task must be an instance, got the class'),
    (dict(estimator='reinforce'),
     r"estimator must be one of \('bptt', 'es', 'pes'\)"),
    (dict(design='rnnprop'), 'design must be one of'),
    (dict(trainable='lstm'), 'trainable must be one of'),
    (dict(meta_steps=-1), 'meta_steps must be an int of at least 0'),
    (dict(num_tasks=0), 'num_tasks must be an int of at least 1'),
    (dict(unroll_length=2.5), 'unroll_length must be an int of at least 1'),
    (dict(truncations_per_episode=0), 'truncations_per_episode must be'),
    (dict(es_pairs=0), 'es_pairs must be an int of at least 1'),
    (dict(meta_lr=0.0), 'meta_lr must be positive'),
    (dict(es_sigma=-1.0), 'es_sigma must be positive'),
    (dict(clip_norm=float('nan')), 'clip_norm must be positive'),
    (dict(progress=True), 'progress must be None or callable'),
    (dict(key=-1), 'key must be a non-negative seed'),
])
def test_bad_arguments_are_named(arguments, message):
  arguments = {'task': TASK, **arguments}
  with pytest.raises(ValueError, match=message):
    l2l.meta_train(arguments.pop('task'), **arguments)


def test_zero_meta_steps_returns_the_start():
  start = _initial()
  meta_params, log = l2l.meta_train(TASK, meta_params=start, meta_steps=0)
  chex.assert_trees_all_equal(meta_params, start)
  assert all(values.shape == (0,) for values in log.values())


def test_command_line_task_trains_evaluates_and_matches_meta_train(
    tmp_path, capsys):
  cli.main(['--task', SPEC + 'TASK', '--meta-steps', '3', '--num-tasks', '2',
            '--unroll-length', '5', '--episode-length', '5', '--es-pairs', '2',
            '--design', 'paper', '--hidden-size', '4', '--num-layers', '1',
            '--seed', '7', '--eval-seeds', '2', '--out', str(tmp_path),
            '--no-progress', '--compilation-cache', ''])
  with open(tmp_path / 'eval.json') as f:
    results = json.load(f)
  assert results['family'] == 'least_squares'
  assert len(results['optimizers']['adam']['final_losses']) == 2
  saved, manifest = l2l.load_meta_params(tmp_path / train_lib.META_PARAMS)
  assert manifest['task_family'] == SPEC + 'TASK'
  # The library gives the program's meta-params and log, bit for bit.
  meta_params, log = l2l.meta_train(TASK, key=7, meta_params=_initial(7),
                                    **SMALL)
  chex.assert_trees_all_equal(meta_params, saved)
  with open(tmp_path / train_lib.LOG) as f:
    logged = [json.loads(line)['meta_loss'] for line in f]
  np.testing.assert_array_equal(np.float32(logged), log['meta_loss'])
  assert '| adam |' in capsys.readouterr().out


def test_resume_checks_the_task_spec(tmp_path):
  config = config_lib.TrainConfig(family=SPEC + 'TASK', meta_steps=2,
                                 num_tasks=1, unroll_length=2,
                                 episode_length=2, **ARCHITECTURE)
  train_lib.train(config, tmp_path, progress=False, stop_after=1)
  other = dataclasses.replace(config, family=SPEC + 'LeastSquaresFamily')
  with pytest.raises(ValueError, match='resume with the same flags'):
    train_lib.train(other, tmp_path, resume=True, progress=False)


@pytest.mark.parametrize('spec, kind', [
    ('TASK', 'SingleTaskFamily'),
    ('PlainQuadratic', 'SingleTaskFamily'),  # a class, called
    ('LeastSquaresFamily', 'LeastSquaresFamily'),
])
def test_get_family_resolves_specs(spec, kind):
  family = tasks.get_family(SPEC + spec)
  # By name: pytest imported this file as another module than the spec's.
  assert type(family).__name__ == kind
  task = family.sample_task(np.random.default_rng(0))
  params = task.init_params(jax.random.key(0))
  loss = task.full_loss(params, task.sample_problem(jax.random.key(1)))
  assert loss.shape == () and float(loss) > 0


@pytest.mark.parametrize('spec, message', [
    ('tests.test_user_task:', "is not of the form 'package.module:object'"),
    (':TASK', "is not of the form 'package.module:object'"),
    ('tests.no_such_module:TASK', "cannot import module 'tests.no_such_module'"),
    (SPEC + 'MISSING', "has no attribute 'MISSING'"),
    (SPEC + 'NOT_A_TASK', 'int object is neither a Task'),
])
def test_bad_specs_are_named(spec, message):
  with pytest.raises(ValueError, match=re.escape(repr(spec)) + '.*' + message):
    tasks.get_family(spec)


def test_command_line_refuses_a_malformed_task_or_both_flags(tmp_path,
                                                             capsys):
  for argv in (['--task', 'TASK'],
               ['--task', SPEC + 'TASK', '--family', 'quadratic']):
    with pytest.raises(SystemExit):
      cli.main(argv + ['--meta-steps', '0', '--no-eval', '--out',
                       str(tmp_path)])
  errors = capsys.readouterr().err
  assert "expected 'package.module:object', got 'TASK'" in errors
  assert 'not allowed with argument' in errors
