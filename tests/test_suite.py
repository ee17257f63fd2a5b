"""Tests for meta_train/suite.py: suite data, summaries, the command line."""

import dataclasses
import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2l
import tasks
from meta_train import ablate
from meta_train import evaluate
from meta_train import plots
from meta_train import suite
from meta_train import validate


def _all_cases():
  return [case for name in suite.REPORTED for case in suite.SUITES[name]]


def test_suites_are_valid():
  assert set(suite.SUITES) == {'paper', 'heldout', 'extended', 'dev'}
  assert set(suite.REPORTED) == {'paper', 'heldout'}
  cases = _all_cases() + suite.SUITES['extended']
  names = [case.name for case in cases]
  assert len(names) == len(set(names)), 'case names are file stems'
  for case in cases:
    assert len(case) == 4 and isinstance(case.num_steps, int), case
    assert case.num_steps > 0, case
    family = tasks.get_family(case.family, **case.kwargs)
    fields = {f.name for f in dataclasses.fields(family)}
    if 'split' in fields:  # Data-backed: judge on the test split.
      assert family.split == 'test', case.name
  heldout_families = {case.family for case in suite.SUITES['heldout']}
  assert {'autoencoder', 'linear_regression', 'logistic_regression',
          'rosenbrock', 'ill_conditioned_quadratic',
          'digits_conv'} <= heldout_families
  paper = {case.name: case for case in suite.SUITES['paper']}
  assert paper['quadratic'].num_steps == 100
  mlp_steps = sorted(case.num_steps for case in paper.values()
                     if case.kwargs.get('hidden_sizes') == ((20,),)
                     and case.kwargs['activations'] == ('sigmoid',))
  assert mlp_steps == [100, 200, 1000]
  extended = {case.family for case in suite.SUITES['extended']}
  assert {'mnist1d_attention', 'mnist1d_gru', 'digits_mlp_layernorm',
          'digits_mlp_batchnorm'} <= extended
  assert max(case.num_steps for case in suite.SUITES['extended']) == 5000


def test_dev_cases_differ_from_the_reported_ones():
  judged = _all_cases() + suite.SUITES['extended']
  reported = {(case.family, repr(sorted(case.kwargs.items())), case.num_steps)
              for case in judged}
  names = {case.name for case in judged}
  for case in suite.DEV_CASES:
    assert case.name not in names
    if case.family == 'quadratic':  # A training family: other seeds only.
      continue
    assert (case.family, repr(sorted(case.kwargs.items())),
            case.num_steps) not in reported, case.name
    family = tasks.get_family(case.family, **case.kwargs)
    if 'split' in {f.name for f in dataclasses.fields(family)}:
      assert family.split == 'train', case.name
  assert min(suite.DEV_SEEDS) >= 100


def test_suite_cases_selects_and_refuses():
  assert len(suite.suite_cases('all')) == len(_all_cases())
  only = suite.suite_cases('paper', ['mnist1d_mlp_relu', 'quadratic'])
  assert [case.name for case in only] == ['quadratic', 'mnist1d_mlp_relu']
  with pytest.raises(ValueError, match='quadratic'):
    suite.suite_cases('paper', ['rosenbrock'])
  with pytest.raises(ValueError, match='heldout'):
    suite.suite_cases('everything')


def test_candidate_names():
  names = suite.candidate_names([None, 'default', 'runs/a/meta_params.npz',
                                 'other/a/meta_params.npz',
                                 'runs/a/meta_params.npz', 'paper2016',
                                 'runs/a_50.npz', 'runs/b_50.npz',
                                 'default@x', 'runs/a/meta_params.npz@x'])
  assert names == {'default': 'default', 'a': 'runs/a/meta_params.npz',
                   'other/a/meta_params.npz': 'other/a/meta_params.npz',
                   'paper2016': 'paper2016', 'a_50': 'runs/a_50.npz',
                   'b_50': 'runs/b_50.npz', 'default@x': 'default@x',
                   'a@x': 'runs/a/meta_params.npz@x'}


