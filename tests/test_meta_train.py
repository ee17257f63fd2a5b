"""The meta-training program: resume, logs, evaluation, command line."""

import argparse
import dataclasses
import json
import os
import re
import shutil

import chex
import jax
import numpy as np
import optax
import pytest

import l2l
import tasks
from meta_train import __main__ as cli
from meta_train import config as config_lib
from meta_train import evaluate
from meta_train import train as train_lib

SMALL = config_lib.TrainConfig(family='quadratic', meta_steps=10, num_tasks=3,
                               unroll_length=5, episode_length=20,
                               checkpoint_every=4)


TWO_STRUCTURES = dataclasses.replace(
    SMALL, family='quadratic+x_squared', seed=1, meta_steps=4,
    episode_length=10, num_tasks=2, design='paper', hidden_size=4,
    num_layers=1)


def _log(out_dir):
  with open(os.path.join(out_dir, train_lib.LOG)) as f:
    return [json.loads(line) for line in f]


@pytest.mark.parametrize('config, stop_after', [
    (SMALL, 6),  # mid-episode, between checkpoints
    # Seed 1 draws a quadratic, then x^2: another task structure, resumed
    # in the second episode (on the paper design, whose two programs
    # compile in a third of the free design's time).
    (TWO_STRUCTURES, 3),
    (dataclasses.replace(SMALL, design='hyper', estimator='es', es_pairs=2,
                         hidden_size=4, meta_steps=5, episode_length=10),
     3),  # evolution strategies on the hyper design
    (dataclasses.replace(SMALL, estimator='pes', hidden_size=4, meta_steps=5,
                         episode_length=10),
     3),  # PES: accumulated perturbations resumed mid-episode
])
def test_resumed_run_matches_uninterrupted_run(tmp_path, config, stop_after):
  whole = train_lib.train(config, tmp_path / 'whole', progress=False)
  train_lib.train(config, tmp_path / 'split', progress=False,
                  stop_after=stop_after)
  assert not os.path.exists(tmp_path / 'split' / train_lib.META_PARAMS)
  resumed = train_lib.train(config, tmp_path / 'split', resume=True,
                            progress=False)
  _assert_same_run(tmp_path, whole, resumed, config.meta_steps)


def _assert_same_run(tmp_path, whole, split, meta_steps):
  """The runs in tmp_path/whole and tmp_path/split match bit for bit."""
  a, _ = l2l.load_meta_params(whole)
  b, manifest = l2l.load_meta_params(split)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert manifest['meta_steps'] == meta_steps
  log_whole, log_split = _log(tmp_path / 'whole'), _log(tmp_path / 'split')
  assert [r['step'] for r in log_split] == list(range(meta_steps))
  assert log_whole == log_split


def test_a_finished_run_can_be_extended(tmp_path):
  """Resuming with more --meta-steps continues as one longer run would."""
  longer = dataclasses.replace(SMALL, meta_steps=SMALL.meta_steps + 3)
  whole = train_lib.train(longer, tmp_path / 'whole', progress=False)
  train_lib.train(SMALL, tmp_path / 'split', progress=False)
  extended = train_lib.train(longer, tmp_path / 'split', resume=True,
                             progress=False)
  _assert_same_run(tmp_path, whole, extended, longer.meta_steps)
  with pytest.raises(ValueError, match='beyond --meta-steps'):
    train_lib.train(SMALL, tmp_path / 'split', resume=True, progress=False)


def _as_legacy_checkpoint(out_dir, config):
  """Replaces the run's checkpoints by the single ``checkpoint.npz`` that
  l2l 0.7 and earlier wrote; returns its path."""
  state, step, elapsed = train_lib._restore(train_lib.Trainer(config), out_dir)
  path = out_dir / 'checkpoint.npz'
  l2l.save_checkpoint(path, state, {
      'kind': 'meta_train_state', 'step': step, 'elapsed_s': elapsed,
      'config': dataclasses.asdict(config)})
  shutil.rmtree(out_dir / train_lib.CHECKPOINT)
  return path


