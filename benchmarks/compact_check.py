"""Does meta-training move the compact design away from its nominal rule,
for the better, on held-out problems? A short check, not a result table.

  python benchmarks/compact_check.py [--family quadratic] [--meta-steps 100]
      [--augment] [--estimator pes]

Meta-trains a fresh compact optimizer (``l2l.meta_train``, the
``--train-only`` subset of its meta-parameters) and prints, for the fresh and the trained one, the mean
log10 final full loss and the mean log10 loss along the run (the
meta-objective) over held-out problems (other keys than training:
``--seeds`` seeds of ``--num-problems`` problems, ``--steps`` inner
steps), with their standard deviations across seeds.
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

import l2l
import tasks

HELD_OUT_SEED = 10_000  # evaluation keys, apart from meta-training's


def log_losses(meta_params, task, seed: int, num_problems: int,
               steps: int) -> tuple[float, float]:
  """Mean log10 full loss after ``steps`` updates of fresh problems, and
  mean log10 minibatch loss along the run (what meta-training lowers)."""
  inner = l2l.init_inner_states(task, l2l.lstm_optimizer(meta_params),
                                jax.random.key(HELD_OUT_SEED + seed),
                                num_problems)
  run = jax.jit(jax.vmap(functools.partial(
      l2l.unroll, meta_params, task, optimizer_fn=l2l.lstm_optimizer,
      unroll_length=steps)))
  along, inner = run(inner)
  final = jax.vmap(task.full_loss)(inner.params, inner.problem)
  log10 = lambda x: jnp.log10(jnp.maximum(x, 1e-30))
  return float(jnp.mean(log10(final))), float(jnp.mean(log10(along)))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--family', default='quadratic')
  parser.add_argument('--meta-steps', type=int, default=100)
  parser.add_argument('--estimator', default='pes', choices=('bptt', 'es', 'pes'))
  parser.add_argument('--augment', action='store_true')
  parser.add_argument('--meta-lr', type=float, default=3e-3)
  parser.add_argument('--design', default='compact',
                      help='a key of l2l.DESIGNS (a control for compact)')
  parser.add_argument('--train-only', default='all',
                      choices=('all', 'readout', 'output'))
  parser.add_argument('--unroll-length', type=int, default=20)
  parser.add_argument('--episode-truncations', type=int, default=5)
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--seeds', type=int, default=5)
  parser.add_argument('--num-problems', type=int, default=8)
  args = parser.parse_args(argv)
  family = tasks.get_family(args.family)
  train_family = tasks.AugmentedFamily(family) if args.augment else family
  begin = time.perf_counter()
  fresh = l2l.init_meta_params(jax.random.key(0), design=args.design)
  trained, log = l2l.meta_train(
      train_family, key=0, meta_params=fresh, estimator=args.estimator,
      meta_steps=args.meta_steps, meta_lr=args.meta_lr,
      unroll_length=args.unroll_length,
      truncations_per_episode=args.episode_truncations,
      trainable=args.train_only)
  print(f'meta-trained {args.meta_steps} steps in '
        f'{time.perf_counter() - begin:.0f} s; skipped '
        f'{int(log["num_skipped"][-1]) if len(log["num_skipped"]) else 0}')
  for name, meta_params in (('fresh (nominal)', fresh), ('trained', trained)):
    scores = np.array([log_losses(
        meta_params, family.sample_task(np.random.default_rng(
            [HELD_OUT_SEED, seed])), seed, args.num_problems, args.steps)
                       for seed in range(args.seeds)])
    for column, what in enumerate(('final', 'along the run')):
      print(f'{name:<16} mean log10 loss, {what:<13} '
            f'{scores[:, column].mean():+.3f} ± {scores[:, column].std():.3f}'
            f' over {args.seeds} seeds: '
            + ' '.join(f'{s:+.3f}' for s in scores[:, column]))


if __name__ == '__main__':
  main()
