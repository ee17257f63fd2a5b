"""Compares hyperparameter tuners on small-data problems.

For every problem of ``tasks.regularisation`` chosen, every seed and every
method (the online hypergradient tuner, the meta-learned tuner,
population-based training with 8 members, random search with 16 trials,
Optuna's TPE sampler with 16 trials, the best of a 16-point grid), one
record of final validation loss, test loss and accuracy and cost in units
of one training run is appended to ``DIR/runs.jsonl``; a rerun skips the
records already there, so an interrupted run resumes. Then it writes
``DIR/summary.json`` (means over seeds, shaped ``{"problems": {PROBLEM:
{METHOD: {"val_loss", "test_loss", "test_accuracy", "cost_runs"}}}}``),
``DIR/reference.json`` (one run at the declared initial values, for
comparison), ``DIR/trajectories_<problem>.png`` and ``DIR/cost.png``::

  python -m meta_train.tune --suite small --out runs/tune
  python -m meta_train.tune --suite full --out runs/tune_full --seeds 0 1 2

The learned tuner is meta-trained first on other problems
(``tasks.regularisation.META_TRAIN``) unless ``--tuner PATH`` names saved
meta-parameters; the result is saved as ``DIR/tuner.npz`` and reused.
"""

import argparse
import json
import os
import tempfile

import numpy as np
import tqdm

from meta_train import tune_methods
from meta_train import tune_plots
from tasks import regularisation

SUITES = regularisation.SIZES


def _write_json(path: str, obj) -> None:
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                             suffix='.json')
  with os.fdopen(fd, 'w') as f:
    json.dump(obj, f, indent=1)
  os.chmod(tmp, 0o644)
  os.replace(tmp, path)


def read_journal(path: str) -> list[dict]:
  """Records of ``runs.jsonl``; a torn last line (a killed run) is dropped."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return records


def _append(path: str, record: dict) -> None:
  with open(path, 'a') as f:
    f.write(json.dumps(record) + '\n')
    f.flush()
    os.fsync(f.fileno())


FIELDS = ('val_loss', 'test_loss', 'test_accuracy', 'cost_runs')


def summarise(records: list[dict], methods) -> dict:
  """Means over seeds, ``{"problems": {PROBLEM: {METHOD: {FIELD}}}}``."""
  problems = {}
  for r in records:
    if r['method'] in methods:
      problems.setdefault(r['problem'], {}).setdefault(
          r['method'], []).append(r)
  return {'problems': {
      p: {m: {f: float(np.mean([r[f] for r in rs])) for f in FIELDS}
          for m, rs in sorted(by.items(), key=lambda i: methods.index(i[0]))}
      for p, by in problems.items()}}


def _runner(method: str, tuner):
  if method == 'online':
    return tune_methods.run_online
  if method == 'learned':
    return lambda p, s: tune_methods.run_learned(p, s, tuner)
  if method in tune_methods.POPULATION:
    return lambda p, s: tune_methods.run_population(p, s, method)
  if method == 'optuna_tpe':
    return tune_methods.run_optuna
  return tune_methods.run_default


def main(argv=None) -> dict:
  """Runs the comparison; returns the summary."""
  args = _parser().parse_args(argv)
  if args.methods and 'optuna_tpe' in args.methods:
    tune_methods.require_optuna()
  os.makedirs(args.out, exist_ok=True)
  journal = os.path.join(args.out, 'runs.jsonl')
  records = read_journal(journal)
  done = {(r['problem'], r['method'], r['seed']) for r in records}
  methods = list(args.methods) + ['default']
  tuner = None
  if 'learned' in methods:
    tuner = tune_methods.learned_tuner_params(
        args.tuner or os.path.join(args.out, 'tuner.npz'), size=args.suite,
        train=args.tuner is None, progress=not args.quiet)
  jobs = [(p, s, m) for p in args.problems for s in args.seeds
          for m in methods if (p, m, s) not in done]
  problems = {}
  with tqdm.tqdm(jobs, unit='run', disable=args.quiet) as bar:
    for problem_name, seed, method in bar:
      bar.set_description(f'{problem_name} {method} seed {seed}')
      key = (problem_name, seed)
      if key not in problems:
        problems[key] = regularisation.make_problem(
            problem_name, size=args.suite, seed=seed,
            num_steps=args.num_steps)
      record = _runner(method, tuner)(problems[key], seed)
      record.update(problem=problem_name, method=method, seed=seed)
      _append(journal, record)
      records.append(record)
  chosen = [r for r in records if r['problem'] in args.problems
            and r['seed'] in args.seeds]
  summary = summarise(chosen, list(args.methods))
  _write_json(os.path.join(args.out, 'summary.json'), summary)
  _write_json(os.path.join(args.out, 'reference.json'),
              summarise(chosen, ['default']))
  tune_plots.trajectories(chosen, args.out)
  tune_plots.cost(summary, os.path.join(args.out, 'cost.png'))
  if not args.quiet:
    print(format_table(summary))
  return summary


def format_table(summary: dict) -> str:
  """The summary as a Markdown table."""
  lines = ['| problem | method | val loss | test loss | test acc | cost (runs) |',
           '|---|---|---|---|---|---|']
  for p, by in summary['problems'].items():
    for m, r in by.items():
      lines.append(f"| {p} | {m} | {r['val_loss']:.4f} | {r['test_loss']:.4f}"
                   f" | {r['test_accuracy']:.3f} | {r['cost_runs']:.2f} |")
  return '\n'.join(lines)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m meta_train.tune', description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--suite', choices=SUITES, default='small',
                      help='training steps per run: small (400) or full (1500)')
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument('--problems', nargs='+', default=list(
      regularisation.PROBLEMS), choices=list(regularisation.PROBLEMS))
  parser.add_argument('--methods', nargs='+', default=list(
      tune_methods.METHODS), choices=list(tune_methods.METHODS))
  parser.add_argument('--seeds', nargs='+', type=int, default=[0])
  parser.add_argument('--num-steps', type=int, default=None,
                      help='override the suite\'s training steps per run')
  parser.add_argument('--tuner', default=None,
                      help='meta-parameters of the learned tuner (.npz); '
                      'meta-trained into DIR/tuner.npz if not given')
  parser.add_argument('--quiet', action='store_true',
                      help='no progress bar and no table')
  return parser


if __name__ == '__main__':
  main()
