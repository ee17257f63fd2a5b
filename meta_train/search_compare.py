"""Regret of the search strategies on the tabular benchmark.

  python -m meta_train.search_compare --seeds 32 --trials 64 --out docs

Every strategy runs ``--seeds`` searches of ``--trials`` trials, each a
lookup of one seed's validation accuracy in the table; all seeds run in one
jitted ``lax.scan`` vmapped over search seeds. Two regrets are reported
against the space's best mean test accuracy: of the best test accuracy
found so far (``found``), and of the test accuracy of the trial best on
validation so far (``incumbent``, what a search would return). Writes
``search_regret.json`` and ``search_regret.png`` (found) and
``search_regret_incumbent.png`` under ``--out``, and the per-seed curves
in ``search_regret_curves.npz``.
"""

import argparse
import json
import os
import pathlib

import numpy as np


def regrets(table, configs, fitness):
  """Found and incumbent regret, each float ``(seeds, trials)``.

  Args:
    table: A :class:`tasks.nas.TabularBenchmark`.
    configs: int ``(seeds, trials, num_choices)`` in the order asked.
    fitness: float ``(seeds, trials)``, the observed validation accuracy.
  """
  test = np.asarray(table.test_of(configs))
  best = table.best_test_accuracy
  found = best - np.maximum.accumulate(test, axis=1)
  # Index of the first trial reaching the running best validation accuracy.
  incumbent_index = np.asarray([[int(np.argmax(f[:t + 1])) for t in range(f.shape[0])]
                                for f in fitness])
  incumbent = best - np.take_along_axis(test, incumbent_index, axis=1)
  return found, incumbent


def compare(table, strategies: dict, num_seeds: int, num_trials: int, seed: int = 0):
  """Runs every strategy on the table; returns ``{name: (found, incumbent)}``."""
  import jax
  from l2l import search
  results = {}
  for name, strategy in strategies.items():
    steps = -(-num_trials // strategy.batch_size)
    run = jax.jit(jax.vmap(lambda k, s=strategy, n=steps: search.simulate(s, table.lookup, k, n)))
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), len(results)), num_seeds)
    configs, fitness = jax.device_get(run(keys))
    configs = configs.reshape(num_seeds, -1, configs.shape[-1])[:, :num_trials]
    fitness = fitness.reshape(num_seeds, -1)[:, :num_trials]
    results[name] = regrets(table, configs, fitness)
  return results


def summary_rows(results: dict, at: int) -> dict:
  """Mean, standard deviation and standard error of both regrets at ``at`` trials."""
  rows = {}
  for name, (found, incumbent) in results.items():
    row = {}
    for label, regret in (('found', found), ('incumbent', incumbent)):
      values = regret[:, at - 1]
      row[label] = {'mean': float(values.mean()), 'std': float(values.std(ddof=1)),
                    'sem': float(values.std(ddof=1) / np.sqrt(len(values))),
                    'zero_regret_fraction': float(np.mean(values == 0))}
    rows[name] = row
  return rows


def main(argv=None) -> dict:
  """Runs the comparison and writes the JSON and the plots; returns the JSON."""
  parser = argparse.ArgumentParser(prog='python -m meta_train.search_compare',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--seeds', type=int, default=32)
  parser.add_argument('--trials', type=int, default=64)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--table-dir', default=None)
  parser.add_argument('--out', required=True)
  args = parser.parse_args(argv)
  if args.seeds < 2 or args.trials < 1:
    parser.error('--seeds must be >= 2 and --trials >= 1.')
  from meta_train import search as search_cli
  from meta_train import search_plots
  from tasks import nas
  table = nas.TabularBenchmark.load(args.table_dir or nas.TABLE_DIR)
  strategies = {name: search_cli.make_strategy(name, table.space,
                                               4 if name == 'reinforce' else 1, args.trials)
                for name in search_cli.STRATEGIES}
  results = compare(table, strategies, args.seeds, args.trials, args.seed)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  title = (f'{table.space.name} ({table.space.size} cells), {args.seeds} seeds;'
           ' mean ± s.e.')
  search_plots.regret_curves({n: r[0] for n, r in results.items()},
                             out / 'search_regret.png', 'best found: ' + title)
  search_plots.regret_curves({n: r[1] for n, r in results.items()},
                             out / 'search_regret_incumbent.png', 'incumbent: ' + title)
  report = {'command': 'python -m meta_train.search_compare ' + ' '.join(
      argv if argv is not None else __import__('sys').argv[1:]),
            'space_size': table.space.size, 'best_test_accuracy': table.best_test_accuracy,
            'seeds': args.seeds, 'trials': args.trials,
            'batch_sizes': {n: s.batch_size for n, s in strategies.items()},
            'at_trials': {str(t): summary_rows(results, t)
                          for t in sorted({16, 32, args.trials}) if t <= args.trials}}
  curves = out / 'search_regret_curves.tmp.npz'
  np.savez_compressed(curves, **{f'{n}_{label}': r[i] for n, r in results.items()
                                 for i, label in enumerate(('found', 'incumbent'))})
  os.replace(curves, out / 'search_regret_curves.npz')
  tmp = out / 'search_regret.json.tmp'
  tmp.write_text(json.dumps(report, indent=1) + '\n')
  os.replace(tmp, out / 'search_regret.json')
  return report


if __name__ == '__main__':
  print(json.dumps(main(), indent=1))
