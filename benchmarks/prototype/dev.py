"""Scores prototype rules on the dev cases, as ``meta_train.validate`` does.

  python benchmarks/prototype/dev.py "sfh()|sfh(lr=0.2)" [--first-seed 110]

For each candidate: the mean final loss of each of the 15 dev cases over 10
seeds against tuned Adam's, the per-case log ratio, the wins, the diverged
runs and the clipped mean log ratio (lower is better). Tuned Adam's results
are cached in ``runs/prototype/adam_<first seed>.json``.
"""

import argparse
import json
import os
import pathlib
import sys
import time

import jax
import numpy as np
import optax

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / 'benchmarks' / 'prototype')]

import rules  # noqa: E402
import tasks  # noqa: E402
from meta_train import evaluate, suite  # noqa: E402


def adam_results(seeds, path: pathlib.Path) -> dict:
  out = json.loads(path.read_text()) if path.exists() else {}
  for case in suite.DEV_CASES:
    if case.name in out:
      continue
    family = tasks.get_family(case.family, **case.kwargs)
    r = evaluate.evaluate(family, {}, num_steps=case.num_steps, seeds=seeds,
                          baselines={'adam': optax.adam})
    adam = r['optimizers']['adam']
    out[case.name] = {'loss': adam['mean_final_loss'], 'lr': adam['lr']}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path)
  return out


def score(name: str, seeds, adam: dict) -> None:
  opt = rules.make(name)
  start = time.time()
  lines, ratios, wins, diverged = [], [], 0, 0
  for case in suite.DEV_CASES:
    family = tasks.get_family(case.family, **case.kwargs)
    run = jax.jit(lambda t, k, n=case.num_steps: evaluate.trajectory(t, opt, k, n))
    curves = [np.asarray(run(*evaluate.eval_problem(family, s))) for s in seeds]
    final = np.array([c[-1] for c in curves])
    diverged += int(sum(not np.isfinite(c[-1]) or c[-1] > c[0] for c in curves))
    mean, base = final.mean(), adam[case.name]['loss']
    with np.errstate(divide='ignore'):
      ratio = np.log(mean / base) if np.isfinite(mean) else np.inf
    wins += bool(mean < base)
    ratios.append(ratio)
    lines.append(f'{case.name[4:30]:26s} {mean:9.3g} {base:9.3g} {ratio:+6.2f}'
                 f' {"W" if mean < base else "."}')
  r = np.array(ratios)
  clipped = np.where(np.isinf(r) & (r > 0), 10.0, np.clip(r, -1, 1))
  print(f'== {name}: dev {wins}/{len(r)} diverged {diverged} score '
        f'{clipped.mean():.3f} ({time.time() - start:.0f} s)')
  print('\n'.join(lines), flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('names', help="candidates separated by '|'")
  parser.add_argument('--first-seed', type=int, default=100)
  args = parser.parse_args(argv)
  seeds = tuple(range(args.first_seed, args.first_seed + 10))
  adam = adam_results(
      seeds, ROOT / 'runs' / 'prototype' / f'adam_{args.first_seed}.json')
  for name in args.names.split('|'):
    score(name, seeds, adam)


if __name__ == '__main__':
  main()