def _strip_entries(path, suffix):
  """Rewrites the checkpoint at ``path`` without the entries ending in
  ``suffix``, as an l2l that did not have them would have saved it."""
  with np.load(path) as npz:
    arrays = {k: npz[k] for k in npz.files}
  manifest = json.loads(arrays.pop('manifest.json').tobytes().decode())
  arrays = {k: v for k, v in arrays.items() if not k.endswith(suffix)}
  manifest['leaves'] = {k: v for k, v in manifest['leaves'].items()
                        if not k.endswith(suffix)}
  arrays['manifest.json'] = np.frombuffer(json.dumps(manifest).encode(),
                                          np.uint8)
  with open(path, 'wb') as f:
    np.savez(f, **arrays)


@pytest.mark.parametrize('entry', [
    'average_growth',  # saved by l2l 0.2.x
    'spike_cut',  # saved by l2l 0.3.x
    'second_moment_rate',  # saved by l2l 0.4.x
    'second_moment_warmup',  # saved by l2l 0.5.x
])
def test_a_free_run_saved_before_an_added_entry_resumes(tmp_path, entry):
  """A checkpoint without a free-design constant that a later l2l added
  resumes with it at 0, the rule it ran under, and fresh moments for it."""
  config = dataclasses.replace(SMALL, design='free', hidden_size=4,
                               meta_steps=6)
  train_lib.train(config, tmp_path, progress=False, stop_after=4)
  path = _as_legacy_checkpoint(tmp_path, config)
  suffix = f"['nominal']['{entry}']"
  _strip_entries(path, suffix)
  state, _ = l2l.load_checkpoint(path,
                                 train_lib.Trainer(config).state_like(4))
  filled = [x for k, x in jax.tree_util.tree_flatten_with_path(state)[0]
            if jax.tree_util.keystr(k).endswith(suffix)]
  assert len(filled) == 3  # the meta-param and its two Adam moments
  assert all(float(x) == 0.0 for x in filled)
  train_lib.train(config, tmp_path, resume=True, progress=False)
  _, manifest = l2l.load_meta_params(tmp_path / train_lib.META_PARAMS)
  assert manifest['meta_steps'] == 6
  assert [r['step'] for r in _log(tmp_path)] == list(range(6))


def test_resume_with_other_flags_is_refused(tmp_path):
  train_lib.train(SMALL, tmp_path, progress=False, stop_after=4)
  with pytest.raises(ValueError, match='resume with the same flags: '
                     'meta_lr was 0.003, now 0.1$'):
    train_lib.train(dataclasses.replace(SMALL, meta_lr=0.1), tmp_path,
                    resume=True, progress=False)


def test_log_records_skipped_steps(tmp_path):
  train_lib.train(SMALL, tmp_path, progress=False)
  records = _log(tmp_path)
  assert len(records) == SMALL.meta_steps
  assert all(r['num_skipped'] == 0 and r['skipped'] is False for r in records)
  assert all(np.isfinite(r['meta_loss']) for r in records)


