"""Candidates against a base on evaluation problems that no run draws, paired.

Trains each candidate and the base (usually a run's
``meta_params_initial.npz``) on the same problems of a family, drawn from
the evaluation stream of ``meta_train.evaluate`` at seeds that runs never
evaluate on (default 100-131; a run's own evaluation uses seeds 0-4), and
prints per candidate the mean final loss, the mean log10 final loss, its
change against the base with the standard error, and the problems won.
Data-set families use their test split, as the evaluation does::

  python benchmarks/paired_eval.py FAMILY CANDIDATE... BASE [--steps 100]
      [--first-seed 100] [--num-problems 32]
"""

import argparse

import numpy as np

import tasks
from meta_train import evaluate


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('family')
  parser.add_argument('paths', nargs='+', metavar='META_PARAMS')
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--first-seed', type=int, default=100)
  parser.add_argument('--num-problems', type=int, default=32)
  args = parser.parse_args(argv)
  if len(args.paths) < 2:
    parser.error('give at least one candidate and the base')
  if args.first_seed < 5:
    parser.error('--first-seed must be at least 5: seeds 0-4 are the runs\' '
                 'own evaluation')
  family = tasks.get_family(args.family)
  if 'split' in getattr(family, '__dataclass_fields__', {}):
    family = tasks.get_family(args.family, split='test')
  seeds = range(args.first_seed, args.first_seed + args.num_problems)
  results = evaluate.evaluate(family, evaluate.load_candidates(args.paths),
                              num_steps=args.steps, seeds=seeds, baselines={})
  names = list(evaluate.candidate_names(args.paths))
  finals = {n: np.asarray(results['optimizers'][n]['final_losses'])
            for n in names}
  base = finals[names[-1]]
  print(f'{args.family}, {args.steps} steps, evaluation seeds '
        f'{seeds.start}-{seeds.stop - 1}; change against {names[-1]}')
  print('| candidate | mean final loss | mean log10 final loss | change ± se '
        '| wins |')
  print('|---|---|---|---|---|')
  for name in names:
    change = np.log10(finals[name]) - np.log10(base)
    se = np.std(change, ddof=1) / np.sqrt(len(change))
    print(f'| {name} | {finals[name].mean():.4g} | '
          f'{np.log10(finals[name]).mean():+.3f} | {change.mean():+.3f} ± '
          f'{se:.3f} | {int(np.sum(finals[name] < base))}/{len(base)} |')


if __name__ == '__main__':
  main()