def test_a_candidate_at_its_average_is_judged_at_averaged_params():
  """default@x records the loss at l2l.averaged_params; default at y."""
  candidates = evaluate.load_candidates(['default', 'default@x'])
  assert isinstance(candidates['default@x'], evaluate.AtAverage)
  task, key = evaluate.eval_problem(tasks.get_family('quadratic'), 2)
  problem, params, state = evaluate.train(task, l2l.lstm_optimizer(), key, 9)
  at_y = evaluate.trajectory(task, candidates['default'], key, 9)
  at_x = evaluate.trajectory(task, candidates['default@x'], key, 9)
  np.testing.assert_allclose(at_y[-1], task.full_loss(params, problem),
                             rtol=1e-5)
  np.testing.assert_allclose(
      at_x[-1], task.full_loss(l2l.averaged_params(params, state, None), problem),
      rtol=1e-5)
  assert at_x[0] == at_y[0] and abs(at_x[-1] - at_y[-1]) > 1e-3


def test_schedule_free_adamw_baseline_is_judged_at_its_eval_params():
  """The baseline records the loss at optax's schedule-free x, not at y."""
  baseline = evaluate.BASELINES['schedule_free_adamw'](0.1)
  assert isinstance(baseline, evaluate.AtEvalParams)
  task, key = evaluate.eval_problem(tasks.get_family('quadratic'), 2)
  problem, params, state = evaluate.train(task, baseline.optimizer, key, 9)
  at_x = evaluate.trajectory(task, baseline, key, 9)
  at_y = evaluate.trajectory(task, baseline.optimizer, key, 9)
  x = optax.contrib.schedule_free_eval_params(state, params)
  np.testing.assert_allclose(at_x[-1], task.full_loss(x, problem), rtol=1e-5)
  np.testing.assert_allclose(at_y[-1], task.full_loss(params, problem),
                             rtol=1e-5)
  assert at_x[0] == at_y[0] and abs(at_x[-1] - at_y[-1]) > 1e-3


def test_only_free_designs_are_judged_at_their_average():
  with pytest.raises(ValueError, match='paper2016@x: cannot be judged'):
    evaluate.load_candidates(['paper2016@x'])


def _entry(kind, mean, lr=None, diverged=0, **extra):
  entry = {'kind': kind, 'mean_final_loss': mean, 'final_losses': [mean] * 3,
           'num_diverged': diverged, **extra}
  return entry if lr is None else {**entry, 'lr': lr}


def _results(family, optimizers):
  return {'family': family, 'num_steps': 50, 'optimizers': optimizers}


def test_summarise_and_markdown():
  results_by_case = {
      'good': _results('quadratic', {
          'mine': _entry('candidate', 0.5, adam_steps_ratio=math.inf),
          'adam': _entry('baseline', 1.0, lr=0.03),
          'rmsprop': _entry('baseline', float('nan'), lr=0.1),
          'nesterov': _entry('baseline', 0.25, lr=0.01),
      }),
      'bad': _results('rosenbrock', {
          'mine': _entry('candidate', float('nan'), diverged=3,
                         adam_steps_ratio=0.0),
          'other': _entry('candidate', 2.0, adam_steps_ratio=0.5),
          'adam': _entry('baseline', 1.0, lr=0.3),
          'sgd': _entry('baseline', float('inf'), lr=1.0),
      }),
  }
  rows = suite.summarise(results_by_case)
  assert [(r['case'], r['candidate']) for r in rows] == [
      ('good', 'mine'), ('bad', 'mine'), ('bad', 'other')]
  good, bad, other = rows
  assert good['beats_adam'] is True
  assert good['best_baseline'] == 'nesterov'  # NaN never ranks first.
  assert good['best_baseline_mean_final_loss'] == 0.25
  assert good['adam_mean_final_loss'] == 1.0 and good['adam_lr'] == 0.03
  assert good['adam_steps_ratio'] == math.inf
  assert bad['beats_adam'] is False and math.isnan(
      bad['candidate_mean_final_loss'])  # Reported as it came.
  assert bad['candidate_diverged'] == 3 and bad['num_seeds'] == 3
  assert bad['best_baseline'] == 'adam' and bad['family'] == 'rosenbrock'
  assert other['beats_adam'] is False
  text = suite.markdown(rows)
  assert text.count('\n| ') == 3
  assert '| good | 50 | mine | 0.5 | 0/3 | 1 | 0.03 | nesterov (0.25) | yes |' \
      in text
  assert '| bad | 50 | mine | nan | 3/3 |' in text
  assert 'mine beats tuned Adam on 1/2 cases.' in text
  assert 'other beats tuned Adam on 0/1 cases.' in text