@pytest.mark.parametrize('field, value, message', [
    ('episode_length', 22, 'multiple of unroll_length'),
    ('num_tasks', 0, 'num_tasks must be at least 1'),
    ('meta_steps', -1, 'meta_steps must be at least 0'),
    ('meta_lr', -1.0, 'must be positive'),
    ('estimator', 'reinforce',
     r"estimator must be one of \('bptt', 'es', 'pes'\)"),
    ('es_sigma', 0.0, 'es_sigma must be positive'),
    ('second_order', True, "second_order applies to estimator='bptt' only"),
    ('train_only', 'lstm',
     r"train_only must be one of \('all', 'readout', 'output', 'learned', "
     r"'scheduler', 'step_sizes'\)"),
    ('es_fitness', 'ranks', r"es_fitness must be one of \('difference', 'rank'\)"),
    ('es_pairs', 0, 'es_pairs must be at least 1'),
    ('validate_every', -1, 'validate_every must be at least 0'),
    ('validate_problems', 0, 'validate_problems must be at least 1'),
    ('loss_weighting', 'final',
     r"loss_weighting must be one of \('uniform', 'linear'\)"),
    ('design', 'rnnprop', r"design must be one of \['adaptive', 'compact', "
     r"'free', 'hyper', 'paper'\], got 'rnnprop'"),
])
def test_config_validation(field, value, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(SMALL, **{field: value})


@pytest.mark.parametrize('flag, words', [
    ('--train-only', "'scheduler': the LSTM alone"),
    ('--family', 'quadratic_weighted'),
    ('--augment', 'per-tensor parameter scales'),
    ('--random-horizons', 'uniformly from 1 .. 2 E - 1'),
    ('--hidden-size', 'LSTM units per layer (default: 20)'),
])
def test_every_flag_says_what_it_does(flag, words):
  """Each TrainConfig field's docstring entry is its flag's help."""
  parser = argparse.ArgumentParser()
  config_lib.add_arguments(parser)
  helps = {option: action.help for action in parser._actions
           for option in action.option_strings}
  fields = {'--' + f.name.replace('_', '-')
            for f in dataclasses.fields(config_lib.TrainConfig)}
  assert fields <= set(helps)
  assert all(helps[f] and '(default: ' in helps[f] and '``' not in helps[f]
             for f in fields)
  assert words in helps[flag]


def test_pes_takes_no_rank_fitness():
  with pytest.raises(ValueError, match="'rank' applies to estimator='es'"):
    dataclasses.replace(SMALL, estimator='pes', es_fitness='rank')


@pytest.mark.parametrize('weighting, want', [
    ('uniform', [1.0, 1.0, 1.0, 1.0]),
    ('linear', [0.4, 0.8, 1.2, 1.6]),
])
def test_loss_weights(weighting, want):
  config = dataclasses.replace(SMALL, loss_weighting=weighting,
                               unroll_length=4, episode_length=8)
  np.testing.assert_allclose(config.loss_weights, want, rtol=1e-6)
  assert config.loss_weights.dtype == np.float32


def test_linear_weighting_changes_the_meta_loss():
  # The weighting is the same for every design: the paper design's
  # meta-step compiles in a third of the free design's time.
  config = dataclasses.replace(SMALL, design='paper', hidden_size=4,
                               num_layers=1)
  uniform = train_lib.Trainer(config)
  linear = train_lib.Trainer(dataclasses.replace(config,
                                                 loss_weighting='linear'))
  metrics = [trainer.step(trainer.initial_state(), 0)[1]['meta_loss']
             for trainer in (uniform, linear)]
  assert np.all(np.isfinite(metrics)) and metrics[0] != metrics[1]


def test_zero_meta_steps_writes_the_initial_meta_params(tmp_path):
  config = dataclasses.replace(SMALL, meta_steps=0, design='hyper')
  path = train_lib.train(config, tmp_path, progress=False)
  meta_params, manifest = l2l.load_meta_params(path)
  want = train_lib.Trainer(config).initial_state().meta_params
  chex.assert_trees_all_equal(meta_params, want)
  assert manifest['meta_steps'] == 0 and _log(tmp_path) == []


def test_unknown_family_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match='valid names'):
    train_lib.train(dataclasses.replace(SMALL, family='nope'), tmp_path,
                    progress=False)


def test_secret_adam_scores_as_adam():
  """A candidate that is Adam at lr 0.03 must score exactly as that Adam."""
  family = tasks.get_family('quadratic')
  results = evaluate.evaluate(
      family, {'secret_adam': optax.adam(0.03)}, num_steps=30, seeds=[0, 1, 2],
      baselines={'adam': optax.adam})
  lr_index = evaluate.LR_GRID.index(0.03)
  adam = results['optimizers']['adam']
  secret = results['optimizers']['secret_adam']
  np.testing.assert_allclose(secret['final_losses'],
                             adam['grid_final_losses'][lr_index], rtol=1e-5)
  means = np.mean(adam['grid_final_losses'], axis=1)
  assert adam['lr'] == evaluate.LR_GRID[int(np.argmin(means))]
  assert adam['mean_final_loss'] <= secret['mean_final_loss'] * (1 + 1e-6)
  assert 0 < secret['adam_steps_ratio'] <= 1.0


def test_diverging_runs_are_counted():
  family = tasks.get_family('quadratic')
  results = evaluate.evaluate(family, {'huge_sgd': optax.sgd(10.0)},
                              num_steps=20, seeds=[0, 1], baselines={})
  entry = results['optimizers']['huge_sgd']
  assert entry['num_diverged'] == 2


