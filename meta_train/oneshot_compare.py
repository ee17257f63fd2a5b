"""ENAS and DARTS against trial-based search on the tabular benchmark.

  python -m meta_train.oneshot_compare --seeds 5 --budgets 6.4 16 --out docs

For every budget (in units of one child's training, see
:mod:`meta_train.search_oneshot`) each one-shot method runs as many search
steps as fit, on ``--seeds`` search seeds (one jitted ``lax.scan`` vmapped
over seeds); its returned cell is scored by the table's mean test accuracy
(the retraining from scratch is the lookup, one unit). DARTS+ early
stopping is applied to the DARTS runs' checkpoints, and costs only the
steps up to its stop. Random search and regularized evolution run 64
trials through :func:`meta_train.search_compare.compare` on the same
number of seeds; they return the trial best on validation. Writes
``oneshot_compare.json`` and ``oneshot_compare.png`` (test accuracy
against cost) under ``--out``.
"""

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np

from meta_train import search_oneshot as oneshot_lib

METHODS = {
    'ENAS': oneshot_lib.OneShotConfig('enas'),
    'DARTS-1': oneshot_lib.OneShotConfig('darts', order=1),
    'DARTS-2': oneshot_lib.OneShotConfig('darts', order=2),
}


def _stats(values) -> dict:
  values = np.asarray(values, np.float64)
  return {'mean': float(values.mean()), 'std': float(values.std(ddof=1)),
          'min': float(values.min()), 'max': float(values.max())}


def run_method(config, table, split, budget, units: float, seeds) -> dict:
  """One method at one budget over seeds: the cells, their test accuracy and costs."""
  import jax
  import jax.numpy as jnp
  from l2l import search
  cost = oneshot_lib.costs(config, table.space, split, budget)
  steps = oneshot_lib.steps_for_budget(config, cost, units)
  config = dataclasses.replace(config, steps=steps)
  fn = oneshot_lib.search_fn(config, table.space, split)
  seeds = jnp.asarray(seeds, jnp.int32)
  fn(seeds)  # Compile (and run) once; time the second call.
  start = time.time()
  states, metrics = jax.block_until_ready(fn(seeds))
  seconds = (time.time() - start) / len(seeds)
  probs = oneshot_lib.trajectory(config, table.space, jax.device_get(metrics))
  rows = {}
  if config.strategy == 'enas':
    net, _, _, controller = oneshot_lib.make(config, table.space, split['train'][0][:1])
    derive = jax.jit(jax.vmap(lambda s, k: search.enas_derive(
        net.apply, table.space, s, controller, k, split['val'], config.num_samples, 1)[0]))
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 7))(seeds)
    cells = np.asarray(derive(states, keys))[:, 0]
    rows['ENAS'] = (cells, [steps] * len(cells))
    # The collapse diagnostic: distinct children among 64 the final controller samples.
    sample = jax.jit(jax.vmap(lambda s, k: search._enas._ask(controller, k, s.controller, 64)))
    samples = np.asarray(sample(states, keys))
    distinct = [len({tuple(c) for c in seed_samples}) for seed_samples in samples]
  else:
    label = config.label
    rows[label] = (np.asarray(search.discretise(table.space, probs[:, -1])), [steps] * len(seeds))
    plus = dataclasses.replace(config, early_stop=True)
    stopped = [oneshot_lib.darts_result(plus, table.space, p) for p in probs]
    rows[plus.label] = (np.stack([c for c, _ in stopped]),
                        [(s + 1) * config.check_every for _, s in stopped])
  out = {}
  for label, (cells, steps_run) in rows.items():
    test = np.asarray(table.test_of(cells))
    units_run = [oneshot_lib.total_units(config, cost, s) for s in steps_run]
    out[label] = {
        'budget_units': units, 'search_steps': steps_run, 'test_accuracy': test.tolist(),
        'test_accuracy_stats': _stats(test), 'cost_child_units': _stats(units_run),
        'parameter_free_share': np.asarray(
            search.parameter_free_share(table.space, cells)).tolist(),
        'cells': [table.space.config_string(c) for c in cells],
        'step_units': cost['step_units'], 'search_seconds_per_seed': seconds * (
            np.mean(steps_run) / steps)}
    if config.strategy == 'enas':
      out[label]['distinct_children_in_64_final_samples'] = distinct
  return out


