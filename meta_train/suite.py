"""Evaluation suites: named lists of cases, run and summarised by one command.

A *case* is a task family with fixed options and a training horizon. The
``paper`` suite re-runs the experiments of Andrychowicz et al. (2016) on
MNIST-1D in place of MNIST: the 10-d quadratic, the 1×20 sigmoid MLP at
three horizons, and its generalisation to 40 units, two layers and ReLU. The
``heldout`` suite holds problems that meta-training never draws: other MLPs,
a convnet, an autoencoder, linear and logistic regression, Rosenbrock, a
quadratic with condition number 1e6 and a 2000-step horizon. ``all`` runs
both. The ``dev`` cases (other structures, the training split, seeds from
100) are for choosing designs and meta-training runs
(``python -m meta_train.validate``); ``all`` leaves them out, and they are
never reported as held out.

Each case runs :func:`meta_train.evaluate.evaluate` (every candidate against
Adam, schedule-free AdamW, RMSprop, SGD and Nesterov SGD with tuned learning
rates) and writes
``<case>.json`` and ``<case>.png``; ``summary.json``, ``summary.md`` and
``summary.png`` hold one row per (case, candidate) and are rewritten after
every case, so an interrupted run keeps what it finished::

  python -m meta_train.suite --suite paper --seeds 3 --out runs/suite \
      --candidates default runs/default/meta_params.npz
"""

import json
import math
import os
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import tqdm

from meta_train import evaluate
from meta_train import plots


class Case(NamedTuple):
  """One evaluation case.

  Attributes:
    name: Unique name; also the stem of the case's JSON and PNG files.
    family: A key of ``tasks.FAMILIES``.
    kwargs: Keyword arguments of ``tasks.get_family``.
    num_steps: Training horizon.
  """

  name: str
  family: str
  kwargs: Mapping[str, Any]
  num_steps: int


def _mlp(hidden_sizes: tuple[int, ...], activation: str,
         batch_size: int = 128, split: str = 'test',
         **options) -> dict[str, Any]:
  """Family options of one fixed MLP structure (the test split by default)."""
  return dict(hidden_sizes=(hidden_sizes,), activations=(activation,),
              batch_sizes=(batch_size,), split=split, **options)


_PAPER_MLP = _mlp((20,), 'sigmoid')

SUITES: dict[str, list[Case]] = {
    'paper': [
        Case('quadratic', 'quadratic', {}, 100),
        Case('mnist1d_mlp_100', 'mnist1d_mlp', _PAPER_MLP, 100),
        Case('mnist1d_mlp_200', 'mnist1d_mlp', _PAPER_MLP, 200),
        Case('mnist1d_mlp_1000', 'mnist1d_mlp', _PAPER_MLP, 1000),
        Case('mnist1d_mlp_40_units', 'mnist1d_mlp', _mlp((40,), 'sigmoid'),
             200),
        Case('mnist1d_mlp_2_layers', 'mnist1d_mlp',
             _mlp((20, 20), 'sigmoid'), 200),
        Case('mnist1d_mlp_relu', 'mnist1d_mlp', _mlp((20,), 'relu'), 200),
    ],
    'heldout': [
        Case('digits_mlp_64x64_tanh', 'digits_mlp', _mlp((64, 64), 'tanh'),
             500),
        Case('mnist1d_mlp_128_gelu', 'mnist1d_mlp', _mlp((128,), 'gelu'), 500),
        Case('mnist1d_mlp_32x32x32_relu', 'mnist1d_mlp',
             _mlp((32, 32, 32), 'relu'), 1000),
        Case('digits_conv_8x16_relu', 'digits_conv',
             dict(channels=((8, 16),), activations=('relu',),
                  batch_sizes=(128,), split='test'), 300),
        Case('mnist1d_autoencoder_16_tanh', 'autoencoder',
             dict(dataset='mnist1d', hidden_sizes=((16,),),
                  activations=('tanh',), batch_sizes=(128,), split='test'),
             500),
        Case('linear_regression', 'linear_regression', {}, 300),
        Case('digits_logistic_regression', 'logistic_regression',
             dict(dataset='digits', batch_sizes=(128,), split='test'), 300),
        Case('rosenbrock', 'rosenbrock', {}, 1000),
        Case('ill_conditioned_quadratic', 'ill_conditioned_quadratic', {},
             500),
        Case('mnist1d_mlp_2000', 'mnist1d_mlp', _PAPER_MLP, 2000),
    ],
    # Kinds of problem that no design round or meta-training run looked at
    # (added with the compact design; run once, after choosing).
    'extended': [
        Case('mnist1d_attention_16', 'mnist1d_attention',
             dict(split='test'), 1000),
        Case('mnist1d_gru_32', 'mnist1d_gru', dict(split='test'), 1000),
        Case('digits_mlp_64x64_layernorm', 'digits_mlp_layernorm',
             _mlp((64, 64), 'relu', 64), 500),
        Case('digits_mlp_64x64_batchnorm', 'digits_mlp_batchnorm',
             _mlp((64, 64), 'relu', 64), 500),
        Case('digits_mlp_1024_relu_wide', 'digits_mlp',
             _mlp((1024,), 'relu', 1024), 300),
        Case('mnist1d_mlp_5000', 'mnist1d_mlp', _mlp((32, 32), 'relu'), 5000),
    ],
}