def test_command_line_trains_evaluates_and_plots(tmp_path, capsys):
  cli.main(['--family', 'x_squared', '--meta-steps', '8', '--num-tasks', '1',
            '--episode-length', '20', '--unroll-length', '10',
            '--eval-seeds', '3', '--out', str(tmp_path), '--no-progress'])
  for name in ('meta_params.npz', 'checkpoints', 'metrics.jsonl',
               'eval.json', 'eval.png'):
    assert (tmp_path / name).stat().st_size > 0, name
  with open(tmp_path / 'eval.json') as f:
    results = json.load(f)
  assert set(results['optimizers']) == {'adam', 'schedule_free_adamw',
                                        'rmsprop', 'sgd', 'nesterov',
                                        os.path.basename(tmp_path),
                                        'meta_params_initial'}
  assert len(results['optimizers']['adam']['final_losses']) == 3
  assert '| adam |' in capsys.readouterr().out
  # the legend says which optimizer the run's name stands for
  assert results['optimizers'][os.path.basename(tmp_path)]['description'] == (
      f'l2l {os.path.basename(tmp_path)} (free design, 8 meta-steps on '
      'x_squared)')


def test_dropping_compiled_programs_changes_nothing(tmp_path, monkeypatch):
  # Seed 1 draws quadratic, x^2, x^2, quadratic: with one program kept, the
  # quadratic's is dropped and compiled again. The config is the two-
  # structure resume case's but for its length, so that the test run's
  # compilation cache holds these programs once.
  config = dataclasses.replace(TWO_STRUCTURES, meta_steps=8)
  kept = train_lib.train(config, tmp_path / 'kept', progress=False)
  monkeypatch.setattr(train_lib, 'MAX_COMPILED_STRUCTURES', 1)
  dropped = train_lib.train(config, tmp_path / 'dropped', progress=False)
  jax.tree.map(np.testing.assert_array_equal, l2l.load_meta_params(kept)[0],
               l2l.load_meta_params(dropped)[0])
  trainer = train_lib.Trainer(config)
  assert [trainer.task(e).name for e in range(4)] == [
      'quadratic', 'x_squared', 'x_squared', 'quadratic']


def test_export_matches_a_run_of_that_length(tmp_path, capsys):
  from meta_train import export
  train_lib.train(SMALL, tmp_path / 'long', progress=False, stop_after=8)
  export.main([str(tmp_path / 'long'), '--out', str(tmp_path / 'e.npz')])
  exported, manifest = l2l.load_meta_params(tmp_path / 'e.npz')
  short = train_lib.train(dataclasses.replace(SMALL, meta_steps=8),
                          tmp_path / 'short', progress=False)
  jax.tree.map(np.testing.assert_array_equal, exported,
               l2l.load_meta_params(short)[0])
  assert manifest['meta_steps'] == 8 and '--meta-steps 8' in manifest['command']
  assert '--unroll-length 5' in capsys.readouterr().out


VALIDATED = dataclasses.replace(SMALL, meta_steps=6, validate_every=2,
                                validate_problems=2, validate_steps=10,
                                checkpoint_every=3)


