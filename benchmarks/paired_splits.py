"""Meta-trained against where it started, paired, on both data splits.

Scores each candidate and a base (usually a run's
``meta_params_initial.npz``) on the same 24 problems of a family's
training split and of its test split, drawn from the validation stream of
``meta_train.validation`` past the problems a run validates on (indices
1000-1023), and prints the mean change of the score (mean log10 of the
full loss over the last tenth of the run; below 0: the candidate is
better) with its standard error and the number of problems it wins::

  python benchmarks/paired_splits.py FAMILY STEPS CANDIDATE... BASE
"""

import argparse

import numpy as np

import l2l
import tasks
from meta_train import validation

FIRST_PROBLEM = 1000
NUM_PROBLEMS = 24


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('family')
  parser.add_argument('steps', type=int)
  parser.add_argument('paths', nargs='+', metavar='META_PARAMS')
  args = parser.parse_args(argv)
  if len(args.paths) < 2:
    parser.error('give at least one candidate and the base')
  meta_params = {p: l2l.load_meta_params(p)[0] for p in args.paths}
  base = args.paths[-1]
  for split in ('train', 'test'):
    family = tasks.get_family(args.family, split=split)
    validator = validation.Validator(family, 1, args.steps)
    validator.problems = [validation.validation_problem(family, FIRST_PROBLEM + i)
                          for i in range(NUM_PROBLEMS)]
    reference = validator.scores(meta_params[base])
    for path in args.paths[:-1]:
      change = validator.scores(meta_params[path]) - reference
      print(f'{split} split: {path} against {base}: mean change '
            f'{change.mean():+.4f} ± {change.std() / np.sqrt(change.size):.4f}'
            f' (standard error), wins {(change < 0).sum()}/{change.size}',
            flush=True)


if __name__ == '__main__':
  main()