# Development cases: used to choose designs and to select among meta-training
# runs (``meta_train.validate``), so they are never reported as held out.
# They differ from both suites in structure and split (training data), and
# all of them in seeds (quadratics, a training family, in seeds and size only).
DEV_CASES: list[Case] = [
    Case('dev_quadratic', 'quadratic', {}, 100),
    Case('dev_mnist1d_mlp_20_sigmoid', 'mnist1d_mlp',
         _mlp((20,), 'sigmoid', split='train'), 300),
    Case('dev_digits_mlp_32x32_relu', 'digits_mlp',
         _mlp((32, 32), 'relu', 64, split='train'), 500),
    Case('dev_mnist1d_mlp_64_elu', 'mnist1d_mlp',
         _mlp((64,), 'elu', split='train'), 500),
    Case('dev_mnist1d_conv_8x8_tanh', 'mnist1d_conv',
         dict(dataset='mnist1d', channels=((8, 8),), activations=('tanh',),
              batch_sizes=(64,), split='train'), 300),
    Case('dev_digits_autoencoder_32x8x32_relu', 'autoencoder',
         dict(dataset='digits', hidden_sizes=((32, 8, 32),),
              activations=('relu',), batch_sizes=(64,), split='train'), 500),
    Case('dev_mnist1d_logistic_regression', 'logistic_regression',
         dict(dataset='mnist1d', batch_sizes=(128,), split='train'), 300),
    Case('dev_linear_regression_50', 'linear_regression',
         dict(dim=50, num_examples=400), 300),
    Case('dev_rosenbrock_noisy_start', 'rosenbrock', dict(init_noise=0.5),
         500),
    Case('dev_ill_conditioned_quadratic_50', 'ill_conditioned_quadratic',
         dict(dim=50, min_eigenvalue=1e-2, max_eigenvalue=1e2), 300),
    Case('dev_mnist1d_mlp_32x32_silu', 'mnist1d_mlp',
         _mlp((32, 32), 'silu', split='train'), 1000),
    # Added before the fourth design round, to weigh long horizons, depth and
    # noise-free problems more (the weak sides found in the third round).
    Case('dev_quadratic_20d', 'quadratic', dict(dim=20), 200),
    Case('dev_digits_mlp_48_sigmoid_2000', 'digits_mlp',
         _mlp((48,), 'sigmoid', split='train'), 2000),
    Case('dev_mnist1d_mlp_24x24x24_tanh', 'mnist1d_mlp',
         _mlp((24, 24, 24), 'tanh', split='train'), 1000),
    Case('dev_mnist1d_mlp_16_relu_1500', 'mnist1d_mlp',
         _mlp((16,), 'relu', split='train'), 1500),
]
SUITES['dev'] = DEV_CASES
# Evaluation seeds of the development cases (the suites use 0, 1, ...).
DEV_SEEDS = tuple(range(100, 105))
# Suites that 'all' runs: the development cases are not among them.
REPORTED = ('paper', 'heldout')
DEFAULT_CANDIDATE = evaluate.DEFAULT_CANDIDATE
candidate_name = evaluate.candidate_name
candidate_names = evaluate.candidate_names
load_candidates = evaluate.load_candidates


