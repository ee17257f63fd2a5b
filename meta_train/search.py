"""Architecture search from the command line.

  python -m meta_train.search --space tabular_cell --strategy evolution \\
      --trials 64 --seed 0 --out runs/search [--resume] [--backend local|ray] \\
      [--benchmark tabular]

Writes ``OUT/journal.jsonl`` (one line per finished trial, with its
``config``), ``OUT/summary.json`` (``best_config``, ``best_test_accuracy``
of the trial best on validation, ``trials``) and PNGs: ``best_so_far.png``,
``reward.png`` (mean reward per strategy step: the controller's reward for
``reinforce``) and ``best_cell.png``. With ``--benchmark tabular`` trials are
looked up in the stored tabular benchmark (``tasks/nas_data``) instead of
trained. A NASNet search on CIFAR-10 (files in the standard format under
``--data-dir``; meant for a GPU)::

  python -m meta_train.search --space nasnet --dataset cifar10 \\
      --data-dir ~/data --strategy evolution --trials 100 --steps 2000 \\
      --train-batch 128 --out runs/nasnet

Weight-sharing searches of the tabular cell space (ENAS, DARTS; see
``meta_train/search_oneshot.py``) train one supernet, then retrain their
result; the journal holds a ``checkpoint`` line every ``--check-every``
steps and a ``retrain`` line per retrained child, the summary adds
``cost_child_units``, and ``op_probabilities.png`` shows the trajectories::

  python -m meta_train.search --space tabular_cell --strategy darts --order 2 \\
      --early-stop --search-steps 100 --benchmark tabular --out runs/darts
"""

import argparse
import functools
import json
import os
import pathlib
import sys
from typing import Any, Sequence

import numpy as np

DEFAULT_DATASET = {'nas_layer': 'digits', 'nasnet': 'digits',
                   'recurrent': 'mnist1d', 'tabular_cell': 'mnist1d'}
STRATEGIES = ('random', 'evolution', 'bayesian', 'reinforce')
ONESHOT = ('enas', 'darts')  # Weight-sharing searches: meta_train/search_oneshot.py.
ENAS_SAMPLES = 64  # Children ENAS samples at the end (OneShotConfig.num_samples).


@functools.lru_cache(maxsize=16)
def make_strategy(name: str, space, batch_size: int, num_trials: int):
  """The named strategy with this program's defaults (cached: one object,
  hence one compilation, per setting in a process)."""
  from l2l import search
  if name == 'random':
    return search.random_search(space, batch_size)
  if name == 'evolution':
    return search.regularized_evolution(space, batch_size, population_size=16,
                                        tournament_size=4)
  if name == 'bayesian':
    # A fixed buffer: a resumed search with more trials asks the same.
    return search.bayesian_optimisation(space, batch_size, max_trials=128)
  if name == 'reinforce':
    return search.reinforce_controller(space, batch_size, learning_rate=0.05)
  raise ValueError(f'Unknown strategy {name!r}; valid: {STRATEGIES}.')


def make_space(name: str, options: Sequence[str] = ()):
  """The named space; ``options`` are ``key=int`` strings passed to its factory."""
  from l2l import search
  if name not in search.SPACES:
    raise ValueError(f'Unknown space {name!r}; valid: {sorted(search.SPACES)}.')
  kwargs = {}
  for option in options:
    key, sep, value = option.partition('=')
    if not sep:
      raise ValueError(f'--space-option must be key=value, got {option!r}.')
    kwargs[key] = int(value)
  return search.SPACES[name](**kwargs)


@functools.lru_cache(maxsize=2)
def _evaluator(spec_json: str):
  """Builds, once per process, the function that evaluates trials of a spec."""
  spec = json.loads(spec_json)
  import jax
  import jax.numpy as jnp
  import optax
  import l2l
  from l2l import search
  from tasks import nas
  space = make_space(spec['space'], spec['space_options'])
  if spec['benchmark'] == 'tabular':
    table = nas.TabularBenchmark.load(spec['table_dir'])
    if table.space != space:
      raise ValueError('--benchmark tabular needs --space tabular_cell with the '
                       "table's options.")
    def lookup(trials):
      rows = [table.space.flat_index(t['indices']) for t in trials]
      seeds = [t['seed'] % table.val_accuracy.shape[1] for t in trials]
      return [{'fitness': float(table.val_accuracy[r, s]),
               'val_accuracy': float(table.val_accuracy[r, s]),
               'test_accuracy': float(table.test_accuracy[r].mean())}
              for r, s in zip(rows, seeds)]
    return lookup
  budget = nas.Budget(steps=spec['steps'], batch_size=spec['train_batch'])
  split = nas.splits(spec['dataset'], budget.val_size, spec['data_dir'])
  optimizer = (l2l.lstm_optimizer() if spec['optimizer'] == 'lstm'
               else optax.adam(budget.learning_rate))

  def with_fitness(metrics):
    metrics = {k: float(v) for k, v in metrics.items()}
    return dict(metrics, fitness=metrics['val_accuracy'])

  if space.name == 'tabular_cell' and spec['optimizer'] == 'adam':
    # Children of equal shapes: one vmapped call trains the whole batch.
    fn = nas.tabular_train_fn(space, split, budget, pairs=True)
    def train_batch(trials):
      configs = np.asarray([t['indices'] for t in trials], np.int32)
      seeds = jnp.asarray([t['seed'] for t in trials], jnp.int32)
      metrics = jax.device_get(fn(configs, seeds))
      return [with_fitness({k: v[i] for k, v in metrics.items()}) for i in range(len(trials))]
    return train_batch

  device_split = jax.tree.map(jnp.asarray, split)
  sample = device_split['train'][0][:1]

  def train_one(trial):
    net = search.build(space, trial['indices'], num_classes=10)
    key_init, key_train = jax.random.split(jax.random.key(trial['seed']))
    params = net.init(key_init, sample)
    run = jax.jit(lambda p, k: nas.train_child(net.apply, p, device_split, budget, k,
                                               optimizer))
    return with_fitness(run(params, key_train))
  return lambda trials: [train_one(t) for t in trials]


