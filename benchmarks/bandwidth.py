"""Update cost against the memory-bandwidth floor, measured in one run.

  python benchmarks/bandwidth.py [--sizes 1e7 1e8] [--repeats 20]

An optimizer update reads the gradient and its state and writes the update
and the new state: at least ``8 + 2 S`` bytes per float32 parameter for a
state of ``S`` bytes per parameter. Over the device's memory bandwidth that
is the least time an update can take. The bandwidth is measured here, in the
same run, as that of a jitted ``y = a * x + b`` over 4e8 bytes (read once,
written once). Prints, per size, the median update time of the default
learned optimizer and of ``optax.adam``, their floors, and the ratios.
Meant for an accelerator (``benchmarks/device_checks.sh``); runs anywhere.
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # pylint: disable=wrong-import-position
import l2l  # pylint: disable=wrong-import-position


def bandwidth_gb_s(num_floats: int = 10**8, repeats: int = 20) -> float:
  """Measured read + write bandwidth of a streaming kernel, GB/s."""
  x = jnp.ones((num_floats,), jnp.float32)
  stream = jax.jit(lambda x: 1.0001 * x + 1e-7, donate_argnums=0)
  for _ in range(2):
    x = jax.block_until_ready(stream(x))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    x = jax.block_until_ready(stream(x))
    times.append(time.perf_counter() - start)
  return 8 * num_floats / statistics.median(times) / 1e9


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog='python benchmarks/bandwidth.py',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', type=float, nargs='+', default=[1e7, 1e8])
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--bandwidth-floats', type=float, default=1e8)
  args = parser.parse_args(argv)
  gb_s = bandwidth_gb_s(int(args.bandwidth_floats), args.repeats)
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind}: measured '
        f'bandwidth {gb_s:,.0f} GB/s (read + write); median of '
        f'{args.repeats}')
  print('| params | optimizer | state B/p | ms / update | floor ms | '
        'x floor | x adam |')
  print('|---:|---|---:|---:|---:|---:|---:|')
  opts = (('l2l default', l2l.lstm_optimizer, l2l.load_meta_params('default')[0]),
          ('optax.adam', optax.adam, jnp.float32(1e-3)))
  for size in map(int, args.sizes):
    params = jnp.zeros((size,), jnp.float32)
    steps = [bench.update_step(make, hyper, params) for _, make, hyper in opts]
    times = bench.median_ms(steps, [None] * len(opts), args.repeats)
    for (name, make, hyper), ms in zip(opts, times):
      state_bytes = bench.bytes_per_param(make, hyper, params)
      floor_ms = size * (8 + 2 * state_bytes) / (gb_s * 1e9) * 1e3
      print(f'| {size:.0e} | {name} | {state_bytes:.0f} | {ms:.3f} | '
            f'{floor_ms:.3f} | {ms / floor_ms:.2f} | {ms / times[1]:.1f} |',
            flush=True)


if __name__ == '__main__':
  main()
