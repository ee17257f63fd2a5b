"""Architecture search: spaces, parsers, strategies, journal, command line."""

import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2l import search
from tasks import nas

TOY = search.Space('toy', tuple(search.Choice(f'c{i}', tuple(range(4))) for i in range(6)))
TOY_WEIGHTS = jax.random.normal(jax.random.key(7), (6, 4))
TOY_BEST = float(TOY_WEIGHTS.max(1).sum())


def toy_fitness(configs, key=None):
  """A smooth (additive) lookup function on the toy space."""
  del key
  return jnp.sum(TOY_WEIGHTS[jnp.arange(6), configs], -1)


# ----------------------------------------------------------------- spaces

SMALL_SPACES = {
    'nas_layer': lambda: search.nas_layer_space(3, filter_sizes=(3,), strides=(1, 2),
                                                num_filters=(2,)),
    'nasnet': lambda: search.nasnet_space(1, ops=('identity', 'sep3x3', 'max3x3'),
                                          num_repeats=1, filters=2),
    'recurrent': lambda: search.recurrent_space(3, activations=('tanh', 'relu'),
                                                hidden_size=3),
    'tabular_cell': lambda: search.tabular_cell_space(3, ('none', 'skip', 'dense_tanh'), 4),
}
INPUTS = {'nas_layer': (2, 6, 6, 1), 'nasnet': (2, 8, 8, 1), 'recurrent': (2, 5),
          'tabular_cell': (2, 7)}


@pytest.mark.parametrize('name', sorted(search.SPACES))
def test_config_string_round_trip(name):
  space = search.SPACES[name]()
  rng = np.random.default_rng(0)
  for _ in range(5):
    config = space.sample(rng)
    text = space.config_string(config)
    np.testing.assert_array_equal(space.parse(text), config)
    assert space.from_flat_index(space.flat_index(config)).tolist() == config.tolist()
  assert space.size == math.prod(space.num_options)


@pytest.mark.parametrize('text, match', [
    ('c0=1 c1=2 c2=3 c3=0 c4=0', r"missing choices \['c5'\]"),
    ('c0=1 c1=2 c2=3 c3=0 c4=0 c5=9', r"'c5' must be one of"),
    ('c0=1 c1=2 c2=3 c3=0 c4=0 c5=0 c6=0', r"unknown choices \['c6'\]"),
    ('c0=1 c0=2', 'given twice'),
    ('c0', 'is not name=value'),
])
def test_parse_errors_name_the_problem(text, match):
  with pytest.raises(ValueError, match=match):
    TOY.parse(text)


@pytest.mark.parametrize('config, match', [
    ([0, 0, 0], r'shape \(6,\)'), ([0, 0, 0, 0, 0, 4], "'c5' has 4 options"),
    ([0.0] * 6, 'integers'), ([0, 0, 0, 0, 0, -1], 'got index -1')])
def test_validate_errors(config, match):
  with pytest.raises(ValueError, match=match):
    TOY.validate(config)


@pytest.mark.parametrize('make, error', [
    (lambda: search.Choice('a b', (1,)), ValueError),
    (lambda: search.Choice('a', ()), ValueError),
    (lambda: search.Choice('a', (1, '1')), ValueError),
    (lambda: search.Space('s', (search.Choice('a', (1,)),) * 2), ValueError),
    (lambda: search.Space('s', ('a',)), TypeError),
    (lambda: search.nasnet_space(ops=('conv9x9',)), ValueError),
    (lambda: TOY.parse(3), TypeError),
    (lambda: search.build(TOY, [0] * 6), ValueError),
])
def test_construction_errors(make, error):
  with pytest.raises(error):
    make()