def evaluate_trials(spec_json: str, trials: list[dict]) -> list[dict]:
  """Evaluates trials in this process (the unit of work every backend runs)."""
  return _evaluator(spec_json)(trials)


def make_backend(name: str, spec_json: str, workers: int, ray_address: str | None):
  """``evaluate(trials) -> metrics``: in this process, in local processes or on Ray.

  Raises:
    ImportError: ``ray`` requested but not installed (names the extra).
    ValueError: an unknown backend.
  """
  if name == 'local' and workers <= 1:
    return functools.partial(evaluate_trials, spec_json)
  chunks = lambda trials, n: [trials[i::n] for i in range(n) if trials[i::n]]
  order = lambda parts, results: _unsplit(parts, results)
  if name == 'local':
    import concurrent.futures
    import multiprocessing
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context('spawn'))
    def run_local(trials):
      parts = chunks(list(trials), workers)
      return order(parts, list(pool.map(evaluate_trials, [spec_json] * len(parts), parts)))
    return run_local
  if name == 'ray':
    try:
      import ray
    except ImportError as error:
      raise ImportError('--backend ray needs Ray: pip install -e ".[search]" '
                        '(the same as ".[ray]", or pip install "ray>=2.30").') from error
    if not ray.is_initialized():
      ray.init(address=ray_address, num_cpus=None if ray_address else max(workers, 1),
               runtime_env={'env_vars': {'PYTHONPATH': os.pathsep.join(sys.path)}},
               log_to_driver=False)
    remote = ray.remote(evaluate_trials)
    def run_ray(trials):
      parts = chunks(list(trials), max(workers, 1))
      return order(parts, ray.get([remote.remote(spec_json, p) for p in parts]))
    return run_ray
  raise ValueError(f"Unknown backend {name!r}; valid: 'local', 'ray'.")


def _unsplit(parts, results):
  """Puts results of round-robin chunks back in the original trial order."""
  by_trial = {t['trial']: r for part, res in zip(parts, results) for t, r in zip(part, res)}
  return [by_trial[t['trial']] for t in sorted((t for p in parts for t in p),
                                              key=lambda t: t['trial'])]