def suite_names() -> list[str]:
  """The valid values of ``--suite``: every key of :data:`SUITES` and 'all'."""
  return list(SUITES) + ['all']


def suite_cases(suite: str, only: Sequence[str] | None = None) -> list[Case]:
  """The cases of ``suite`` ('all': paper and heldout), optionally a subset.

  Args:
    suite: A key of :data:`SUITES` or ``'all'``.
    only: Case names to keep (in suite order); ``None`` keeps all.

  Raises:
    ValueError: for an unknown suite or case name; the message lists the
      valid ones.
  """
  if suite not in suite_names():
    raise ValueError(f'Unknown suite {suite!r}; valid: {suite_names()}.')
  chosen = ([SUITES[name] for name in REPORTED] if suite == 'all'
            else [SUITES[suite]])
  cases = [Case(*case) for cases in chosen for case in cases]
  if only is None:
    return cases
  names = [case.name for case in cases]
  unknown = [name for name in only if name not in names]
  if unknown:
    raise ValueError(f'Unknown case(s) {unknown} in suite {suite!r}; valid:'
                     f' {names}.')
  return [case for case in cases if case.name in only]


def _score(value) -> float:
  """A mean loss for ranking: non-finite (or missing) ranks last."""
  return value if value is not None and math.isfinite(value) else math.inf


def summarise(results_by_case: Mapping[str, dict]) -> list[dict]:
  """One row per (case, candidate) from :func:`evaluate.evaluate` results.

  Values are copied as they come (NaN and inf included); only the
  comparisons rank a non-finite mean as worse than any finite one.

  Args:
    results_by_case: case name -> the results of that case, in order.

  Returns:
    Rows with keys ``case``, ``family``, ``num_steps``, ``num_seeds``,
    ``candidate``, ``candidate_mean_final_loss``, ``candidate_diverged``,
    ``adam_mean_final_loss``, ``adam_lr``, ``best_baseline``,
    ``best_baseline_mean_final_loss``, ``beats_adam`` (candidate mean below
    tuned Adam's; ``None`` without Adam), ``adam_steps_ratio``, and the
    same for tuned schedule-free AdamW: ``schedule_free_adamw_mean_final_loss``,
    ``schedule_free_adamw_lr``, ``beats_schedule_free_adamw``.
  """
  rows = []
  for case_name, results in results_by_case.items():
    optimizers = results['optimizers']
    baselines = [name for name, r in optimizers.items()
                 if r['kind'] == 'baseline']
    best = min(baselines, key=lambda name: _score(
        optimizers[name]['mean_final_loss']), default=None)
    adam = optimizers.get('adam')
    free = optimizers.get('schedule_free_adamw')
    for name, entry in optimizers.items():
      if entry['kind'] != 'candidate':
        continue
      mean = entry['mean_final_loss']
      rows.append({
          'case': case_name,
          'family': results['family'],
          'num_steps': results['num_steps'],
          'num_seeds': len(entry['final_losses']),
          'candidate': name,
          'candidate_mean_final_loss': mean,
          'candidate_diverged': entry['num_diverged'],
          'adam_mean_final_loss': None if adam is None else (
              adam['mean_final_loss']),
          'adam_lr': None if adam is None else adam['lr'],
          'best_baseline': best,
          'best_baseline_mean_final_loss': (
              None if best is None else optimizers[best]['mean_final_loss']),
          'beats_adam': (None if adam is None else
                         _score(mean) < _score(adam['mean_final_loss'])),
          'adam_steps_ratio': entry.get('adam_steps_ratio'),
          'schedule_free_adamw_mean_final_loss': None if free is None else (
              free['mean_final_loss']),
          'schedule_free_adamw_lr': None if free is None else free['lr'],
          'beats_schedule_free_adamw': (
              None if free is None else
              _score(mean) < _score(free['mean_final_loss'])),
      })
  return rows