@pytest.mark.parametrize('name', sorted(SMALL_SPACES))
def test_every_config_of_a_small_space_builds_and_runs(name):
  space = SMALL_SPACES[name]()
  configs = space.all_configs()
  if len(configs) > 27:  # nasnet: 1296 two-cell configs; two far apart.
    configs = configs[::len(configs) // 2]
  x = jax.random.normal(jax.random.key(0), INPUTS[name])
  for config in configs:
    net = search.build(space, config, num_classes=3)
    logits, params = net.init_with_output(jax.random.key(1), x)  # One pass.
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32, space.config_string(config)
    assert np.isfinite(np.asarray(logits)).all()
    if name == 'tabular_cell':  # Only chosen dense ops own parameters.
      dense = sum(op.startswith('dense') for op in space.values(config).values())
      assert len(params['params']) == 2 + dense


def test_config_strings_build_the_same_network():
  space = SMALL_SPACES['nas_layer']()
  config = space.all_configs()[5]
  x = jnp.ones(INPUTS['nas_layer'])
  a, b = search.build(space, config), search.build(space, space.config_string(config))
  params = a.init(jax.random.key(0), x)
  np.testing.assert_array_equal(a.apply(params, x), b.apply(params, x))


# ------------------------------------------------------ supernet = child

SPLIT = {k: (jax.random.normal(jax.random.key(i), (n, 7)),
             jax.random.randint(jax.random.key(i + 10), (n,), 0, 10))
         for i, (k, n) in enumerate((('train', 64), ('val', 32), ('test', 32)))}


@pytest.mark.parametrize('config', [[0, 0, 0], [2, 3, 1], [3, 1, 2], [2, 2, 3]])
def test_masked_supernet_equals_parsed_child(config):
  space = search.tabular_cell_space(3, width=4)
  supernet = search.TabularCellNet(space)
  x = SPLIT['train'][0]
  weights = nas.one_hot_ops(space, config)
  params = supernet.init(jax.random.key(3), x, weights)
  child = search.build(space, config)
  np.testing.assert_allclose(supernet.apply(params, x, weights),
                             child.apply(nas.child_params(params, space, config), x),
                             rtol=1e-6, atol=1e-6)


def test_vmapped_tabular_training_equals_training_the_child():
  space = search.tabular_cell_space(3, width=4)
  budget = nas.Budget(steps=15, batch_size=16, learning_rate=1e-2)
  configs = np.asarray([[2, 3, 1], [1, 2, 2]], np.int32)
  metrics = nas.tabular_train_fn(space, SPLIT, budget)(configs, jnp.asarray([5]))
  assert metrics['val_accuracy'].shape == (2, 1)
  supernet = search.TabularCellNet(space)
  for row, config in enumerate(configs[:1]):  # One child: each compiles anew.
    key_init, key_train = jax.random.split(jax.random.key(5))
    params = supernet.init(key_init, SPLIT['train'][0][:1], nas.one_hot_ops(space, config))
    child = search.build(space, config)
    alone = nas.train_child(child.apply, nas.child_params(params, space, config), SPLIT,
                            budget, key_train, optax.adam(1e-2))
    for name in ('train_loss', 'val_accuracy', 'test_accuracy'):
      np.testing.assert_allclose(alone[name], metrics[name][row, 0], rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------- strategies

STRATEGIES = {
    'random': lambda: search.random_search(TOY, 4),
    'evolution': lambda: search.regularized_evolution(TOY, 4, population_size=12,
                                                      tournament_size=4),
    'bayesian': lambda: search.bayesian_optimisation(TOY, 4, max_trials=48, num_initial=8,
                                                     num_candidates=128),
    'reinforce': lambda: search.reinforce_controller(TOY, 4, learning_rate=0.05),
}
NUM_STEPS, NUM_SEEDS = 12, 8


@pytest.fixture(scope='module')
def toy_runs():
  runs = {}
  keys = jax.random.split(jax.random.key(0), NUM_SEEDS)
  for name, make in STRATEGIES.items():
    strategy = make()
    run = jax.jit(jax.vmap(lambda k, s=strategy: search.simulate(s, toy_fitness, k, NUM_STEPS)))
    runs[name] = jax.device_get(run(keys))
  return runs


@pytest.mark.parametrize('name', sorted(STRATEGIES))
def test_strategy_shapes_dtypes_and_ranges(name, toy_runs):
  configs, fitness = toy_runs[name]
  assert configs.shape == (NUM_SEEDS, NUM_STEPS, 4, 6) and configs.dtype == np.int32
  assert fitness.shape == (NUM_SEEDS, NUM_STEPS, 4) and fitness.dtype == np.float32
  assert configs.min() >= 0 and configs.max() <= 3


@pytest.mark.parametrize('name', ['evolution', 'reinforce', 'bayesian'])
def test_strategy_improves_on_its_starting_population(name, toy_runs):
  fitness = toy_runs[name][1]
  start, end = fitness[:, :3].mean(), fitness[:, -3:].mean()
  random_end = toy_runs['random'][1][:, -3:].mean()
  assert end > start + 0.5, (start, end)
  assert end > random_end, (end, random_end)


def test_bayesian_optimisation_beats_random_in_regret_on_a_smooth_toy(toy_runs):
  regret = {n: TOY_BEST - toy_runs[n][1].reshape(NUM_SEEDS, -1).max(1)
            for n in ('random', 'bayesian')}
  assert regret['bayesian'].mean() < 0.5 * regret['random'].mean(), regret


def test_random_search_is_uniform_and_deterministic():
  strategy = search.random_search(TOY, 4000)
  configs, _ = strategy.ask(jax.random.key(0), strategy.init(jax.random.key(0)))
  counts = np.stack([np.bincount(np.asarray(configs[:, d]), minlength=4) for d in range(6)])
  np.testing.assert_allclose(counts / 4000, 0.25, atol=0.03)
  again, _ = strategy.ask(jax.random.key(0), strategy.init(jax.random.key(0)))
  np.testing.assert_array_equal(configs, again)


def test_mutate_changes_exactly_one_choice():
  configs = search.sample_configs(jax.random.key(0), TOY, 256)
  mutated = search.mutate(jax.random.key(1), TOY, configs)
  np.testing.assert_array_equal((mutated != configs).sum(1), 1)


def test_evolution_ages_out_the_oldest_member():
  strategy = search.regularized_evolution(TOY, 2, population_size=4, tournament_size=2)
  state = strategy.init(jax.random.key(0))
  for step in range(3):
    configs = jnp.full((2, 6), step, jnp.int32)
    state = strategy.tell(state, configs, jnp.asarray([step, step], jnp.float32))
  # Six told into four slots: the two of step 0 were replaced by step 2's.
  assert sorted(np.asarray(state.population[:, 0]).tolist()) == [1, 1, 2, 2]
  assert int(state.count) == 6


@pytest.mark.parametrize('make, match', [
    (lambda: search.random_search(TOY, 0), 'batch_size'),
    (lambda: search.regularized_evolution(TOY, population_size=4, tournament_size=5),
     'tournament_size'),
    (lambda: search.reinforce_controller(TOY, baseline_decay=1.0), 'baseline_decay'),
    (lambda: search.bayesian_optimisation(TOY, 8, num_candidates=4), 'num_candidates'),
])
def test_strategy_argument_errors(make, match):
  with pytest.raises(ValueError, match=match):
    make()


# ---------------------------------------------------- journal and resume

def toy_evaluate(trials):
  return [{'fitness': float(toy_fitness(jnp.asarray(t['indices'])))} for t in trials]


def strip_time(records):
  return [{k: v for k, v in r.items() if k != 'seconds'} for r in records]


def test_journal_ignores_a_torn_last_line_and_rejects_corruption(tmp_path):
  journal = search.Journal(tmp_path / 'j.jsonl')
  journal.append({'trial': 0})
  with open(journal.path, 'a') as f:
    f.write('{"trial": 1, "fit')  # A write cut by a kill.
  assert journal.read() == [{'trial': 0}]
  journal.append({'trial': 1})
  assert [r['trial'] for r in journal.read()] == [0, 1]
  journal.path.write_text('{"trial": 0}\nnot json\n{"trial": 2}\n')
  with pytest.raises(ValueError, match='corrupt journal line'):
    journal.read()


@pytest.mark.parametrize('name', ['evolution', 'reinforce'])
def test_killed_search_resumes_to_the_same_journal(tmp_path, name):
  strategy = STRATEGIES[name]()
  full = search.Journal(tmp_path / 'full.jsonl')
  search.run_trials(strategy, TOY, toy_evaluate, full, seed=3, num_trials=20)
  killed = search.Journal(tmp_path / 'killed.jsonl')
  calls = []

  def dies_in_third_batch(trials):
    calls.append(len(trials))
    if len(calls) == 3:
      raise KeyboardInterrupt  # Killed while the third batch runs.
    return toy_evaluate(trials)

  with pytest.raises(KeyboardInterrupt):
    search.run_trials(strategy, TOY, dies_in_third_batch, killed, seed=3, num_trials=20)
  assert len(killed.read()) == 8
  evaluated = []
  records = search.run_trials(
      strategy, TOY, lambda t: evaluated.extend(t) or toy_evaluate(t), killed, seed=3,
      num_trials=20, resume=True)
  assert sorted(t['trial'] for t in evaluated) == list(range(8, 20))  # None repeated.
  assert strip_time(killed.read()) == strip_time(full.read())
  assert [r['trial'] for r in records] == list(range(20))


def test_journal_of_another_search_is_refused(tmp_path):
  journal = search.Journal(tmp_path / 'j.jsonl')
  strategy = STRATEGIES['random']()
  search.run_trials(strategy, TOY, toy_evaluate, journal, seed=0, num_trials=4)
  with pytest.raises(FileExistsError, match='--resume'):
    search.run_trials(strategy, TOY, toy_evaluate, journal, seed=0, num_trials=8)
  with pytest.raises(ValueError, match='not the same search'):
    search.run_trials(strategy, TOY, toy_evaluate, journal, seed=1, num_trials=8,
                      resume=True)


# ------------------------------------------------------------ command line

@pytest.fixture(scope='module')
def table_dir(tmp_path_factory):
  """A synthetic table of the full tabular space (additive scores)."""
  space = search.tabular_cell_space()
  configs = space.all_configs()
  rng = np.random.default_rng(0)
  score = 0.5 + 0.05 * rng.normal(size=(6, 4))[np.arange(6), configs].sum(1)
  table = {'val_accuracy': np.stack([score, score + 0.01], 1),
           'test_accuracy': np.stack([score - 0.01, score], 1)}
  directory = tmp_path_factory.mktemp('table')
  nas.write_table(directory, space, table, {'command': 'synthetic'})
  return directory


def cli(out, table_dir, *extra):
  from meta_train import search as program
  return program.main(['--space', 'tabular_cell', '--strategy', 'evolution',
                       '--benchmark', 'tabular', '--table-dir', str(table_dir),
                       '--out', str(out), '--seed', '1', '--no-progress', *extra])


def test_command_line_writes_journal_summary_and_plots_and_resumes(tmp_path, table_dir):
  summary = cli(tmp_path, table_dir, '--trials', '8')
  lines = (tmp_path / 'journal.jsonl').read_text().splitlines()
  assert len(lines) == 8 and all('config' in json.loads(l) for l in lines)
  stored = json.loads((tmp_path / 'summary.json').read_text())
  assert stored == summary and stored['trials'] == 8
  table = nas.TabularBenchmark.load(table_dir)
  best = table.space.parse(stored['best_config'])
  assert stored['best_test_accuracy'] == pytest.approx(float(table.test_of(best)))
  for png in ('best_so_far.png', 'reward.png', 'best_cell.png'):
    assert (tmp_path / png).read_bytes()[:4] == b'\x89PNG'
  with pytest.raises(FileExistsError):
    cli(tmp_path, table_dir, '--trials', '12')
  assert cli(tmp_path, table_dir, '--trials', '12', '--resume')['trials'] == 12
  assert (tmp_path / 'journal.jsonl').read_text().splitlines()[:8] == lines


def test_local_process_backend_matches_in_process(table_dir, tmp_path):
  from meta_train import search as program
  spec = json.dumps({'space': 'tabular_cell', 'space_options': [], 'benchmark': 'tabular',
                     'table_dir': str(table_dir)})
  trials = [{'trial': i, 'indices': [i % 4] * 6, 'seed': i} for i in range(5)]
  serial = program.make_backend('local', spec, 1, None)(trials)
  parallel = program.make_backend('local', spec, 2, None)(trials)
  assert parallel == serial and len(serial) == 5


def test_ray_backend_missing_names_the_extra(monkeypatch):
  from meta_train import search as program
  monkeypatch.setitem(sys.modules, 'ray', None)
  with pytest.raises(ImportError, match=r'\.\[search\]'):
    program.make_backend('ray', '{}', 2, None)


def test_ray_backend_on_a_local_cluster(table_dir, tmp_path):
  ray = pytest.importorskip('ray')
  ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
  try:
    summary = cli(tmp_path, table_dir, '--trials', '8', '--backend', 'ray', '--workers', '2')
    serial = cli(tmp_path / 'serial', table_dir, '--trials', '8')
  finally:
    ray.shutdown()
  assert strip_time(map(json.loads, (tmp_path / 'journal.jsonl').read_text().splitlines())) == \
      strip_time(map(json.loads, (tmp_path / 'serial' / 'journal.jsonl').read_text().splitlines()))
  assert summary == serial


# The tabular space's vmapped training is tested above (supernet = child).
@pytest.mark.parametrize('space, options', [('nas_layer', ['num_layers=1'])])
def test_command_line_trains_children(tmp_path, space, options):
  from meta_train import search as program
  argv = ['--space', space, '--strategy', 'random', '--trials', '2', '--batch-size', '2',
          '--steps', '2', '--train-batch', '8', '--out', str(tmp_path), '--no-progress']
  for option in options:
    argv += ['--space-option', option]
  summary = program.main(argv + ['--dataset', 'digits'])
  records = [json.loads(l) for l in (tmp_path / 'journal.jsonl').read_text().splitlines()]
  assert summary['trials'] == 2 and len(records) == 2
  for record in records:
    assert 0.0 <= record['val_accuracy'] <= 1.0 and record['fitness'] == record['val_accuracy']
    assert np.isfinite(record['train_loss'])


def test_cifar10_entry_point_names_the_missing_files(tmp_path):
  from meta_train import search as program
  with pytest.raises(FileNotFoundError, match='cifar-10'):
    program.main(['--space', 'nasnet', '--dataset', 'cifar10', '--data-dir', str(tmp_path),
                  '--strategy', 'evolution', '--trials', '2', '--out', str(tmp_path / 'o')])


def test_regret_of_best_found_and_of_the_incumbent():
  from meta_train import search_compare
  space = search.Space('t', (search.Choice('a', (0, 1, 2)),))
  test = np.asarray([[0.1], [0.3], [0.5]], np.float32)
  table = nas.TabularBenchmark(space, test + 0.0, test, {})
  configs = np.asarray([[[0], [2], [1]]])
  fitness = np.asarray([[0.2, 0.1, 0.3]])  # Validation disagrees with test.
  found, incumbent = search_compare.regrets(table, configs, fitness)
  np.testing.assert_allclose(found, [[0.4, 0.0, 0.0]], atol=1e-6)
  np.testing.assert_allclose(incumbent, [[0.4, 0.4, 0.2]], atol=1e-6)
  assert float(table.lookup(jnp.asarray([[2]]), jax.random.key(0))[0]) == pytest.approx(0.5)


def test_stored_tabular_benchmark_matches_its_manifest():
  table = nas.TabularBenchmark.load()
  assert table.space == search.tabular_cell_space()
  assert table.val_accuracy.shape == table.test_accuracy.shape == (4096, 2)
  assert table.val_accuracy.dtype == np.float32
  assert 0.0 <= table.test_accuracy.min() and table.test_accuracy.max() <= 1.0
  assert table.manifest['best_test_accuracy'] == pytest.approx(table.best_test_accuracy)
  assert table.manifest['command'].startswith('python -m tasks.nas')
  # Architecture matters: the best cell is far above the worst.
  means = table.test_accuracy.mean(1)
  assert means.max() - means.min() > 0.2


def test_missing_table_gives_the_build_command(tmp_path):
  with pytest.raises(FileNotFoundError, match='python -m tasks.nas'):
    nas.TabularBenchmark.load(tmp_path)