def baselines(table, num_seeds: int, num_trials: int, first_seed: int = 0) -> dict:
  """Random search and regularized evolution: incumbent test accuracy per trial count."""
  from meta_train import search as search_cli
  from meta_train import search_compare
  strategies = {name: search_cli.make_strategy(name, table.space, 1, num_trials)
                for name in ('random', 'evolution')}
  results = search_compare.compare(table, strategies, num_seeds, num_trials, first_seed)
  return {name: table.best_test_accuracy - incumbent for name, (_, incumbent) in results.items()}


def main(argv=None) -> dict:
  """Runs the comparison, writes the JSON and the plot; returns the JSON."""
  parser = argparse.ArgumentParser(prog='python -m meta_train.oneshot_compare',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--seeds', type=int, default=5)
  parser.add_argument('--first-seed', type=int, default=0,
                      help='search seeds first-seed .. first-seed + seeds - 1 (one-shot methods)')
  parser.add_argument('--budgets', type=float, nargs='+', default=[6.4])
  parser.add_argument('--trials', type=int, default=64, help='trials of the baselines')
  parser.add_argument('--methods', nargs='+', default=list(METHODS), choices=list(METHODS))
  parser.add_argument('--table-dir', default=None)
  parser.add_argument('--out', required=True)
  args = parser.parse_args(argv)
  if args.seeds < 2:
    parser.error('--seeds must be >= 2 (a spread needs two).')
  import jax
  from meta_train import search_plots
  from tasks import nas
  table = nas.TabularBenchmark.load(args.table_dir or nas.TABLE_DIR)
  budget = nas.Budget(**table.manifest['budget'])
  split = jax.tree.map(jax.numpy.asarray, nas.splits(table.manifest['dataset'], budget.val_size))
  child_seconds = oneshot_lib.child_seconds(table.space, split, budget, args.seeds)
  methods = {}
  seeds = list(range(args.first_seed, args.first_seed + args.seeds))
  for units in args.budgets:
    for name in args.methods:
      for label, row in run_method(METHODS[name], table, split, budget, units, seeds).items():
        row['wall_child_units_shared_machine'] = (row['search_seconds_per_seed'] / child_seconds
                                                  + 1)
        methods[f'{label}@{units:g}'] = row
  curves = baselines(table, args.seeds, args.trials, args.first_seed)
  report = {
      'command': 'python -m meta_train.oneshot_compare ' + ' '.join(
          argv if argv is not None else sys.argv[1:]),
      'space_best_test_accuracy': table.best_test_accuracy, 'seeds': args.seeds,
      'child_training_seconds': child_seconds,
      'baselines': {name: {'trials': args.trials, 'cost_child_units': args.trials,
                           'test_accuracy': c[:, -1].tolist(),
                           'test_accuracy_stats': _stats(c[:, -1])}
                    for name, c in curves.items()},
      # The baselines at the one-shot budgets (trials = units, rounded down).
      'baselines_at_budget': {f'{name}@{int(units)}': _stats(c[:, int(units) - 1])
                              for name, c in curves.items() for units in args.budgets
                              if 1 <= int(units) <= args.trials},
      'methods': methods}
  evolution = report['baselines']['evolution']['test_accuracy_stats']['mean']
  for row in methods.values():
    row['within_1pp_of_evolution'] = bool(
        row['test_accuracy_stats']['mean'] >= evolution - 0.01)
    row['goal_met'] = bool(row['within_1pp_of_evolution']
                           and row['cost_child_units']['max'] <= args.trials / 10)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  oneshot_lib._write_json(out / 'oneshot_compare.json', report)
  search_plots.accuracy_vs_cost(methods, curves, table.best_test_accuracy,
                                out / 'oneshot_compare.png',
                                f'{table.space.name}, {args.seeds} search seeds; mean ± s.d.')
  return report


if __name__ == '__main__':
  print(json.dumps(main(), indent=1))