def seed_scores(results_by_case: Mapping[str, dict]) -> dict[str, dict]:
  """Each candidate's score over the cases, per evaluation seed.

  The score of one seed is the mean over cases of
  ``clip(log(loss_s / adam), -1, 1)``: the log of the candidate's final loss
  on that seed's problem over tuned Adam's mean final loss on the case,
  clipped as in the dev score (``meta_train.validate``; a non-finite loss
  counts as 10). Lower is better; below 0 beats tuned Adam on average. The
  spread of the per-seed scores is the seed-to-seed noise; two candidates
  judged on the same problems are compared by their per-seed differences.

  Args:
    results_by_case: case name -> :func:`evaluate.evaluate` results with
      tuned Adam among the optimizers and the same seeds for every
      candidate.

  Returns:
    candidate -> ``{'per_seed': [...], 'mean', 'sem'}`` (``sem``: the
    standard error of the mean over seeds; 0 for one seed); empty without
    cases.

  Raises:
    ValueError: a case has no tuned Adam.
  """
  from meta_train import validate  # pylint: disable=g-import-not-at-top
  terms: dict[str, list[np.ndarray]] = {}
  for case_name, results in results_by_case.items():
    optimizers = results['optimizers']
    if 'adam' not in optimizers:
      raise ValueError(f'case {case_name} has no tuned Adam to score against')
    adam = optimizers['adam']['mean_final_loss']
    for name, entry in optimizers.items():
      if entry['kind'] == 'candidate':
        terms.setdefault(name, []).append(np.array([
            validate._score_term(float(loss), adam)  # pylint: disable=protected-access
            for loss in entry['final_losses']]))
  scores = {}
  for name, per_case in terms.items():
    per_seed = np.mean(np.stack(per_case), axis=0)
    sem = (float(np.std(per_seed, ddof=1) / np.sqrt(len(per_seed)))
           if len(per_seed) > 1 else 0.0)
    scores[name] = {'per_seed': per_seed.tolist(),
                    'mean': float(np.mean(per_seed)), 'sem': sem}
  return scores


def paired_difference(scores: Mapping[str, dict], candidate: str,
                      reference: str) -> tuple[float, float]:
  """Mean and standard error over seeds of ``candidate``'s per-seed score
  minus ``reference``'s (from :func:`seed_scores`; negative: ``candidate``
  is better)."""
  diff = (np.asarray(scores[candidate]['per_seed'])
          - np.asarray(scores[reference]['per_seed']))
  sem = (float(np.std(diff, ddof=1) / np.sqrt(len(diff)))
         if len(diff) > 1 else 0.0)
  return float(np.mean(diff)), sem


def scores_markdown(results_by_case: Mapping[str, dict]) -> str:
  """Lines with each reported suite's :func:`seed_scores` of every candidate
  and, for every later candidate, its paired difference from the first."""
  lines = []
  for suite in REPORTED:
    names = {case.name for case in SUITES[suite]}
    results = {name: r for name, r in results_by_case.items()
               if name in names and 'adam' in r['optimizers']}
    if not results:
      continue
    scores = seed_scores(results)
    lines.append(f'Score on {suite} ({len(results)} cases; mean over cases of '
                 'the log final-loss ratio to tuned Adam clipped to ±1, per '
                 'seed; mean ± standard error over seeds):')
    first = next(iter(scores))
    for name, score in scores.items():
      line = f'- {name}: {score["mean"]:+.3f} ± {score["sem"]:.3f}'
      if name != first:
        diff, sem = paired_difference(scores, name, first)
        line += f'; minus {first}: {diff:+.3f} ± {sem:.3f}'
      lines.append(line)
  return '\n'.join(lines)