def test_summarise_against_schedule_free_adamw():
  rows = suite.summarise({'c': _results('x', {
      'mine': _entry('candidate', 0.5), 'other': _entry('candidate', 2.0),
      'adam': _entry('baseline', 0.4, lr=0.01),
      'schedule_free_adamw': _entry('baseline', 1.0, lr=0.3)})})
  mine, other = rows
  assert mine['schedule_free_adamw_mean_final_loss'] == 1.0
  assert mine['schedule_free_adamw_lr'] == 0.3
  assert mine['beats_schedule_free_adamw'] is True and not mine['beats_adam']
  assert other['beats_schedule_free_adamw'] is False
  text = suite.markdown(rows)
  assert '| c | 50 | mine | 0.5 | 0/3 | 0.4 | 0.01 | adam (0.4) | no | - | 1 (0.3) | yes |' in text
  assert 'mine beats tuned schedule-free AdamW on 1/1 cases.' in text
  assert 'other beats tuned schedule-free AdamW on 0/1 cases.' in text


def test_summarise_without_adam():
  rows = suite.summarise({'c': _results('x', {
      'mine': _entry('candidate', 1.0)})})
  assert rows[0]['beats_adam'] is None and rows[0]['best_baseline'] is None
  assert '| c | 50 | mine | 1 | 0/3 | - | - | - | - | - | - | - |' in (
      suite.markdown(rows))


@pytest.mark.parametrize('loss, reference, expected', [
    (1e-3, 1e-2, -1.0),
    (0.0, 1e-2, -28.0),           # an exact 0 is a win, not off the chart
    (0.0, 0.0, 0.0),
    (2.0, 0.0, 30.0 + math.log10(2.0)),
    (float('nan'), 1.0, float('nan')),
    (float('inf'), 1.0, float('inf')),
])
def test_summary_bar_ratio(loss, reference, expected):
  value = plots.log10_ratio(loss, reference)
  if math.isnan(expected):
    assert math.isnan(value)
  else:
    assert value == pytest.approx(expected)


