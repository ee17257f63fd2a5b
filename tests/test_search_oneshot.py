"""One-shot architecture search: the supernet's children and mixed
operation, discretisation, DARTS+ and ENAS/DARTS at toy size, the command line."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2l import search
from tasks import nas

SPACE = search.tabular_cell_space(3, width=4)  # 3 edges x 4 ops.
NET = search.TabularCellNet(SPACE, num_classes=3)
EDGES, OPS = 3, 4
DATA = {k: (jax.random.normal(jax.random.key(i), (n, 5)),
            jax.random.randint(jax.random.key(i + 10), (n,), 0, 3))
        for i, (k, n) in enumerate((('train', 96), ('val', 48)))}
STEPS = 12


def init_params(key=jax.random.key(0)):
  # Jitted: an eager init compiles op by op.
  return jax.jit(NET.init)(key, DATA['train'][0][:1], jnp.full((EDGES, OPS), 1 / OPS))


def run(oneshot, seed=0):
  state = oneshot.init(jax.random.key(seed), init_params())
  fn = jax.jit(lambda s, k: search.run_oneshot(oneshot, s, k, DATA['train'], DATA['val'],
                                               STEPS, batch_size=16))
  return state, fn(state, jax.random.key(seed + 1))


@pytest.fixture(scope='module')
def runs():
  controller = search.enas_controller(SPACE, 4, learning_rate=0.05)
  oneshots = {'enas': search.enas(NET.apply, SPACE, 1, 1e-2, controller),
              'darts1': search.darts(NET.apply, EDGES, OPS, 1, 1e-2, 3e-2),
              'darts2': search.darts(NET.apply, EDGES, OPS, 2, 1e-2, 3e-2)}
  return controller, {name: run(o) for name, o in oneshots.items()}


# ------------------------------------------------------- supernet, mixed op

def test_a_sampled_child_with_shared_weights_equals_the_standalone_child(runs):
  _, results = runs
  _, (state, metrics) = results['enas']
  configs = np.unique(np.asarray(metrics['configs']).reshape(-1, EDGES), axis=0)
  x = DATA['val'][0]
  for config in configs[:2]:  # Children the controller sampled.
    shared = NET.apply(state.params, x, nas.one_hot_ops(SPACE, config))
    child = search.build(SPACE, config, num_classes=3)
    alone = child.apply(nas.child_params(state.params, SPACE, config), x)
    np.testing.assert_allclose(shared, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('alpha', [[0.0, 0.0, 0.0, 0.0], [2.0, -1.0, 0.5, 0.3],
                                   [-3.0, 4.0, 1.0, -2.0]])
def test_the_mixed_op_is_the_softmax_weighted_sum_of_the_ops(alpha):
  space = search.tabular_cell_space(2, width=4)  # One edge: logits are affine in it.
  net = search.TabularCellNet(space, num_classes=3)
  x = DATA['train'][0][:8]
  weights = search.mixed_op_weights(jnp.asarray([alpha]))
  assert weights.shape == (1, 4) and weights.dtype == jnp.float32
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
  params = jax.jit(net.init)(jax.random.key(1), x, weights)
  apply = jax.jit(net.apply)
  singles = jnp.stack([apply(params, x, jax.nn.one_hot(jnp.asarray([k]), 4)) for k in range(4)])
  np.testing.assert_allclose(apply(params, x, weights),
                             jnp.einsum('k,kbc->bc', weights[0], singles), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ discretise

@pytest.mark.parametrize('alpha, exclude, expected', [
    ([[5, 1, 0, 0], [0, 2, 3, 1], [0, 0, 0, 9]], ('none',), [1, 2, 3]),
    ([[5, 1, 0, 0], [0, 2, 3, 1], [0, 0, 0, 9]], (), [0, 2, 3]),
    ([[9, 8, 0, 0], [0, 2, 3, 1], [9, 0, 1, 0]], ('none', 'skip'), [2, 2, 2]),
])
def test_discretise_picks_the_strongest_allowed_op(alpha, exclude, expected):
  config = search.discretise(SPACE, jnp.asarray(alpha, jnp.float32), exclude)
  assert config.dtype == jnp.int32
  np.testing.assert_array_equal(config, expected)


@pytest.mark.parametrize('alpha, exclude, match', [
    (np.zeros((2, 4)), (), 'shape'),
    (np.zeros((3, 4)), ('none', 'skip', 'dense_relu', 'dense_tanh'), 'leaves no operation'),
])
def test_discretise_errors(alpha, exclude, match):
  with pytest.raises(ValueError, match=match):
    search.discretise(SPACE, alpha, exclude)


@pytest.mark.parametrize('config, share', [([0, 1, 2], 2 / 3), ([2, 3, 2], 0.0),
                                           ([1, 1, 1], 1.0)])
def test_parameter_free_share(config, share):
  assert float(search.parameter_free_share(SPACE, jnp.asarray(config))) == pytest.approx(share)


@pytest.mark.parametrize('skips_per_checkpoint, threshold, stop', [
    ((0, 1, 2, 3), 2, 2), ((0, 1, 1, 1), 2, 3), ((3, 0, 0, 0), 1, 0), ((0, 0, 1, 1), 1, 2)])
def test_darts_plus_stops_at_the_first_collapsed_checkpoint(skips_per_checkpoint, threshold,
                                                            stop):
  trajectory = []
  for skips in skips_per_checkpoint:  # The first `skips` edges prefer skip, others tanh.
    trajectory.append([[0, 1, 0, 0] if e < skips else [0, 0, 0, 1] for e in range(EDGES)])
  config, index = search.darts_plus_stop(SPACE, jnp.asarray(trajectory, jnp.float32),
                                         threshold)
  assert int(index) == stop
  np.testing.assert_array_equal(config, [1 if e < skips_per_checkpoint[stop] else 3
                                         for e in range(EDGES)])
  with pytest.raises(ValueError, match='max_parameter_free'):
    search.darts_plus_stop(SPACE, jnp.asarray(trajectory), 0)


# ------------------------------------------------------- toy-size searches

@pytest.mark.parametrize('name', ['darts1', 'darts2'])
def test_darts_moves_alpha_and_returns_a_valid_cell(runs, name):
  _, results = runs
  start, (state, metrics) = results[name]
  assert metrics['op_weights'].shape == (STEPS, EDGES, OPS)
  assert metrics['train_loss'].shape == (STEPS,) and np.isfinite(metrics['val_loss']).all()
  assert int(state.count) == STEPS and state.alpha.dtype == jnp.float32
  assert float(jnp.abs(state.alpha - start.alpha).max()) > 0.1
  np.testing.assert_allclose(metrics['op_weights'][-1], jax.nn.softmax(state.alpha), rtol=1e-6)
  config = search.discretise(SPACE, state.alpha)
  assert config.shape == (EDGES,) and (config > 0).all() and (config < OPS).all()
  assert metrics['train_loss'][-5:].mean() < metrics['train_loss'][:5].mean()


def test_second_order_darts_differs_from_first_order(runs):
  _, results = runs
  first, second = results['darts1'][1][0].alpha, results['darts2'][1][0].alpha
  assert float(jnp.abs(first - second).max()) > 1e-4


def test_enas_trains_its_controller_and_derives_distinct_ranked_children(runs):
  controller, results = runs
  start, (state, metrics) = results['enas']
  assert metrics['configs'].shape == (STEPS, 4, EDGES) and metrics['configs'].dtype == jnp.int32
  assert ((metrics['reward'] >= 0) & (metrics['reward'] <= 1)).all()
  assert int(state.controller.count) == 4 * STEPS
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), start.controller.params,
                       state.controller.params)
  assert max(jax.tree.leaves(moved)) > 1e-3
  assert float(state.controller.baseline) != 0.0
  derive = jax.jit(functools.partial(search.enas_derive, NET.apply, SPACE,
                                     controller=controller, num_samples=16, top_k=3))
  configs, scores = derive(state=state, key=jax.random.key(2), val=DATA['val'])
  assert configs.shape == (3, EDGES) and scores.shape == (3,)
  assert len({tuple(c) for c in np.asarray(configs)}) == 3
  assert (np.diff(np.asarray(scores)) <= 0).all()
  direct = search._oneshot.accuracy(NET.apply, state.params, nas.one_hot_ops(SPACE, configs[0]),
                                    DATA['val'])
  np.testing.assert_allclose(scores[0], direct, rtol=1e-6)
  with pytest.raises(ValueError, match='top_k'):
    search.enas_derive(NET.apply, SPACE, state, controller, jax.random.key(2), DATA['val'],
                       num_samples=4, top_k=5)


@pytest.mark.parametrize('make, error, match', [
    (lambda: search.darts(NET.apply, EDGES, OPS, order=3), ValueError, 'order'),
    (lambda: search.darts(NET.apply, 0, OPS), ValueError, 'positive'),
    (lambda: search.enas(NET.apply, SPACE, num_children=0), ValueError, 'num_children'),
    (lambda: search.enas(NET.apply, 'tabular_cell'), TypeError, 'Space'),
    (lambda: search.enas_controller(SPACE, temperature=0.0), ValueError, 'temperature'),
    (lambda: search.enas_controller(SPACE, tanh_constant=-1.0), ValueError, 'tanh_constant'),
    (lambda: search.enas_controller(SPACE, entropy_weight=-1.0), ValueError, 'entropy_weight'),
])
def test_construction_errors(make, error, match):
  with pytest.raises(error, match=match):
    make()


@pytest.mark.parametrize('temperature, tanh_constant', [(1.0, None), (5.0, 2.5), (1.0, 1.1)])
def test_the_controllers_logits_are_scaled_and_bounded_as_in_enas(temperature, tanh_constant):
  """With head biases (10, 0, -10, -30) on every edge the plain controller is
  near-deterministic; ENAS' ``c * tanh(logits / T)`` gives exact log-probabilities."""
  from l2l.search import _controller
  params = _controller._init_params(jax.random.key(0), EDGES, OPS, 8)
  params = dict(params, head_w=0 * params['head_w'],
                head_b=jnp.tile(jnp.asarray([10.0, 0.0, -10.0, -30.0]), (EDGES, 1)))
  valid = jnp.ones((EDGES, 1, OPS), bool)
  tokens = jnp.tile(jnp.arange(OPS)[:, None], (1, EDGES))  # Child k: op k everywhere.
  run = jax.jit(functools.partial(_controller._run, temperature=temperature,
                                  tanh_constant=tanh_constant))
  _, log_p, entropy = run(params, valid, tokens)
  logits = jnp.asarray([10.0, 0.0, -10.0, -30.0]) / temperature
  logits = logits if tanh_constant is None else tanh_constant * jnp.tanh(logits)
  expected = EDGES * jax.nn.log_softmax(logits)
  np.testing.assert_allclose(log_p, expected, rtol=1e-5, atol=1e-5)
  if tanh_constant is not None:
    assert float(log_p.max() - log_p.min()) <= EDGES * 2 * tanh_constant + 1e-4
  assert entropy.shape == (OPS,) and np.allclose(entropy, entropy[0])


