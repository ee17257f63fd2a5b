"""Compares meta-gradient estimators against central finite differences.

For the nominal constants of a fresh ``free`` (default) or ``hyper``
optimizer (log learning rate, hypergradient offset, log hypergradient rate,
and the free design's interpolation constant), prints the derivative
of the meta-loss (mean over problems of the summed log losses of one
unroll) by central finite differences, by first-order and by second-order
backpropagation through the unroll, and by antithetic evolution strategies:

    python benchmarks/meta_gradient_check.py
    python benchmarks/meta_gradient_check.py --design hyper
    python benchmarks/meta_gradient_check.py --families mnist1d_mlp --pairs 16

Not a test: on a chaotic meta-loss the estimators legitimately disagree.
"""

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import l2l
from l2l import _meta
import tasks



def _with(meta_params, name, value):
  return {**meta_params, 'nominal': {**meta_params['nominal'], name: value}}


def check(family: str, *, design: str, num_tasks: int, unroll_length: int,
          pairs: int, sigma: float, delta: float, seed: int) -> None:
  task = tasks.get_family(family).sample_task(np.random.default_rng([seed, 1]))
  meta_params = l2l.init_meta_params(jax.random.key(seed), design=design)
  inner = l2l.init_inner_states(task, l2l.lstm_optimizer(meta_params),
                                jax.random.key(seed + 1), num_tasks)

  def loss(meta_params, second_order=False):
    # The meta-loss that l2l.meta_step and l2l.es_meta_step estimate.
    return _meta._meta_loss(  # pylint: disable=protected-access
        meta_params, task, inner, jnp.ones(unroll_length),
        optimizer_fn=l2l.lstm_optimizer, unroll_length=unroll_length,
        log_losses=True, second_order=second_order)[0]

  sgd = optax.sgd(1.0)
  trainable = jax.tree.map(lambda _: False, meta_params)
  trainable['nominal'] = jax.tree.map(lambda _: True, meta_params['nominal'])
  state = l2l.MetaTrainState(meta_params, sgd.init(meta_params), inner,
                             jnp.zeros([], jnp.int32))
  es_state, _ = jax.jit(functools.partial(
      l2l.es_meta_step, optimizer_fn=l2l.lstm_optimizer, meta_optimizer=sgd,
      unroll_length=unroll_length, num_pairs=pairs, sigma=sigma,
      log_losses=True, trainable=trainable))(state, task,
                                              jax.random.key(seed + 2))
  print(f'\n{design} design, {task.name}: {num_tasks} problems, '
        f'{unroll_length}-step unroll, '
        f'sum of log losses; ES: {pairs} pairs, sigma {sigma} on the '
        'nominal constants only')
  print(f'  {"constant":<13} {"finite diff":>12} {"first-order":>12} '
        f'{"second-order":>13} {"ES":>10}')
  for name in meta_params['nominal']:
    x = meta_params['nominal'][name]
    at = lambda v, second=False: loss(_with(meta_params, name, v), second)
    fd = (at(x + delta) - at(x - delta)) / (2 * delta)
    first = jax.grad(at)(x)
    second = jax.grad(lambda v: at(v, True))(x)
    es = meta_params['nominal'][name] - es_state.meta_params['nominal'][name]
    print(f'  {name:<13} {float(fd):>12.4g} {float(first):>12.4g} '
          f'{float(second):>13.4g} {float(es):>10.4g}')


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--families', nargs='+',
                      default=['quadratic', 'mnist1d_mlp'])
  parser.add_argument('--design', choices=('free', 'hyper'), default='free')
  parser.add_argument('--num-tasks', type=int, default=8)
  parser.add_argument('--unroll-length', type=int, default=100)
  parser.add_argument('--pairs', type=int, default=64)
  parser.add_argument('--sigma', type=float, default=0.01)
  parser.add_argument('--delta', type=float, default=0.05)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  for family in args.families:
    check(family, design=args.design, num_tasks=args.num_tasks,
          unroll_length=args.unroll_length,
          pairs=args.pairs, sigma=args.sigma, delta=args.delta,
          seed=args.seed)


if __name__ == '__main__':
  main()