def test_command_line_runs_one_case(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(suite, 'SUITES', {
      'paper': [suite.Case('tiny_quadratic', 'quadratic', {}, 20),
                suite.Case('skipped', 'x_squared', {}, 20)],
      'heldout': []})
  out = tmp_path / 'suite'
  rows = suite.main(['--suite', 'all', '--seeds', '2', '--out', str(out),
                     '--only', 'tiny_quadratic', '--candidates', 'default',
                     '--baselines', 'adam', 'schedule_free_adamw',
                     '--no-progress'])
  for name in ('summary.json', 'summary.md', 'summary.png',
               'tiny_quadratic.json', 'tiny_quadratic.png'):
    assert (out / name).stat().st_size > 0, name
  assert not (out / 'skipped.json').exists()
  assert not list(out.glob('*.tmp')) and not list(out.glob('tmp*'))
  plots.main([str(out / 'summary.json'), str(out / 'redrawn.png')])
  assert (out / 'redrawn.png').stat().st_size > 0
  with pytest.raises(SystemExit, match='cannot read suite rows'):
    plots.main([str(out / 'tiny_quadratic.json'), str(out / 'bad.png')])
  with open(out / 'summary.json') as f:
    summary = json.load(f)
  assert summary['rows'] == json.loads(json.dumps(rows))
  assert [(r['case'], r['candidate']) for r in rows] == [
      ('tiny_quadratic', 'default')]
  assert summary['suite'] == 'all' and summary['num_seeds'] == 2
  assert summary['candidates'] == {'default': 'default'}
  with open(out / 'tiny_quadratic.json') as f:
    case = json.load(f)
  assert case['seeds'] == [0, 1] and case['num_steps'] == 20
  assert set(case['optimizers']) == {'default', 'adam', 'schedule_free_adamw'}
  assert summary['baselines'] == ['adam', 'schedule_free_adamw']
  assert rows[0]['beats_schedule_free_adamw'] == (
      rows[0]['candidate_mean_final_loss']
      < case['optimizers']['schedule_free_adamw']['mean_final_loss'])
  assert case['case']['name'] == 'tiny_quadratic'
  assert rows[0]['adam_mean_final_loss'] == case['optimizers']['adam'][
      'mean_final_loss']
  assert rows[0]['beats_adam'] == (rows[0]['candidate_mean_final_loss']
                                   < rows[0]['adam_mean_final_loss'])
  printed = capsys.readouterr().out
  assert '| tiny_quadratic | 20 | default |' in printed
  assert (out / 'summary.md').read_text() in printed + '\n'


def test_command_line_refuses_unknown_case(tmp_path):
  with pytest.raises(SystemExit):
    suite.main(['--suite', 'paper', '--only', 'no_such_case', '--out',
                str(tmp_path)])


def test_ablation_nominal_only_is_adam_at_the_learned_rate():
  meta_params = l2l.init_meta_params(jax.random.key(0), design='adaptive')
  meta_params['params']['output']['kernel'] = jnp.ones_like(
      meta_params['params']['output']['kernel'])
  meta_params['nominal']['log_lr'] = jnp.log(jnp.float32(0.03))
  nominal = l2l.lstm_optimizer(ablate.ablate(meta_params, (0, 1)))
  assert ablate.variants('adaptive') == ['nominal_only', 'no_step_factor',
                                         'no_direction']
  adam = optax.adam(0.03)
  params = {'w': jnp.linspace(-1.0, 1.0, 5)}
  grads = {'w': jnp.cos(params['w'])}
  got, _ = nominal.update(grads, nominal.init(params))
  want, _ = adam.update(grads, adam.init(params))
  np.testing.assert_allclose(got['w'], want['w'], rtol=1e-5)
  changed, _ = l2l.lstm_optimizer(meta_params).update(
      grads, l2l.lstm_optimizer(meta_params).init(params))
  assert not np.allclose(changed['w'], want['w'])


def _trained_looking_hyper():
  """Hyper meta-params with a non-zero read-out and moved nominal constants."""
  meta_params = l2l.init_meta_params(jax.random.key(0), design='hyper')
  meta_params['params']['output']['kernel'] = jnp.ones_like(
      meta_params['params']['output']['kernel'])
  meta_params['nominal'] = {'log_lr': jnp.log(jnp.float32(0.03)),
                            'log_kappa': jnp.log(jnp.float32(0.2)),
                            'offset': jnp.float32(-0.1)}
  return meta_params


def test_ablation_nadam_only_is_nadam_at_the_learned_rate():
  nadam_only = l2l.lstm_optimizer(
      ablate.ablate(_trained_looking_hyper(), *ablate.VARIANTS['nadam_only']))
  nadam = optax.nadam(0.03)
  params = {'w': jnp.linspace(-1.0, 1.0, 5), 'b': jnp.ones(2)}
  state, nadam_state = nadam_only.init(params), nadam.init(params)
  for i in range(6):
    grads = jax.tree.map(lambda x: jnp.cos(x + i), params)
    got, state = nadam_only.update(grads, state)
    want, nadam_state = nadam.update(grads, nadam_state)
    chex.assert_trees_all_close(got, want, rtol=1e-5)
  assert float(state.scale['w']) == float(state.scale['b']) == 0.0


def test_ablation_schedule_free_only_is_optax_schedule_free_adamw():
  """Updates and the average x (l2l.averaged_params) both agree."""
  meta_params = l2l.init_meta_params(jax.random.key(0), design='free')
  meta_params['params']['output']['kernel'] = jnp.ones_like(
      meta_params['params']['output']['kernel'])
  meta_params['nominal']['log_kappa'] = jnp.log(jnp.float32(0.2))
  ablated = l2l.lstm_optimizer(ablate.ablate(
      meta_params, *ablate.VARIANTS['schedule_free_only']))
  reference = optax.contrib.schedule_free_adamw(0.2, b1=0.93, b2=0.99,
                                                weight_decay=0.0)
  params = {'w': jnp.linspace(-1.0, 1.0, 5), 'b': jnp.ones(2)}
  state, reference_state = ablated.init(params), reference.init(params)
  ours = theirs = params
  for i in range(8):
    # a gradient spike at step 6: the spike cut must be off too
    grads = lambda p: jax.tree.map(
        lambda x: (30.0 if i == 5 else 1.0) * jnp.cos(3 * x + i), p)
    updates, state = ablated.update(grads(ours), state, ours)
    expected, reference_state = reference.update(grads(theirs),
                                                 reference_state, theirs)
    chex.assert_trees_all_close(updates, expected, atol=1e-6)
    ours = optax.apply_updates(ours, updates)
    theirs = optax.apply_updates(theirs, expected)
  chex.assert_trees_all_close(
      l2l.averaged_params(ours, state, ablate.ablate(
          meta_params, *ablate.VARIANTS['schedule_free_only'])),
      optax.contrib.schedule_free_eval_params(reference_state, theirs),
      atol=1e-6)
  assert ablate.variants('free')[-1] == 'schedule_free_only'
  assert 'nadam_only' not in ablate.variants('free')


@pytest.mark.parametrize('variant, zero_readout, moves_scale', [
    ('nominal_only', True, True),
    ('no_hypergradient', False, False),
    ('no_step_factor', False, True),
])
def test_hyper_ablations(variant, zero_readout, moves_scale):
  meta_params = _trained_looking_hyper()
  ablated = ablate.ablate(meta_params, *ablate.VARIANTS[variant])
  output = ablated['params']['output']
  assert bool(jnp.all(output['kernel'] == 0)) == zero_readout
  opt = l2l.lstm_optimizer(ablated)
  params = {'w': jnp.ones(4)}
  state = opt.init(params)
  for _ in range(3):
    _, state = opt.update({'w': jnp.ones(4)}, state)
  assert (float(state.scale['w']) != 0.0) == moves_scale


@pytest.mark.parametrize('design, variants', [
    ('adaptive', ['nominal_only', 'no_step_factor', 'no_direction']),
    ('hyper', ['nominal_only', 'no_step_factor', 'no_direction',
               'no_hypergradient', 'nadam_only']),
    ('free', ['nominal_only', 'no_step_factor', 'no_direction',
              'no_hypergradient', 'no_average_growth', 'no_spike_cut',
              'no_second_moment_warmup', 'schedule_free_only']),
])
def test_ablation_variants_per_design(design, variants):
  assert ablate.variants(design) == variants


@pytest.mark.parametrize('variant, entry', [
    ('no_average_growth', 'average_growth'),
    ('no_spike_cut', 'spike_cut'),
    ('no_second_moment_warmup', 'second_moment_warmup'),
])
def test_free_ablations_keep_every_other_part(variant, entry):
  meta_params = l2l.init_meta_params(jax.random.key(0), design='free')
  ablated = ablate.ablate(meta_params, *ablate.VARIANTS[variant])
  assert float(ablated['nominal'][entry]) == 0.0
  assert float(meta_params['nominal'][entry]) > 0.0
  chex.assert_trees_all_equal(
      {**ablated, 'nominal': {**ablated['nominal'], entry: 1.0}},
      {**meta_params, 'nominal': {**meta_params['nominal'], entry: 1.0}})


@pytest.mark.parametrize('design, kwargs', [
    ('paper', {}),
    ('adaptive', dict(freeze_scale=True)),
    ('hyper', dict(fixed_average=True)),
    ('hyper', dict(no_spike_cut=True)),
])
def test_ablations_that_do_not_apply_are_refused(design, kwargs):
  with pytest.raises(ValueError, match='does not apply'):
    ablate.ablate(l2l.init_meta_params(jax.random.key(0), design=design),
                  (), **kwargs)


def test_ablations_refuse_the_paper_design():
  with pytest.raises(ValueError, match='adaptive, hyper and free'):
    ablate.variants('paper')



@pytest.mark.parametrize('family, num_steps', [('quadratic', 7),
                                                ('mnist1d_mlp_paper', 5)])
def test_train_ends_where_the_trajectory_ends(family, num_steps):
  task, key = evaluate.eval_problem(tasks.get_family(family), 3)
  optimizer = l2l.lstm_optimizer()
  problem, params, state = evaluate.train(task, optimizer, key, num_steps)
  np.testing.assert_allclose(
      task.full_loss(params, problem),
      evaluate.trajectory(task, optimizer, key, num_steps)[-1], rtol=1e-5)
  assert int(state.count) == num_steps


def _final_quadratic_loss(optimizer, seed, num_steps):
  task, key = evaluate.eval_problem(tasks.get_family('quadratic'), seed)
  return evaluate.trajectory(task, optimizer, key, num_steps)[-1]


@pytest.mark.parametrize('candidate', ['saved', 'default@x'])
def test_validation_scores_the_training_families(candidate, tmp_path, capsys):
  if candidate == 'saved':
    candidate = str(tmp_path / 'm.npz')
    l2l.save_meta_params(candidate, l2l.init_meta_params(jax.random.key(0),
                                                         design='hyper'),
                         config={'design': 'hyper'})
  results = validate.main([candidate, '--no-dev', '--families', 'quadratic',
                           '--seeds', '2', '--steps', '5'])
  optimizer = evaluate.load_candidate(candidate)
  want = np.mean([np.log(float(_final_quadratic_loss(optimizer, s, 5)))
                  for s in (1000, 1001)])
  got = results[evaluate.candidate_name(candidate)]['training']['quadratic']
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert 'training quadratic' in capsys.readouterr().out


def test_dev_score_of_a_secret_adam_is_its_loss_ratio_to_tuned_adam():
  """Adam at a grid rate scores 0 exactly when that rate is the tuned one."""
  grid = (0.01, 0.1, 1.0)
  case = suite.Case('q', 'quadratic', {}, 20)
  seeds = (0, 1)
  candidates = {f'adam_{lr}': optax.adam(lr) for lr in grid}
  got = validate.dev_scores(candidates, cases=[case], seeds=seeds,
                            lr_grid=grid)
  family = tasks.get_family('quadratic')

  def final(lr, seed):
    task, key = evaluate.eval_problem(family, seed)
    return float(evaluate.trajectory(task, optax.adam(lr), key, 20)[-1])

  finals = {lr: np.mean([final(lr, s) for s in seeds]) for lr in grid}
  best = min(finals.values())
  for lr in grid:
    entry = got[f'adam_{lr}']
    np.testing.assert_allclose(entry['q'], np.log(finals[lr] / best),
                               rtol=1e-4, atol=1e-5)
    assert entry['score'] == np.clip(entry['q'], -validate.SCORE_CLIP,
                                     validate.SCORE_CLIP)
    assert entry['median'] == entry['q'] and entry['diverged'] == 0
    if finals[lr] > best * 1.01:
      assert entry['wins'] == 0 and entry['q'] > 0.0


@pytest.mark.parametrize('flags, message', [
    (['--dev-first-seed', '4'], '--dev-first-seed must be at least 100'),
    (['--dev-seeds', '0'], '--dev-seeds must be at least 1, got 0'),
])
def test_validate_refuses_bad_dev_seeds(flags, message, capsys):
  with pytest.raises(SystemExit):
    validate.main(['default', *flags])
  assert message in capsys.readouterr().err


@pytest.mark.parametrize('flags, want', [
    ([], tuple(range(100, 100 + validate.DEV_NUM_SEEDS))),
    (['--dev-seeds', '3'], (100, 101, 102)),
    (['--dev-seeds', '2', '--dev-first-seed', '110'], (110, 111)),
])
def test_validate_scores_the_requested_dev_seeds(flags, want, monkeypatch,
                                                 capsys):
  seen = []

  def fake_dev_scores(candidates, seeds):
    seen.append(tuple(seeds))
    per_case = {case.name: 0.5 - 0.25 * k
                for k, case in enumerate(suite.DEV_CASES)}
    return {name: {**per_case, 'score': 0.0, 'median': 0.0, 'wins': 0,
                   'diverged': 0} for name in candidates}

  monkeypatch.setattr(validate, 'dev_scores', fake_dev_scores)
  validate.main(['default', *flags])
  assert seen == [want]
  out = capsys.readouterr().out
  assert f'x {len(want)} seeds' in out
  # one row per dev case, with that case's log ratio
  assert '| dev_quadratic | +0.50 |' in out
  assert f'| {suite.DEV_CASES[3].name} | -0.25 |' in out


@pytest.mark.parametrize('loss, reference, want', [
    (0.5, 10.0, -1.0),  # log 0.05: clipped
    (2.0, 1.0, np.log(2.0)),
    (1e9, 1.0, 1.0),  # finite, far worse: clipped, not counted as diverged
    (np.nan, 1.0, validate.NON_FINITE_RATIO),
    (np.inf, 1.0, validate.NON_FINITE_RATIO),
])
def test_dev_score_terms(loss, reference, want):
  np.testing.assert_allclose(validate._score_term(loss, reference), want)


def test_seed_scores_and_their_paired_difference():
  def losses(kind, values):
    return {'kind': kind, 'final_losses': values,
            'mean_final_loss': float(np.mean(values)), 'num_diverged': 0}
  e = math.e
  results_by_case = {
      'a': _results('quadratic', {
          'mine': losses('candidate', [1 / e, 1.0, e ** 5]),
          'fresh': losses('candidate', [1.0, 1.0, 1.0]),
          'adam': losses('baseline', [1.0, 1.0, 1.0])}),
      'b': _results('rosenbrock', {
          'mine': losses('candidate', [2.0, float('nan'), 2.0]),
          'fresh': losses('candidate', [2.0, 2.0, 2.0]),
          'adam': losses('baseline', [2.0, 2.0, 2.0])}),
  }
  scores = suite.seed_scores(results_by_case)
  # Per seed: the mean over cases of the clipped log ratio (NaN counts 10).
  np.testing.assert_allclose(scores['mine']['per_seed'], [-0.5, 5.0, 0.5])
  assert scores['fresh'] == {'per_seed': [0.0, 0.0, 0.0], 'mean': 0.0,
                             'sem': 0.0}
  assert scores['mine']['mean'] == pytest.approx(5 / 3)
  assert scores['mine']['sem'] == pytest.approx(
      np.std([-0.5, 5.0, 0.5], ddof=1) / np.sqrt(3))
  diff, sem = suite.paired_difference(scores, 'mine', 'fresh')
  assert (diff, sem) == (scores['mine']['mean'], scores['mine']['sem'])
  with pytest.raises(ValueError, match='case a has no tuned Adam'):
    suite.seed_scores({'a': _results('quadratic', {
        'mine': losses('candidate', [1.0])})})


def test_summary_reports_each_suites_scores(tmp_path):
  results = {case.name: _results(case.family, {
      'mine': {'kind': 'candidate', 'final_losses': [0.5, 0.5],
               'mean_final_loss': 0.5, 'num_diverged': 0},
      'adam': _entry('baseline', 1.0, lr=0.1)})
             for case in suite.SUITES['heldout'][:2]}
  suite.write_summary(suite.summarise(results), str(tmp_path), {}, results)
  text = (tmp_path / 'summary.md').read_text()
  assert 'Score on heldout (2 cases;' in text and 'Score on paper' not in text
  assert '- mine: -0.693 ± 0.000' in text