def _fmt(value, spec: str = '.4g') -> str:
  if value is None:
    return '-'
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  return format(value, spec)


def markdown(rows: Sequence[dict]) -> str:
  """A Markdown table of summary rows, then each candidate's win count."""
  lines = ['| case | steps | candidate | loss | diverged | Adam loss | Adam lr'
           ' | best baseline | beats Adam | Adam steps ratio | SF-AdamW loss'
           ' (lr) | beats SF-AdamW |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|']
  for row in rows:
    best = row['best_baseline']
    best = '-' if best is None else (
        f'{best} ({_fmt(row["best_baseline_mean_final_loss"])})')
    lines.append(
        f'| {row["case"]} | {row["num_steps"]} | {row["candidate"]} | '
        f'{_fmt(row["candidate_mean_final_loss"])} | '
        f'{row["candidate_diverged"]}/{row["num_seeds"]} | '
        f'{_fmt(row["adam_mean_final_loss"])} | {_fmt(row["adam_lr"], "g")} | '
        f'{best} | {_fmt(row["beats_adam"])} | '
        f'{_fmt(row["adam_steps_ratio"], ".3g")} | '
        f'{_free(row)} | {_fmt(row.get("beats_schedule_free_adamw"))} |')
  lines.append('')
  for key, baseline in (('beats_adam', 'Adam'),
                        ('beats_schedule_free_adamw', 'schedule-free AdamW')):
    wins = {}
    for row in rows:
      if row.get(key) is not None:
        won, total = wins.get(row['candidate'], (0, 0))
        wins[row['candidate']] = (won + row[key], total + 1)
    lines.extend(f'{name} beats tuned {baseline} on {won}/{total} cases.'
                 for name, (won, total) in wins.items())
  return '\n'.join(lines)


def _free(row: dict) -> str:
  loss = row.get('schedule_free_adamw_mean_final_loss')
  if loss is None:
    return '-'
  return f'{_fmt(loss)} ({_fmt(row["schedule_free_adamw_lr"], "g")})'


def _write_atomic(path: str, text: str) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def write_summary(rows: Sequence[dict], out_dir: str,
                  metadata: Mapping[str, Any],
                  results_by_case: Mapping[str, dict] | None = None
                  ) -> tuple[str, str]:
  """Writes ``summary.json`` (metadata and rows), ``summary.md`` (with the
  per-suite :func:`scores_markdown` when ``results_by_case`` is given) and
  ``summary.png`` (:func:`meta_train.plots.suite_summary`)."""
  os.makedirs(out_dir, exist_ok=True)
  json_path = os.path.join(out_dir, 'summary.json')
  md_path = os.path.join(out_dir, 'summary.md')
  _write_atomic(json_path, json.dumps({**metadata, 'rows': list(rows)},
                                      indent=1, allow_nan=True))
  scores = scores_markdown(results_by_case or {})
  _write_atomic(md_path, markdown(rows) + '\n' + (
      f'\n{scores}\n' if scores else ''))
  if rows:
    plots.suite_summary(rows, os.path.join(out_dir, 'summary.png'))
  return json_path, md_path


