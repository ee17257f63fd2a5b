"""python -m meta_train.tune at toy size: summary.json's shape, the costs,
the plots, resuming from the journal, Optuna's ask/tell and its extra, and
the regularisation problems."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_train import tune
from tasks import regularisation

pytest.importorskip('sklearn')
ARGS = ['--suite', 'small', '--problems', 'digits_mlp', '--num-steps', '10',
        '--quiet']


@pytest.fixture(scope='module')
def tuned(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('tune'))
  summary = tune.main(ARGS + ['--out', out, '--methods', 'online', 'grid'])
  return out, summary


def test_summary_is_shaped_as_documented(tuned):
  out, summary = tuned
  with open(os.path.join(out, 'summary.json')) as f:
    assert json.load(f) == summary
  methods = summary['problems']['digits_mlp']
  assert list(summary['problems']) == ['digits_mlp']
  assert list(methods) == ['online', 'grid']
  for record in methods.values():
    assert set(record) == set(tune.FIELDS)
    assert all(np.isfinite(v) for v in record.values())
    assert 0.0 <= record['test_accuracy'] <= 1.0


# At 10 steps, ten scorings of each member on the whole validation split
# weigh more than training: the grid costs more than its 16 runs. The online
# tuner's one hypergradient step (a step, two tangents and a validation
# minibatch: about 4.7 steps' flops) costs a third more than a plain run.
@pytest.mark.parametrize('method,low,high', [
    ('online', 1.1, 2.0), ('grid', 16.0, 48.0)])
def test_cost_is_counted_in_training_runs(tuned, method, low, high):
  cost = tuned[1]['problems']['digits_mlp'][method]['cost_runs']
  assert low < cost < high, cost


def test_plots_and_journal_are_written_and_a_rerun_resumes(tuned):
  out, summary = tuned
  for name in ('cost.png', 'trajectories_digits_mlp.png'):
    with open(os.path.join(out, name), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  journal = os.path.join(out, 'runs.jsonl')
  records = tune.read_journal(journal)
  assert sorted(r['method'] for r in records) == sorted(
      ['online', 'grid', 'default'])
  trajectory = next(r for r in records if r['method'] == 'online')[
      'trajectory']
  assert set(trajectory) == {'steps', 'weight_decay', 'dropout'}
  assert len(trajectory['steps']) == len(trajectory['dropout']) == 10
  again = tune.main(ARGS + ['--out', out, '--methods', 'grid'])
  assert len(tune.read_journal(journal)) == len(records)
  assert again['problems']['digits_mlp']['grid'] == summary['problems'][
      'digits_mlp']['grid']


def test_optuna_tpe_runs_sixteen_trials_through_ask_tell(tmp_path):
  pytest.importorskip('optuna')
  summary = tune.main(ARGS + ['--out', str(tmp_path), '--methods',
                              'optuna_tpe'])
  record = summary['problems']['digits_mlp']['optuna_tpe']
  assert record['cost_runs'] == 16.0 and np.isfinite(record['val_loss'])


def test_missing_optuna_names_the_extra(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'optuna', None)
  with pytest.raises(ImportError, match=r"l2l\[tune\]"):
    tune.main(ARGS + ['--out', str(tmp_path), '--methods', 'optuna_tpe'])


@pytest.mark.parametrize('name', sorted(regularisation.PROBLEMS))
def test_problems_have_declared_hyperparameters(name):
  problem = regularisation.make_problem(name, seed=1, num_steps=5)
  assert len(problem.space.names) == 2 and problem.num_steps == 5
  assert problem.x_train.shape[0] < 1500 and problem.x_test.dtype == jnp.float32
  assert problem.y_train.dtype == jnp.int32
  assert problem.x_train.shape[1:] == problem.x_val.shape[1:]
  assert set(np.unique(problem.y_test)) <= set(range(10))


def test_convnet_loss_is_finite_and_differentiable_in_its_hyperparameters():
  problem = regularisation.make_problem('mnist1d_conv_noisy', num_steps=5)
  params = problem.init_params(jax.random.key(0))
  loss = lambda u: problem.train_loss(params, problem.space.from_unit(u),
                                      jax.random.key(1))
  value, grads = jax.jit(jax.value_and_grad(loss))(problem.space.init())
  assert value.shape == () and np.isfinite(value)
  assert abs(float(grads['label_smoothing'])) > 0
  assert float(grads['weight_decay']) == 0.0  # optimizer side, not the loss


@pytest.mark.parametrize('kwargs,match', [
    (dict(name='imagenet'), 'Unknown problem'),
    (dict(name='digits_mlp', size='huge'), 'Unknown size'),
    (dict(name='digits_mlp', num_steps=0), 'positive'),
])
def test_make_problem_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    regularisation.make_problem(**kwargs)
