"""Prototype rules on many 10-d dev quadratics (100 steps) against Adam.

  python benchmarks/prototype/quadratics.py "sfh()|sfh(beta=0.95,b2=0.9)" \
      [--first-seed 300] [--seeds 200]

For each candidate: the mean and median final loss over the seeds, the
share of seeds where it beats Adam at lr 1 (tuned Adam's rate on these
seeds), the share of runs that end more than 3x above their best loss (a
late spike) and the three worst final losses. Seeds from 300 keep clear of
the dev cases (100-129) and the suites (0-4).

``--draws N`` also draws N random sets of 5 of the seeds (a suite's size)
and prints how often the candidate's 5-seed mean beats Adam's, with Adam's
rate tuned per draw (the better of lr 1 and 3).
"""

import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / 'benchmarks' / 'prototype')]

import rules  # noqa: E402
import tasks  # noqa: E402
from meta_train import evaluate  # noqa: E402

STEPS = 100


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('names', help="candidates separated by '|'")
  parser.add_argument('--first-seed', type=int, default=300)
  parser.add_argument('--seeds', type=int, default=200)
  parser.add_argument('--draws', type=int, default=0)
  args = parser.parse_args(argv)
  family = tasks.get_family('quadratic')
  problems = [evaluate.eval_problem(family, s) for s in
              range(args.first_seed, args.first_seed + args.seeds)]
  task, keys = problems[0][0], jnp.stack([k for _, k in problems])

  def curves(opt):
    run = jax.jit(jax.vmap(
        lambda k: evaluate.trajectory(task, opt, k, STEPS)))
    return np.asarray(run(keys))

  adam = curves(optax.adam(1.0))[:, -1]
  print(f'adam (lr 1): mean {adam.mean():.4f} median {np.median(adam):.4f}')
  draws = np.random.default_rng(0).integers(0, args.seeds, (args.draws, 5))
  tuned = np.minimum(adam[draws].mean(1),
                     curves(optax.adam(3.0))[:, -1][draws].mean(1))
  for name in args.names.split('|'):
    c = curves(rules.make(name))
    final = c[:, -1]
    print(f'{name:38s} mean {final.mean():.4f} median {np.median(final):.4f}'
          f' beats adam {np.mean(final < adam):.2f} late spike '
          f'{np.mean(final > 3 * c.min(1)):.2f} worst '
          f'{np.sort(final)[-3:].round(2)}', flush=True)
    if args.draws:
      print(f'{"":38s} 5-seed mean beats tuned adam in '
            f'{np.mean(final[draws].mean(1) < tuned):.2f} of {args.draws}'
            ' draws', flush=True)


if __name__ == '__main__':
  main()