def run_suite(cases: Sequence[Case], candidates: Mapping[str, Any], *,
              num_seeds: int, out_dir: str, progress: bool = True,
              metadata: Mapping[str, Any] | None = None,
              first_seed: int = 0,
              baselines: Mapping[str, Any] | None = None) -> list[dict]:
  """Evaluates every candidate on every case; writes reports and a summary.

  Args:
    cases: The cases (or ``(name, family, kwargs, num_steps)`` tuples), run
      in order.
    candidates: name -> optax transform to judge.
    num_seeds: Evaluation problems per case (seeds ``first_seed`` on).
    out_dir: Receives ``<case>.json``, ``<case>.png``, ``summary.json`` and
      ``summary.md`` (the summary is rewritten after every case).
    progress: Show a progress bar over cases.
    metadata: Extra entries for ``summary.json``.
    first_seed: The first evaluation seed.
    baselines: name -> ``lr -> optax transform`` (default:
      ``evaluate.BASELINES``, all five).

  Returns:
    The rows of :func:`summarise`.
  """
  import tasks  # pylint: disable=g-import-not-at-top
  cases = [Case(*case) for case in cases]  # Plain 4-tuples are cases too.
  metadata = {**(metadata or {}), 'num_seeds': num_seeds,
              'first_seed': first_seed,
              'cases': [case._asdict() for case in cases]}
  results_by_case, rows = {}, []
  with tqdm.tqdm(cases, unit='case', disable=not progress) as bar:
    for case in bar:
      bar.set_postfix_str(case.name)
      family = tasks.get_family(case.family, **case.kwargs)
      results = evaluate.evaluate(family, candidates,
                                  num_steps=case.num_steps,
                                  seeds=range(first_seed,
                                              first_seed + num_seeds),
                                  baselines=(evaluate.BASELINES
                                             if baselines is None
                                             else baselines))
      results['case'] = case._asdict()
      evaluate.write_report(results, out_dir, stem=case.name)
      results_by_case[case.name] = results
      rows = summarise(results_by_case)
      write_summary(rows, out_dir, metadata, results_by_case)
      tqdm.tqdm.write(f'{case.name} ({case.num_steps} steps):\n'
                      f'{evaluate.table(results)}')
  return rows


def main(argv=None) -> list[dict]:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog='python -m meta_train.suite',
      description='Run a named suite of evaluation cases: learned optimizers '
      'against tuned Adam, schedule-free AdamW, RMSprop, SGD and Nesterov '
      'SGD.')
  parser.add_argument('--suite', default='paper', choices=suite_names(),
                      help='which cases to run')
  parser.add_argument('--seeds', type=int, default=3,
                      help='evaluation problems per case')
  parser.add_argument('--out', default='runs/suite', help='output directory')
  parser.add_argument('--candidates', nargs='+', default=[DEFAULT_CANDIDATE],
                      metavar='NAME_OR_PATH',
                      help="meta_params.npz files, or 'default' for the "
                      'shipped optimizer')
  parser.add_argument('--only', nargs='+', metavar='CASE',
                      help='run only these cases of the suite')
  parser.add_argument('--baselines', nargs='+', metavar='NAME',
                      choices=tuple(evaluate.BASELINES),
                      default=tuple(evaluate.BASELINES),
                      help='tuned baselines to run (default: all of %(choices)s)')
  parser.add_argument('--no-progress', dest='progress', action='store_false')
  args = parser.parse_args(argv)
  if args.seeds < 1:
    parser.error('--seeds must be at least 1')
  try:
    cases = suite_cases(args.suite, args.only)
  except ValueError as e:
    parser.error(str(e))
  candidates = load_candidates(args.candidates)
  rows = run_suite(cases, candidates, num_seeds=args.seeds, out_dir=args.out,
                   progress=args.progress,
                   metadata={'suite': args.suite,
                             'candidates': candidate_names(args.candidates),
                             'baselines': list(args.baselines)},
                   first_seed=DEV_SEEDS[0] if args.suite == 'dev' else 0,
                   baselines={name: evaluate.BASELINES[name]
                              for name in args.baselines})
  with open(os.path.join(args.out, 'summary.md')) as f:
    print(f.read(), end='')  # the table, its win counts and the scores
  print(f'wrote {os.path.join(args.out, "summary.json")} and summary.md')
  return rows


if __name__ == '__main__':
  main()
