"""What the online tuner's hypergradient can see on the tuning problems.

For each problem of ``tasks.regularisation.PROBLEMS`` (one data seed, by
default 3, the seed the online tuner's settings were chosen on; never one of
the reported seeds 0-2), at the declared initial hyperparameters:

- **signal per update**: at steps 0 and 200 of a run, the one-step-lookahead
  hypergradient in unit coordinates (``l2l.hparams.hypergradient``, a
  training minibatch and a 64-example validation minibatch, as the tuner
  takes it) over 128 draws of the minibatches and noise: its mean, standard
  deviation and their ratio (the signal-to-noise ratio of one update), and
  that ratio times ``sqrt(40)`` (a 400-step run tuned every 10 steps
  averages at most 40 of them);
- **what the end of the run wants**: the central difference of the final
  validation loss (whole split, after 400 steps at fixed hyperparameters)
  with respect to each unit coordinate, ``(L(u + d) - L(u - d)) / 2d`` with
  ``d = 0.1``, over 8 training seeds with common random numbers between the
  two sides: its mean and standard error.

A descent step moves a hyperparameter against the sign of its gradient, so
the tuner heads where the run's end wants it only where the one-step mean
and the end-of-run difference have the same sign::

  python benchmarks/hypergradient_signal.py [--seed 3] [--whole-validation]

``--whole-validation`` takes the hypergradient on the whole validation
split instead of a minibatch (to see where its noise comes from).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from l2l import hparams
from meta_train import tune_methods
from tasks import regularisation

SAMPLES = 128
STEPS_AT = (0, 200)
RUNS = 8
DELTA = 0.1
UPDATES = 40


def one_step_hypergradients(problem, params, unit, steps: int, key,
                            whole_validation: bool = False):
  """``{name: [SAMPLES]}`` one-step hypergradients after ``steps`` fixed
  steps from ``params``."""
  if steps:
    params = tune_methods._fixed_steps(  # pylint: disable=protected-access
        problem.replace(num_steps=steps), params, unit, key)
  inner = problem.make_optimizer(problem.space.from_unit(unit)).init(params)
  fns = dict(space=problem.space, make_optimizer=problem.make_optimizer,
             train_loss=problem.train_loss,
             val_loss=(problem.val_loss if whole_validation
                       else problem.val_batch_loss))
  fn = lambda k: hparams.hypergradient(unit, params, inner, k, **fns)[0]
  keys = jax.random.split(jax.random.fold_in(key, 7), SAMPLES)
  return jax.jit(jax.vmap(fn))(keys)


def end_of_run_differences(problem, unit, init_key, seed: int):
  """``{name: [RUNS]}`` central differences of the final validation loss."""
  keys = jax.random.split(jax.random.key(10_000 + seed), RUNS)
  run = jax.jit(jax.vmap(
      lambda u, k: tune_methods.fixed_run(problem, u, init_key, k)[0],
      in_axes=(None, 0)))
  out = {}
  for name in problem.space.names:
    shifted = lambda s: {**unit, name: jnp.clip(unit[name] + s, 0.0, 1.0)}
    plus, minus = run(shifted(DELTA), keys), run(shifted(-DELTA), keys)
    width = float(shifted(DELTA)[name] - shifted(-DELTA)[name])
    out[name] = (plus - minus) / width
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--seed', type=int, default=3)
  parser.add_argument('--whole-validation', action='store_true')
  args = parser.parse_args(argv)
  print(f'| problem | hyperparameter | one-step mean +- sd, step {STEPS_AT[0]}'
        f' | SNR per update (x sqrt({UPDATES})) | step {STEPS_AT[1]} | SNR '
        f'(x sqrt({UPDATES})) | end-of-run difference +- se | signs agree |')
  print('|---|---|---|---|---|---|---|---|')
  for name in regularisation.PROBLEMS:
    problem = regularisation.make_problem(name, seed=args.seed)
    init_key, key = tune_methods._keys(args.seed)  # pylint: disable=protected-access
    unit = problem.space.init()
    params = problem.init_params(init_key)
    grads = [one_step_hypergradients(problem, params, unit, s, key,
                                     args.whole_validation)
             for s in STEPS_AT]
    ends = end_of_run_differences(problem, unit, init_key, args.seed)
    for hp in problem.space.names:
      cells = []
      means = []
      for g in grads:
        g = np.asarray(g[hp])
        snr = np.mean(g) / np.std(g)
        means.append(np.mean(g))
        cells += [f'{np.mean(g):+.3g} +- {np.std(g):.3g}',
                  f'{snr:+.3f} ({snr * np.sqrt(UPDATES):+.2f})']
      end = np.asarray(ends[hp])
      se = np.std(end, ddof=1) / np.sqrt(len(end))
      agree = '/'.join('yes' if np.sign(m) == np.sign(np.mean(end)) else 'no'
                       for m in means)
      print(f'| {name} | {hp} | ' + ' | '.join(cells)
            + f' | {np.mean(end):+.3g} +- {se:.2g} | {agree} |', flush=True)


if __name__ == '__main__':
  main()
