"""``python -m meta_train``: meta-train a learned optimizer, then evaluate it."""

import argparse
import os
import sys

import jax

from meta_train import config as config_lib
from meta_train import evaluate
from meta_train import train


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
      prog='python -m meta_train',
      description='Meta-train a learned optimizer (evolution strategies by '
      'default; --estimator bptt or pes for the others) on a task family or '
      'your own task, then compare it with tuned baselines.')
  parser.add_argument('--out', default='runs/main',
                      help='output directory (checkpoint, log, meta_params, '
                      'evaluation)')
  parser.add_argument('--resume', action='store_true',
                      help='continue from OUT/checkpoint.npz')
  parser.add_argument('--no-eval', dest='evaluate', action='store_false',
                      help='skip the evaluation after training')
  parser.add_argument('--no-progress', dest='progress', action='store_false')
  parser.add_argument('--eval-steps', type=int, default=None,
                      help='evaluation horizon (default: episode length)')
  parser.add_argument('--eval-seeds', type=int, default=5)
  parser.add_argument(
      '--compilation-cache', default=os.path.join(
          os.path.expanduser('~'), '.cache', 'l2l', 'xla'),
      help="XLA's persistent compilation cache ('' to disable); recompiling "
      'a task structure seen before then reads it from disk')
  config_lib.add_arguments(parser)
  args = parser.parse_args(argv)
  if args.compilation_cache:
    jax.config.update('jax_compilation_cache_dir', args.compilation_cache)
  config = config_lib.from_arguments(args)
  command = ' '.join(['python -m meta_train'] + list(
      sys.argv[1:] if argv is None else argv))
  path = train.train(config, args.out, resume=args.resume,
                     progress=args.progress, command=command)
  print(f'wrote {path}')
  if args.evaluate:
    evaluate.run([path], config.family,
                 args.eval_steps or config.episode_length, args.eval_seeds,
                 args.out)


if __name__ == '__main__':
  main()
