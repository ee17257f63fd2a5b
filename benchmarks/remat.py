"""Memory of a BPTT meta-step against unroll length, with and without
rematerialisation (``remat_chunk``), from XLA's compiled memory analysis.

  python benchmarks/remat.py [--lengths 100 1000 5000] [--family mnist1d_mlp]

Compiles (does not run) ``l2l.meta_step`` of the default design for each
unroll length, plain and with the unroll rematerialised in chunks of about
``sqrt(K)`` steps, and prints the bytes of temporaries and their ratio.
"""

import argparse
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

import l2l
import tasks


def chunk_for(length: int) -> int:
  """The divisor of ``length`` closest to its square root."""
  divisors = [d for d in range(1, length + 1) if length % d == 0]
  return min(divisors, key=lambda d: abs(d - math.sqrt(length)))


def temp_bytes(task, state, length: int, remat_chunk) -> int:
  meta_optimizer = optax.adam(1e-3)
  step = jax.jit(functools.partial(
      l2l.meta_step, optimizer_fn=l2l.lstm_optimizer,
      meta_optimizer=meta_optimizer, unroll_length=length, log_losses=True,
      remat_chunk=remat_chunk))  # the task is a pytree: traced
  compiled = step.lower(state, task, jax.random.key(0)).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--lengths', type=int, nargs='+',
                      default=[100, 1000, 5000])
  parser.add_argument('--family', default='mnist1d_mlp')
  parser.add_argument('--num-tasks', type=int, default=4)
  args = parser.parse_args(argv)
  task = tasks.get_family(args.family).sample_task(np.random.default_rng(0))
  meta_params = l2l.init_meta_params(jax.random.key(0), design='free')
  inner = l2l.init_inner_states(task, l2l.lstm_optimizer(meta_params),
                                jax.random.key(1), args.num_tasks)
  state = l2l.MetaTrainState(meta_params, optax.adam(1e-3).init(meta_params),
                             inner, jnp.zeros([], jnp.int32))
  num_params = sum(x.size for x in jax.tree.leaves(task.init_params(
      jax.random.key(0))))
  print(f'jax {jax.__version__}, backend {jax.default_backend()}; '
        f'{args.family} ({task.name}, {num_params:,} params), '
        f'{args.num_tasks} problems; temporaries of one compiled meta-step')
  print(f'{"unroll":>7} {"plain MiB":>10} {"chunk":>6} {"remat MiB":>10} '
        f'{"remat/plain":>12}')
  for length in args.lengths:
    chunk = chunk_for(length)
    plain = temp_bytes(task, state, length, None)
    remat = temp_bytes(task, state, length, chunk)
    print(f'{length:>7} {plain / 2**20:>10.1f} {chunk:>6} '
          f'{remat / 2**20:>10.1f} {remat / plain:>12.3f}')


if __name__ == '__main__':
  main()
