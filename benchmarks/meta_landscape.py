"""How rough is the meta-loss around a fresh learned optimizer?

Scores the fresh compact design (its learned read-outs at zero, so it is
the nominal rule) and random perturbations of its trainable leaves on the
validation problems of ``python -m meta_train --validate-every``
(``meta_train.validation``: mean over problems of the log10 full loss at
the end of the run; lower is better). If perturbations much smaller than
an evolution-strategies sigma already move the score by more than
meta-training could hope to gain, the meta-gradient is mostly noise there.

  python benchmarks/meta_landscape.py [--family quadratic] [--steps 100]
      [--problems 16] [--sigmas 1e-4 1e-3 1e-2] [--draws 3]
      [--train-only output] [--hidden-size 4]
"""

import argparse
import time

import jax
import numpy as np

import l2l
import tasks
from l2l import _fit
from meta_train import validation


def perturbed(meta_params, mask, sigma: float, seed: int):
  """``meta_params`` plus N(0, sigma^2) noise on the leaves ``mask`` marks."""
  leaves, tree = jax.tree.flatten(meta_params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [
      x + sigma * jax.random.normal(k, x.shape, x.dtype) if marked else x
      for x, k, marked in zip(leaves, keys, jax.tree.leaves(mask))])


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--family', default='quadratic')
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--problems', type=int, default=16)
  parser.add_argument('--sigmas', type=float, nargs='+',
                      default=[1e-4, 1e-3, 1e-2])
  parser.add_argument('--draws', type=int, default=3)
  parser.add_argument('--design', default='compact')
  parser.add_argument('--train-only', default='output',
                      choices=_fit.SUBSETS)
  parser.add_argument('--hidden-size', type=int, default=4)
  args = parser.parse_args(argv)
  begin = time.perf_counter()
  validator = validation.Validator(tasks.get_family(args.family),
                                   args.problems, args.steps)
  fresh = l2l.init_meta_params(jax.random.key(0), design=args.design,
                               hidden_size=args.hidden_size)
  mask = _fit.trainable_leaves(fresh, args.train_only)
  base = validator.scores(fresh)
  print(f'{args.family}, {args.steps} steps, {args.problems} validation '
        f'problems; {args.design} design, --train-only {args.train_only}')
  print(f'fresh: {base.mean():+.3f}')
  print('| sigma | score of each draw | mean change | spread of the '
        'change over problems |')
  print('|---|---|---|---|')
  for sigma in args.sigmas:
    scores = np.stack([validator.scores(perturbed(fresh, mask, sigma, seed))
                       for seed in range(args.draws)])
    change = scores - base
    print(f'| {sigma:g} | ' + ' '.join(f'{s:+.3f}' for s in scores.mean(1))
          + f' | {change.mean():+.3f} | {change.std():.3f} |', flush=True)
  print(f'({time.perf_counter() - begin:.0f} s)')


if __name__ == '__main__':
  main()