def _validation_log(out_dir):
  with open(os.path.join(out_dir, 'validation.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_validation_keeps_the_best_meta_params_and_resumes(tmp_path):
  """Validation every 2 meta-steps: the log, the plot, the chosen step, and
  a run stopped between validations resumes to the same files."""
  whole = train_lib.train(VALIDATED, tmp_path / 'whole', progress=False)
  records = _validation_log(tmp_path / 'whole')
  assert [r['step'] for r in records] == [0, 2, 4, 6]
  scores = [r['score'] for r in records]
  assert all(np.isfinite(scores)) and len(records[0]['scores']) == 2
  np.testing.assert_allclose(scores, [np.mean(r['scores']) for r in records])
  meta_params, manifest = l2l.load_meta_params(whole)
  chosen = int(np.argmin(scores))
  assert manifest['selected_meta_step'] == records[chosen]['step']
  assert manifest['validation_score'] == scores[chosen]
  assert manifest['meta_steps'] == VALIDATED.meta_steps
  best, _ = l2l.load_meta_params(tmp_path / 'whole' / 'meta_params_best.npz')
  chex.assert_trees_all_equal(meta_params, best)
  initial, _ = l2l.load_meta_params(
      tmp_path / 'whole' / train_lib.INITIAL)
  assert (chosen == 0) == all(
      np.array_equal(a, b) for a, b in zip(jax.tree.leaves(meta_params),
                                           jax.tree.leaves(initial)))
  assert (tmp_path / 'whole' / 'meta_training.png').stat().st_size > 0
  train_lib.train(VALIDATED, tmp_path / 'split', progress=False, stop_after=3)
  assert [r['step'] for r in _validation_log(tmp_path / 'split')] == [0, 2]
  resumed = train_lib.train(VALIDATED, tmp_path / 'split', resume=True,
                            progress=False)
  assert _validation_log(tmp_path / 'split') == records
  chex.assert_trees_all_equal(l2l.load_meta_params(resumed)[0], meta_params)


@pytest.mark.parametrize('family, data_subsets, train_only, meta_steps, '
                         'problems', [
    ('quadratic', 0, 'all', 2, 2),
    ('mnist1d_mlp_paper', 500, 'output', 2, 2),
    # ES over a convnet's weights (a JAX batching error before tasks.conv
    # used its own convolution): 70 s of compiling on the 2-core CPU, over
    # the suite's budget, so only with L2L_SLOW=1.
    pytest.param('digits_conv', 300, 'output', 1, 1, marks=pytest.mark.skipif(
        not os.environ.get('L2L_SLOW'), reason='70 s; set L2L_SLOW=1')),
])
def test_per_family_command_at_toy_size(tmp_path, family, data_subsets,
                                        train_only, meta_steps, problems):
  """The per-family commands of docs/meta_training.md (compact design, ES,
  validation; subsets of the split for the data-set families), shrunk: they
  train and validate, and record the options in the manifest."""
  out = tmp_path / family
  subsets = ['--data-subsets', str(data_subsets)] if data_subsets else []
  cli.main(['--family', family, '--design', 'compact', '--hidden-size', '2',
            '--num-layers', '1', '--estimator', 'es', '--es-pairs', '1',
            '--num-tasks', '2', '--unroll-length', '4',
            '--episode-length', '4', '--meta-steps', str(meta_steps),
            '--validate-every', str(meta_steps),
            '--validate-problems', str(problems), '--validate-steps', '4',
            '--train-only', train_only, *subsets,
            '--no-eval', '--no-progress', '--out', str(out)])
  _, manifest = l2l.load_meta_params(out / 'meta_params.npz')
  assert manifest['train_config']['data_subsets'] == data_subsets
  assert manifest['train_config']['train_only'] == train_only
  assert manifest['meta_steps'] == meta_steps
  assert manifest['config']['design'] == 'compact'
  records = _validation_log(out)
  assert [r['step'] for r in records] == [0, meta_steps]
  assert all(np.isfinite(r['score']) for r in records)
  assert (out / 'meta_training.png').stat().st_size > 0
  if data_subsets:
    config = config_lib.TrainConfig(family=family, data_subsets=data_subsets)
    task = train_lib.Trainer(config).task(0)
    assert isinstance(task, tasks.SubsetTask)
    assert task.min_examples == data_subsets


@pytest.mark.parametrize('family, data_subsets, message', [
    ('quadratic', 10, 'needs data-set classifiers'),
    ('mnist1d_mlp_paper', 5000, r'min_examples must be in 1\.\.4000'),
    ('mnist1d_mlp_paper', -1, 'data_subsets must be at least 0')])
def test_data_subsets_are_checked_before_training(tmp_path, capsys, family,
                                                  data_subsets, message):
  with pytest.raises(SystemExit):
    cli.main(['--family', family, '--data-subsets', str(data_subsets),
              '--out', str(tmp_path / 'run')])
  assert re.search(message, capsys.readouterr().err)
  assert not (tmp_path / 'run').exists()


def test_validation_scores_a_known_optimizer():
  """The validator's score is the mean log10 of the tail of evaluate's curve."""
  from meta_train import validation
  family = tasks.get_family('quadratic')
  validator = validation.Validator(family, 2, 10)
  fresh = l2l.init_meta_params(jax.random.key(0), design='free')
  got = validator.scores(fresh)
  want = [np.log10(np.asarray(evaluate.trajectory(
      task, l2l.lstm_optimizer(fresh), key, 10))[-1])
          for task, key in validator.problems]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert got.shape == (2,)
  with pytest.raises(ValueError, match='at least one problem'):
    validation.Validator(family, 0, 10)


def test_resume_drops_log_lines_from_the_checkpoint_on_and_a_cut_off_one(
    tmp_path):
  path = tmp_path / 'metrics.jsonl'
  lines = [json.dumps({'step': s, 'meta_loss': -s}) for s in range(4)]
  path.write_text('\n'.join(lines) + '\n{"step": 4, "meta_lo')  # killed
  train_lib._truncate_log(str(path), 2)
  assert path.read_text() == lines[0] + '\n' + lines[1] + '\n'