def summarise(records: list[dict], args) -> dict:
  """The summary: the trial best on validation (fitness) and the search's setup."""
  best = max(records, key=lambda r: (r['fitness'], -r['trial']))
  return {'best_config': best['config'], 'best_trial': best['trial'],
          'best_fitness': best['fitness'],
          'best_test_accuracy': best.get('test_accuracy'),
          'trials': len(records), 'space': args.space, 'strategy': args.strategy,
          'seed': args.seed, 'benchmark': args.benchmark}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(prog='python -m meta_train.search',
                                   description=__doc__.split('\n')[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument('--space', required=True)
  parser.add_argument('--space-option', action='append', default=[],
                      help='key=int for the space factory, e.g. num_layers=3')
  parser.add_argument('--strategy', required=True, choices=STRATEGIES + ONESHOT)
  parser.add_argument('--trials', type=int, default=None,
                      help='trials of a trial-based strategy (required for those)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', required=True)
  parser.add_argument('--resume', action='store_true')
  parser.add_argument('--backend', default='local', choices=('local', 'ray'))
  parser.add_argument('--workers', type=int, default=1)
  parser.add_argument('--ray-address', default=None,
                      help="an existing cluster's address (default: start a local one)")
  parser.add_argument('--benchmark', default=None, choices=('tabular',))
  parser.add_argument('--table-dir', default=None)
  parser.add_argument('--batch-size', type=int, default=4, help='trials per ask')
  parser.add_argument('--dataset', default=None)
  parser.add_argument('--data-dir', default=None)
  parser.add_argument('--steps', type=int, default=300, help='training steps per child')
  parser.add_argument('--train-batch', type=int, default=64)
  parser.add_argument('--optimizer', default='adam', choices=('adam', 'lstm'),
                      help="children's optimizer: optax.adam or l2l.lstm_optimizer()")
  parser.add_argument('--no-progress', action='store_true')
  oneshot = parser.add_argument_group('enas and darts (weight sharing, tabular_cell space)')
  oneshot.add_argument('--search-steps', type=int, default=250)
  oneshot.add_argument('--check-every', type=int, default=25,
                       help='steps between checkpoints (journal lines, DARTS+ checks)')
  oneshot.add_argument('--order', type=int, default=1, choices=(1, 2), help="DARTS' order")
  oneshot.add_argument('--early-stop', action='store_true',
                       help='DARTS+: stop once the cell has 2 parameter-free edges')
  oneshot.add_argument('--top-k', type=int, default=1, help='children ENAS retrains')
  args = parser.parse_args(argv)
  if args.strategy in ONESHOT:
    if args.space != 'tabular_cell':
      parser.error(f'--strategy {args.strategy} searches the tabular_cell space only '
                   '(its supernet is l2l.search.TabularCellNet).')
    if args.trials is not None:
      parser.error(f'--strategy {args.strategy} retrains --top-k children; drop --trials.')
    if args.search_steps < 1 or args.check_every < 1 or args.search_steps % args.check_every:
      parser.error(f'--search-steps ({args.search_steps}) must be a positive multiple of '
                   f'--check-every ({args.check_every}).')
    if args.strategy == 'enas' and not 1 <= args.top_k <= ENAS_SAMPLES:
      parser.error(f'--top-k must lie in [1, {ENAS_SAMPLES}] (the children ENAS samples '
                   f'at the end), got {args.top_k}.')
    if args.strategy == 'darts' and args.top_k != 1:
      parser.error('--top-k applies to enas; DARTS returns one cell.')
  elif args.trials is None:
    parser.error(f'--strategy {args.strategy} needs --trials.')
  if (args.trials is not None and args.trials < 1) or args.batch_size < 1:
    parser.error('--trials and --batch-size must be positive.')
  return args


def oneshot_config(args):
  """The :class:`meta_train.search_oneshot.OneShotConfig` of the flags."""
  from meta_train import search_oneshot
  return search_oneshot.OneShotConfig(
      strategy=args.strategy, steps=args.search_steps, order=args.order,
      early_stop=args.early_stop, check_every=args.check_every, batch_size=args.train_batch,
      top_k=args.top_k)


def main(argv=None) -> dict:
  """Runs the search; returns the summary."""
  args = parse_args(argv)
  import tqdm
  from l2l import search
  from meta_train import search_plots
  from tasks import nas
  space = make_space(args.space, args.space_option)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  if args.dataset == 'cifar10':
    from tasks import data
    data.cifar10(args.data_dir)  # Fails early, naming the files to get.
  spec = {'space': args.space, 'space_options': args.space_option,
          'benchmark': args.benchmark, 'table_dir': args.table_dir or str(nas.TABLE_DIR),
          'dataset': args.dataset or DEFAULT_DATASET.get(args.space, 'digits'),
          'data_dir': args.data_dir, 'steps': args.steps, 'train_batch': args.train_batch,
          'optimizer': args.optimizer}
  spec_json = json.dumps(spec, sort_keys=True)
  evaluate = make_backend(args.backend, spec_json, args.workers, args.ray_address)
  if args.strategy in ONESHOT:
    from meta_train import search_oneshot
    args.dataset = spec['dataset']
    try:
      return search_oneshot.run(oneshot_config(args), args, space, evaluate, out)
    except search_oneshot.ResumeMismatch as e:
      raise SystemExit(f'python -m meta_train.search: error: {e}') from None
  strategy = make_strategy(args.strategy, space, args.batch_size, args.trials)
  journal = search.Journal(out / 'journal.jsonl')
  rewards = []
  bar = tqdm.tqdm(total=-(-args.trials // args.batch_size) * args.batch_size,
                  desc=f'{args.strategy} on {args.space}', disable=args.no_progress)

  def on_step(step, step_records, state):
    rewards.append(float(np.mean([r['fitness'] for r in step_records])))
    bar.update(len(step_records))
    bar.set_postfix(reward=f'{rewards[-1]:.3f}')

  records = search.run_trials(strategy, space, evaluate, journal, args.seed,
                              args.trials, resume=args.resume, on_step=on_step)
  bar.close()
  summary = summarise(records, args)
  tmp = out / 'summary.json.tmp'
  tmp.write_text(json.dumps(summary, indent=1) + '\n')
  os.replace(tmp, out / 'summary.json')
  search_plots.best_so_far(records, out / 'best_so_far.png')
  search_plots.rewards(rewards, args.strategy, out / 'reward.png')
  search_plots.best_cell(space, space.parse(summary['best_config']), out / 'best_cell.png')
  return summary


if __name__ == '__main__':
  print(json.dumps(main(), indent=1))
