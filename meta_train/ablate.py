"""Ablations of a trained adaptive optimizer, written as meta-param files.

``python -m meta_train.ablate runs/adaptive/meta_params.npz --out runs/ablations``
writes one ``<variant>/meta_params.npz`` per variant, each the trained
optimizer with part of its LSTM read-out switched off:

- ``nominal_only``: both outputs zero, i.e. Adam at the meta-learned
  learning rate; shows what the LSTM adds over a learned Adam.
- ``no_step_factor``: the per-coordinate step-size factor off.
- ``no_direction``: the per-coordinate direction correction off.

Evaluate them with ``python -m meta_train.suite --candidates ...``.
"""

import argparse
import os

import jax.numpy as jnp

import l2l

# variant -> read-out columns switched off (0: step factor, 1: direction).
VARIANTS = {'nominal_only': (0, 1), 'no_step_factor': (0,),
            'no_direction': (1,)}


def ablate(meta_params, columns) -> dict:
  """Returns ``meta_params`` with the read-out ``columns`` set to zero."""
  if l2l.architecture(meta_params)['design'] != 'adaptive':
    raise ValueError('ablations apply to the adaptive design only')
  output = dict(meta_params['params']['output'])
  mask = jnp.ones(output['bias'].shape).at[jnp.asarray(columns)].set(0.0)
  output = {'kernel': output['kernel'] * mask[None], 'bias': output['bias'] * mask}
  return {**meta_params, 'params': {**meta_params['params'], 'output': output}}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog='python -m meta_train.ablate',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('meta_params', help='an adaptive meta_params.npz')
  parser.add_argument('--out', default='runs/ablations')
  args = parser.parse_args(argv)
  meta_params, manifest = l2l.load_meta_params(args.meta_params)
  for name, columns in VARIANTS.items():
    path = os.path.join(args.out, name, 'meta_params.npz')
    l2l.save_meta_params(path, ablate(meta_params, columns),
                         config=manifest['config'], ablation=name,
                         ablation_of=os.path.abspath(args.meta_params))
    print(f'wrote {path}')


if __name__ == '__main__':
  main()