# ------------------------------------------------------------ command line

@pytest.fixture(scope='module')
def table_dir(tmp_path_factory):
  """A synthetic table of a 1-edge tabular space of width 4 (the smallest
  cell the command line accepts; scores drawn at random)."""
  space = search.tabular_cell_space(2, width=4)
  configs = space.all_configs()
  score = 0.5 + 0.05 * np.random.default_rng(0).normal(size=(1, 4))[np.arange(1), configs].sum(1)
  directory = tmp_path_factory.mktemp('table')
  nas.write_table(directory, space, {'val_accuracy': np.stack([score, score + 0.01], 1),
                                     'test_accuracy': np.stack([score - 0.01, score], 1)},
                  {'command': 'synthetic'})
  return directory


def test_enas_journal_lines_hold_the_controllers_sampling_frequencies(runs):
  from meta_train import search_oneshot
  _, results = runs
  _, (_, metrics) = results['enas']
  config = search_oneshot.OneShotConfig('enas', steps=STEPS, check_every=4)
  probabilities = search_oneshot.trajectory(config, SPACE, metrics)
  assert probabilities.shape == (STEPS // 4, EDGES, OPS)
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-6)
  first = np.eye(OPS)[np.asarray(metrics['configs'][:4])].mean((0, 1))
  np.testing.assert_allclose(probabilities[0], first, rtol=1e-6)
  cost = {'step_units': 0.01, 'derive_units': 0.5}
  records = search_oneshot.checkpoint_records(config, SPACE, metrics, cost)
  assert [r['step'] for r in records] == [4, 8, 12]
  assert records[-1]['cost_child_units'] == pytest.approx(0.12)
  assert records[0]['reward'] == pytest.approx(float(np.mean(metrics['reward'][:4])))
  assert search_oneshot.total_units(config, cost, STEPS) == pytest.approx(0.12 + 0.5 + 1)


