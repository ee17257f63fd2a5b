"""Prototype rules against tuned Adam and Nesterov on one ad-hoc case.

  python benchmarks/prototype/case.py "sfh()|sfh(lr=0.3, freeze=True)" \
      mnist1d_mlp "dict(hidden_sizes=((40,),), activations=('sigmoid',))" \
      200 [--first-seed 100] [--examples 1000]

Prints each candidate's mean final loss over 5 seeds and its log ratio to
tuned Adam's. ``--examples N`` keeps the first N examples of a data set
family's split (a small-data regime on the training split).
"""

import argparse
import ast
import pathlib
import sys

import numpy as np
import optax

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / 'benchmarks' / 'prototype')]

import rules  # noqa: E402
import tasks  # noqa: E402
from meta_train import evaluate  # noqa: E402


class Subset:
  """A data set family whose tasks keep the first ``n`` examples."""

  def __init__(self, family, n: int):
    self.family, self.n = family, n

  def __getattr__(self, name):
    return getattr(self.family, name)

  def sample_task(self, rng):
    task = self.family.sample_task(rng)
    return task.replace(**{k: getattr(task, k)[:self.n] for k in ('x', 'y')
                           if hasattr(task, k)})  # an autoencoder has no y


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('names', help="candidates separated by '|'")
  parser.add_argument('family')
  parser.add_argument('kwargs', help='a dict(...) literal of family options')
  parser.add_argument('steps', type=int)
  parser.add_argument('--first-seed', type=int, default=100)
  parser.add_argument('--examples', type=int, default=None)
  args = parser.parse_args(argv)
  call = ast.parse(args.kwargs, mode='eval').body
  kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
  family = tasks.get_family(args.family, **kwargs)
  if args.examples:
    family = Subset(family, args.examples)
  names = args.names.split('|')
  r = evaluate.evaluate(
      family, {n: rules.make(n) for n in names}, num_steps=args.steps,
      seeds=range(args.first_seed, args.first_seed + 5),
      baselines={'adam': optax.adam,
                 'nesterov': evaluate.BASELINES['nesterov']})
  adam = r['optimizers']['adam']['mean_final_loss']
  for name, o in r['optimizers'].items():
    loss = o['mean_final_loss']
    lr = f" (lr {o['lr']:g})" if 'lr' in o else ''
    print(f'{name[:70]:70s} {loss:.4g} {np.log(loss / adam):+.3f}{lr}')


if __name__ == '__main__':
  main()
