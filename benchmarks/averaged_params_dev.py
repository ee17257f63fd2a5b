"""Final loss at the params y against the schedule-free average x.

For the shipped default (a fresh compact optimizer: the ``free`` rule's
steps), trains each development case (``dev`` in ``meta_train/suite.py``:
training split, seeds from 100) and
prints the mean final full loss at the params ``y`` a drop-in user holds
and at the average ``x`` that ``l2l.averaged_params`` returns::

  python benchmarks/averaged_params_dev.py
"""

import jax
import numpy as np

import l2l
import tasks
from meta_train import evaluate
from meta_train import suite


def final_losses(task, optimizer, key, num_steps: int) -> tuple[float, float]:
  """Trains one problem; returns the final full loss at y and at x."""
  @jax.jit
  def run():
    problem, params, state = evaluate.train(task, optimizer, key, num_steps)
    return (task.full_loss(params, problem),
            task.full_loss(l2l.averaged_params(params, state, None), problem))

  at_y, at_x = run()
  return float(at_y), float(at_x)


def main() -> None:
  optimizer = l2l.lstm_optimizer()
  print('| dev case | steps | final loss at y (params) | at x (average) |')
  print('|---|---|---|---|')
  lower = 0
  for case in suite.DEV_CASES:
    family = tasks.get_family(case.family, **case.kwargs)
    losses = []
    for seed in suite.DEV_SEEDS:
      task, key = evaluate.eval_problem(family, seed)
      losses.append(final_losses(task, optimizer, key, case.num_steps))
    y, x = np.mean(losses, 0)
    lower += x < y
    print(f'| {case.name} | {case.num_steps} | {y:.4g} | {x:.4g} |',
          flush=True)
  print(f'the average is lower on {lower}/{len(suite.DEV_CASES)} dev cases')


if __name__ == '__main__':
  main()
