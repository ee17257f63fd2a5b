"""Model selection on the training distribution, away from the suites.

``python -m meta_train.validate A.npz B.npz`` runs each learned optimizer on
unseen problems of the meta-training families (evaluation seeds from
``--first-seed`` on, which the suites never use; the families' training
split) and prints, per family, the mean log final training loss; the sum
over families is the selection score (lower is better). Choosing among
meta-training runs by this score keeps the evaluation suites out of the
choice.
"""

import argparse
from typing import Sequence

import jax
import numpy as np

import l2l
import tasks
from meta_train import evaluate


def scores(meta_params_path: str, families: Sequence[str], *, num_seeds: int,
           first_seed: int, num_steps: int) -> dict[str, float]:
  """Family name -> mean log final full loss over the validation problems."""
  optimizer = l2l.lstm_optimizer(meta_params_path)
  run = jax.jit(lambda task, key: evaluate.trajectory(
      task, optimizer, key, num_steps)[-1])
  result = {}
  for name in families:
    family = tasks.get_family(name)
    finals = np.array([float(run(*evaluate.eval_problem(family, seed)))
                       for seed in range(first_seed, first_seed + num_seeds)])
    result[name] = float(np.mean(np.log(np.maximum(finals, 1e-30))))
  return result


def main(argv=None) -> dict[str, dict[str, float]]:
  parser = argparse.ArgumentParser(prog='python -m meta_train.validate',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('meta_params', nargs='+', help='meta_params.npz files')
  parser.add_argument('--families', nargs='+',
                      default=['quadratic', 'mnist1d_mlp_paper'])
  parser.add_argument('--seeds', type=int, default=16)
  parser.add_argument('--first-seed', type=int, default=1000)
  parser.add_argument('--steps', type=int, default=100)
  args = parser.parse_args(argv)
  results = {}
  for path in args.meta_params:
    results[path] = scores(path, args.families, num_seeds=args.seeds,
                           first_seed=args.first_seed, num_steps=args.steps)
    cells = ' '.join(f'{k} {v:.3f}' for k, v in results[path].items())
    print(f'{path}: {cells} | score {sum(results[path].values()):.3f}',
          flush=True)
  return results


if __name__ == '__main__':
  main()