def test_command_line_writes_journal_summary_and_plots(tmp_path, table_dir,
                                                       capsys):
  strategy, extra = 'darts', ('--early-stop',)
  from meta_train import search as program
  argv = ['--space', 'tabular_cell', '--strategy', strategy, '--benchmark', 'tabular',
          '--table-dir', str(table_dir), '--out', str(tmp_path), '--no-progress',
          '--search-steps', '20', '--check-every', '10', '--steps', '5', '--dataset', 'digits',
          '--space-option', 'num_nodes=2', '--space-option', 'width=4', *extra]
  summary = program.main(argv + ['--resume'])  # nothing to resume: a new run
  assert f'--resume: no journal in {tmp_path}; starting a new search' in (
      capsys.readouterr().err)
  records = [json.loads(l) for l in (tmp_path / 'journal.jsonl').read_text().splitlines()]
  kinds = [r['kind'] for r in records]
  retrained = 1
  assert kinds == ['checkpoint'] * 2 + ['retrain'] * retrained
  assert np.asarray(records[0]['op_probabilities']).shape == (1, 4)
  assert json.loads((tmp_path / 'summary.json').read_text()) == summary
  assert summary['trials'] == retrained == summary['cost_breakdown']['retrain']
  assert summary['cost_child_units'] == pytest.approx(sum(summary['cost_breakdown'].values()))
  assert summary['cost_breakdown']['search'] > 20 / 5  # 20 steps of at least one child step.
  table = nas.TabularBenchmark.load(table_dir)
  best = table.space.parse(summary['best_config'])
  assert summary['best_test_accuracy'] == pytest.approx(float(table.test_of(best)))
  for png in ('best_so_far.png', 'reward.png', 'best_cell.png', 'op_probabilities.png'):
    assert (tmp_path / png).read_bytes()[:4] == b'\x89PNG'
  with pytest.raises(FileExistsError, match='--resume'):
    program.main(argv)
  capsys.readouterr()
  resumed = program.main(argv + ['--resume'])  # search_seconds is measured anew
  assert f'resuming {tmp_path}: {len(records)} journal records' in (
      capsys.readouterr().err)
  assert resumed == dict(summary, search_seconds=resumed['search_seconds'])
  assert len((tmp_path / 'journal.jsonl').read_text().splitlines()) == len(records)
  # A resume with other flags is refused before any search, naming them.
  with pytest.raises(SystemExit, match="search_steps was 20, now 10.*seed was 0, now 3"):
    program.main(argv[:argv.index('--search-steps')] + ['--search-steps', '10'] +
                 argv[argv.index('--search-steps') + 2:] + ['--seed', '3', '--resume'])
  assert json.loads((tmp_path / 'summary.json').read_text()) == resumed


