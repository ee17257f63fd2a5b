"""``python -m meta_train``: meta-train a learned optimizer, then evaluate it."""

import argparse
import os
import sys

import jax

from meta_train import config as config_lib
from meta_train import evaluate
from meta_train import train


# Overrides the default of --compilation-cache (the test suite points it at
# its own temporary cache).
CACHE_ENV = 'L2L_COMPILATION_CACHE'


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
      prog='python -m meta_train',
      description='Meta-train a learned optimizer (evolution strategies by '
      'default; --estimator bptt or pes for the others) on a task family or '
      'your own task, then compare it with tuned baselines.')
  parser.add_argument('--out', default='runs/main',
                      help='output directory: checkpoints/, metrics.jsonl (one JSON '
                      'line per meta-step), meta_params.npz, the validation '
                      'and evaluation plots (default: runs/main)')
  parser.add_argument('--resume', action='store_true',
                      help='continue from the latest checkpoint in OUT (on any '
                      'number of devices or processes)')
  parser.add_argument('--no-eval', dest='evaluate', action='store_false',
                      help='skip the evaluation after training')
  parser.add_argument('--no-progress', dest='progress', action='store_false',
                      help='no progress bar (for logs and batch jobs)')
  parser.add_argument('--eval-steps', type=int, default=None,
                      help='evaluation horizon (default: episode length)')
  parser.add_argument('--eval-seeds', type=int, default=5,
                      help='held-out problems of the evaluation (default: 5)')
  parser.add_argument(
      '--compilation-cache', default=os.environ.get(
          CACHE_ENV, os.path.join(os.path.expanduser('~'), '.cache', 'l2l',
                                  'xla')),
      help="XLA's persistent compilation cache ('' to disable; default "
      f'${CACHE_ENV}, else ~/.cache/l2l/xla); recompiling a task structure '
      'seen before then reads it from disk')
  add_device_arguments(parser)
  config_lib.add_arguments(parser)
  args = parser.parse_args(argv)
  if args.compilation_cache:
    jax.config.update('jax_compilation_cache_dir', args.compilation_cache)
  initialize_distributed(args)
  try:  # input errors as the tool's messages, not tracebacks
    config = config_lib.from_arguments(args)
    train.Trainer.check_devices(config, args.devices)
    if config.data_subsets:  # checked when the family is built
      train.training_family(config)
  except (ValueError, TypeError) as e:
    parser.error(str(e))
  command = ' '.join(['python -m meta_train'] + list(
      sys.argv[1:] if argv is None else argv))
  path = train.train(config, args.out, resume=args.resume,
                     progress=args.progress, command=command,
                     devices=args.devices)
  if jax.process_index() != 0:
    return  # process 0 writes and evaluates
  print(f'wrote {path}')
  if args.evaluate:
    initial = os.path.join(args.out, train.INITIAL)
    evaluate.run([path] + ([initial] if os.path.exists(initial) else []),
                 config.family,
                 args.eval_steps or config.episode_length, args.eval_seeds,
                 args.out)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
  """Flags that place a run on devices and processes (not part of its
  config: a run resumes on any number of either)."""
  group = parser.add_argument_group(
      'devices and hosts',
      'Each meta-step splits its problems over the devices; with several '
      'processes (jax.distributed), each computes its own share, and process '
      '0 writes the log and meta-parameters.')
  group.add_argument('--devices', type=int, default=None, metavar='N',
                     help='devices to split the problems over (default: all '
                     'that JAX sees, on every process)')
  group.add_argument('--distributed', action='store_true',
                     help='call jax.distributed.initialize() with what it '
                     'reads from the cluster (SLURM, TPU pod, Open MPI, ...)')
  group.add_argument('--coordinator-address', metavar='HOST:PORT',
                     help='process 0\'s address, for a launch by hand '
                     '(with --num-processes and --process-id)')
  group.add_argument('--num-processes', type=int,
                     help='number of processes (with --coordinator-address)')
  group.add_argument('--process-id', type=int,
                     help='this process\'s index, 0 .. N-1 (with '
                     '--coordinator-address)')


def initialize_distributed(args: argparse.Namespace) -> None:
  """Joins JAX's multi-controller runtime if the flags ask for it."""
  manual = (args.coordinator_address, args.num_processes, args.process_id)
  if not args.distributed and all(x is None for x in manual):
    return
  if not args.distributed and any(x is None for x in manual):
    raise SystemExit('--coordinator-address, --num-processes and '
                     '--process-id go together (or use --distributed)')
  # CPU processes reduce across each other through gloo; GPUs and TPUs
  # ignore this setting.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(
      coordinator_address=args.coordinator_address,
      num_processes=args.num_processes, process_id=args.process_id)


if __name__ == '__main__':
  main()
