"""The README's figures for the main command, reproduced and checked.

  python benchmarks/main_figure.py [--check] [--out DIR]

Runs ``python -m meta_train`` (its defaults: ES on 10-d quadratics, then
the evaluation against tuned baselines) into ``--out`` (a temporary
directory by default), evaluates the shipped default on the same problems,
and prints the figures the README quotes with the versions and machine.
With ``--check`` it exits 1 unless the learned optimizer's mean final loss
is within ``TOLERANCE`` of ``EXPECTED`` (the README's figure; a test checks
that the README quotes these numbers). Losses are deterministic on one
machine and jax version; other versions may round differently, and the
chaotic inner runs amplify that, hence the tolerance.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import jax
import optax

# The README's figures (mean final loss on the 5 evaluation quadratics),
# measured with the versions that the script prints.
EXPECTED = {'learned': 0.0249, 'adam': 0.0886, 'fresh_default': 0.0386}
TOLERANCE = 0.15  # relative


def _figures(out_dir: str) -> dict:
  from meta_train import __main__ as cli  # pylint: disable=g-import-not-at-top
  from meta_train import evaluate  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  # No persistent cache: the time is a fresh machine's, compilation included.
  cli.main(['--out', out_dir, '--no-progress', '--compilation-cache', ''])
  seconds = time.perf_counter() - start
  with open(os.path.join(out_dir, 'eval.json')) as f:
    run = json.load(f)['optimizers']
  learned = run[evaluate.candidate_name(os.path.join(out_dir,
                                                     'meta_params.npz'))]
  fresh = evaluate.run([None], 'quadratic', 100, 5, out_dir, stem='fresh')
  pick = lambda r: {'mean_final_loss': r['mean_final_loss'],
                    **({'lr': r['lr']} if 'lr' in r else {})}
  return {'seconds': round(seconds, 1), 'learned': pick(learned),
          'fresh_default': pick(fresh['optimizers']['default']),
          **{k: pick(run[k]) for k in ('adam', 'nesterov', 'rmsprop', 'sgd')}}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--check', action='store_true',
                      help=f'exit 1 unless within {TOLERANCE * 100:.0f}%% of the '
                      'README')
  parser.add_argument('--out', help='run directory (default: temporary)')
  args = parser.parse_args(argv)
  import l2l  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    figures = _figures(args.out or tmp)
  figures['versions'] = {'l2l': l2l.__version__, 'jax': jax.__version__,
                         'optax': optax.__version__,
                         'python': platform.python_version()}
  figures['machine'] = (f'{platform.machine()}, {os.cpu_count()} cpus, '
                        f'{jax.default_backend()}')
  print(json.dumps(figures, indent=1))
  if not args.check:
    return 0
  failed = [
      f'{k}: {figures[k]["mean_final_loss"]:.4g}, README {want:.4g}'
      for k, want in EXPECTED.items()
      if abs(figures[k]['mean_final_loss'] / want - 1) > TOLERANCE]
  print('main command figures: ' + ('; '.join(failed) if failed else
                                    f'within {TOLERANCE:.0%} of the README'))
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