@pytest.mark.parametrize('argv, match', [
    (['--space', 'nasnet', '--strategy', 'darts'], 'tabular_cell space only'),
    (['--space', 'tabular_cell', '--strategy', 'enas', '--trials', '4'], 'drop --trials'),
    (['--space', 'tabular_cell', '--strategy', 'evolution'], 'needs --trials'),
    (['--space', 'tabular_cell', '--strategy', 'darts', '--search-steps', '10'],
     '--search-steps (10) must be a positive multiple of --check-every (25)'),
    (['--space', 'tabular_cell', '--strategy', 'darts', '--check-every', '0'],
     'must be a positive multiple of --check-every (0)'),
    (['--space', 'tabular_cell', '--strategy', 'enas', '--top-k', '0'],
     '--top-k must lie in [1, 64]'),
    (['--space', 'tabular_cell', '--strategy', 'darts', '--top-k', '2'], 'applies to enas'),
])
def test_command_line_usage_errors(argv, match, capsys):
  from meta_train import search as program
  with pytest.raises(SystemExit):
    program.parse_args(argv + ['--out', 'unused'])
  assert match in capsys.readouterr().err


def test_the_command_lines_sample_count_is_the_configs():
  from meta_train import search as program
  from meta_train import search_oneshot
  assert program.ENAS_SAMPLES == search_oneshot.OneShotConfig().num_samples
