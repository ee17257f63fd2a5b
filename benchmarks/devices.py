"""Meta-training throughput against the number of devices, in one run.

  python benchmarks/devices.py [--family mnist1d_mlp] [--estimator es]
                               [--counts 1 2 4] [--repeats 5]

Times one jitted meta-step of ``python -m meta_train`` (its ``Trainer``) with
the problems split over 1, 2, 4 devices of one process (``l2l.task_mesh``)
and prints inner steps per second (problems x unroll length x unrolls per
estimate, over the median time of a meta-step) and the speedup over one
device. On a CPU the devices are forced host devices
(``--xla_force_host_platform_device_count``, set here when absent), which
share the machine's cores: the figure shows the cost of splitting, not
more compute.
"""

import argparse
import os
import platform
import statistics
import sys
import time


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog='python benchmarks/devices.py',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('--family', default='mnist1d_mlp')
  parser.add_argument('--estimator', default='es', choices=('bptt', 'es', 'pes'))
  parser.add_argument('--num-tasks', type=int, default=8)
  parser.add_argument('--unroll-length', type=int, default=20)
  parser.add_argument('--es-pairs', type=int, default=4)
  parser.add_argument('--counts', type=int, nargs='+', default=[1, 2, 4])
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args(argv)
  if 'xla_force_host_platform_device_count' not in os.environ.get(
      'XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_'
                               f'force_host_platform_device_count={max(args.counts)}')
  import jax  # pylint: disable=import-outside-toplevel
  import l2l  # pylint: disable=import-outside-toplevel
  from meta_train import config as config_lib  # pylint: disable=import-outside-toplevel
  from meta_train import train as train_lib  # pylint: disable=import-outside-toplevel

  config = config_lib.TrainConfig(
      family=args.family, estimator=args.estimator, num_tasks=args.num_tasks,
      unroll_length=args.unroll_length, episode_length=100 * args.unroll_length,
      es_pairs=args.es_pairs)
  unrolls = {'es': 2 * args.es_pairs + 1, 'pes': 2, 'bptt': 1}[args.estimator]
  inner_steps = args.num_tasks * args.unroll_length * unrolls
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind} '
        f'({platform.machine()}, {os.cpu_count()} cores), '
        f'{len(jax.devices())} devices; {args.family}, {args.estimator}, '
        f'{args.num_tasks} problems x {args.unroll_length} steps x {unrolls} '
        f'unrolls per meta-step; median of {args.repeats}')
  print('| devices | ms / meta-step | inner steps / s | speedup |')
  print('|---:|---:|---:|---:|')
  base = None
  for count in args.counts:
    trainer = train_lib.Trainer(config, l2l.task_mesh(count))
    state = trainer.initial_state()
    times = []
    for step in range(args.repeats + 2):  # 2 to compile and warm up
      start = time.perf_counter()
      state, metrics = trainer.step(state, step)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
    ms = 1e3 * statistics.median(times[2:])
    base = base or ms
    print(f'| {count} | {ms:.1f} | {inner_steps / ms * 1e3:,.0f} | '
          f'{base / ms:.2f}x |', flush=True)


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  main()
