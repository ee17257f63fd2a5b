"""Ablations of a trained adaptive, hyper or free optimizer, as meta-param
files.

``python -m meta_train.ablate runs/hyper/meta_params.npz --out runs/ablations``
writes one ``<variant>/meta_params.npz`` per variant, each the trained
optimizer with a part switched off:

- ``nominal_only``: both LSTM outputs zero, i.e. the nominal rule with its
  meta-learned constants (Adam for the adaptive design, hypergradient NAdam
  for the hyper one, hypergradient schedule-free Adam for the free one);
  shows what the LSTM adds.
- ``no_step_factor``: the per-coordinate step-size factor off.
- ``no_direction``: the per-coordinate direction correction off.
- ``no_hypergradient`` (hyper and free): the per-tensor step offsets frozen
  at 0 (for the free design, the spike cut off too).
- ``no_average_growth`` (free): the average's growth rate at 0, so that the
  schedule-free average never discounts its older iterates.
- ``no_spike_cut`` (free): the spike cut's strength at 0, so that only the
  hypergradient moves the step offsets.
- ``no_second_moment_warmup`` (free): no warm-up of the second moment, which
  then decays at its long-run rate from the first step.
- ``nadam_only`` (hyper) and ``schedule_free_only`` (free): all of the
  above, i.e. NAdam or schedule-free Adam at the meta-learned learning rate.

Evaluate them with ``python -m meta_train.suite --candidates ...``.
"""

import argparse
import os

import jax.numpy as jnp

import l2l

# variant -> (read-out columns switched off (0: step factor, 1: direction),
# whether the per-tensor step offsets are frozen, whether the free design's
# average growth is switched off, whether its spike cut is switched off,
# whether its second moment's warm-up is switched off).
VARIANTS = {'nominal_only': ((0, 1), False, False, False, False),
            'no_step_factor': ((0,), False, False, False, False),
            'no_direction': ((1,), False, False, False, False),
            'no_hypergradient': ((), True, False, False, False),
            'no_average_growth': ((), False, True, False, False),
            'no_spike_cut': ((), False, False, True, False),
            'no_second_moment_warmup': ((), False, False, False, True),
            'nadam_only': ((0, 1), True, False, False, False),
            'schedule_free_only': ((0, 1), True, True, False, True)}
_ONLY = {'hyper': 'nadam_only', 'free': 'schedule_free_only'}
# log kappa that makes exp(log kappa) exactly 0 in float32.
_FROZEN_LOG_KAPPA = -1e4


def variants(design: str) -> list[str]:
  """The ablation variants that apply to ``design``."""
  if design not in (*_ONLY, 'adaptive'):
    raise ValueError(f'ablations apply to the adaptive, hyper and free '
                     f'designs, not {design!r}')
  def applies(name):
    _, freeze, fixed_average, no_spike, no_warmup = VARIANTS[name]
    if name in _ONLY.values():
      return name == _ONLY.get(design)
    return ((design != 'adaptive' or not freeze) and (
        design == 'free' or not (fixed_average or no_spike or no_warmup)))
  return [name for name in VARIANTS if applies(name)]


def ablate(meta_params, columns, freeze_scale: bool = False,
           fixed_average: bool = False, no_spike_cut: bool = False,
           no_warmup: bool = False) -> dict:
  """Returns ``meta_params`` with the read-out ``columns`` set to zero.

  Args:
    meta_params: adaptive, hyper or free meta-parameters.
    columns: read-out columns to zero (0: step factor, 1: direction).
    freeze_scale: also freeze the hyper or free design's per-tensor log
      step offsets at 0 (hypergradient rate exactly 0, and the free
      design's spike cut 0).
    fixed_average: also set the free design's average growth rate to 0.
    no_spike_cut: also set the free design's spike cut to 0.
    no_warmup: also set the free design's second-moment warm-up to 0 steps.
  """
  design = l2l.architecture(meta_params)['design']
  if (design == 'paper' or (freeze_scale and design not in _ONLY)
      or ((fixed_average or no_spike_cut or no_warmup) and design != 'free')):
    raise ValueError(f'this ablation does not apply to the {design} design')
  output = dict(meta_params['params']['output'])
  mask = jnp.ones(output['bias'].shape)
  if columns:
    mask = mask.at[jnp.asarray(columns)].set(0.0)
  output = {'kernel': output['kernel'] * mask[None], 'bias': output['bias'] * mask}
  ablated = {**meta_params,
             'params': {**meta_params['params'], 'output': output}}
  if freeze_scale:
    ablated['nominal'] = {**meta_params['nominal'],
                          'log_kappa': jnp.float32(_FROZEN_LOG_KAPPA)}
  if no_spike_cut or (freeze_scale and design == 'free'):
    ablated['nominal'] = {**ablated['nominal'], 'spike_cut': jnp.float32(0.0)}
  if fixed_average:
    ablated['nominal'] = {**ablated['nominal'],
                          'average_growth': jnp.float32(0.0)}
  if no_warmup:
    ablated['nominal'] = {**ablated['nominal'],
                          'second_moment_warmup': jnp.float32(0.0)}
  return ablated


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog='python -m meta_train.ablate',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('meta_params',
                      help='an adaptive or hyper meta_params.npz')
  parser.add_argument('--out', default='runs/ablations')
  args = parser.parse_args(argv)
  meta_params, manifest = l2l.load_meta_params(args.meta_params)
  for name in variants(l2l.architecture(meta_params)['design']):
    path = os.path.join(args.out, name, 'meta_params.npz')
    l2l.save_meta_params(path, ablate(meta_params, *VARIANTS[name]),
                         config=manifest['config'], ablation=name,
                         ablation_of=os.path.abspath(args.meta_params))
    print(f'wrote {path}')


if __name__ == '__main__':
  main()
