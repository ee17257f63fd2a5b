"""Tuned schedule-free AdamW against tuned Adam on the development cases.

The measurement behind the ``free`` design: with its learning rate tuned on
the same half-decade grid, does schedule-free AdamW (Defazio et al. 2024,
``optax.contrib.schedule_free_adamw``, no weight decay, no warmup) reach a
lower final loss than tuned Adam? Run on the ``dev`` cases only (training
split, seeds from 100), never on the reported suites::

  python benchmarks/schedule_free_dev.py
"""

import time

import optax

import tasks
from meta_train import evaluate
from meta_train import suite


def main() -> None:
  baselines = {
      'adam': optax.adam,
      'schedule_free_adamw': lambda lr: optax.contrib.schedule_free_adamw(
          lr, weight_decay=0.0),
  }
  print('| dev case | steps | tuned Adam (lr) | tuned schedule-free AdamW (lr) '
        '| ratio |')
  print('|---|---|---|---|---|')
  wins = 0
  for case in suite.DEV_CASES:
    start = time.perf_counter()
    family = tasks.get_family(case.family, **case.kwargs)
    results = evaluate.evaluate(family, {}, num_steps=case.num_steps,
                                seeds=suite.DEV_SEEDS, baselines=baselines)
    adam, free = (results['optimizers'][k] for k in baselines)
    ratio = free['mean_final_loss'] / adam['mean_final_loss']
    wins += ratio < 1
    print(f'| {case.name} | {case.num_steps} | {adam["mean_final_loss"]:.4g} '
          f'({adam["lr"]:g}) | {free["mean_final_loss"]:.4g} ({free["lr"]:g}) '
          f'| {ratio:.3g} |  ({time.perf_counter() - start:.0f} s)',
          flush=True)
  print(f'schedule-free AdamW beats Adam on {wins}/{len(suite.DEV_CASES)} '
        'dev cases')


if __name__ == '__main__':
  main()
