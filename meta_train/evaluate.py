"""Evaluation: a learned optimizer against learning-rate-tuned baselines.

Each baseline (Adam, schedule-free AdamW judged at its evaluation params
``x``, RMSprop, SGD, SGD with Nesterov momentum) is run at
every learning rate of a half-decade grid, all rates at once under ``vmap``;
the rate with the lowest mean final loss over seeds is the tuned one. The
figure of merit is the final full-split training loss (the exact loss for
analytic problems). Evaluation problems come from seeds that meta-training
never draws (a three-word seed sequence; training uses two words).
"""

import json
import math
import os
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import l2l
from meta_train import train as train_lib

LR_GRID = tuple(m * 10.0**e for e in range(-4, 1) for m in (1, 3))


class AtEvalParams(NamedTuple):
  """An optax schedule-free optimizer (``optax.contrib.schedule_free``)
  judged at its evaluation params ``x``
  (``optax.contrib.schedule_free_eval_params``), which is what a user of
  it evaluates and exports, instead of at the params ``y`` it trains."""
  optimizer: optax.GradientTransformation


def schedule_free_adamw(lr: float) -> AtEvalParams:
  """Schedule-free AdamW (Defazio et al. 2024) at learning rate ``lr``, no
  weight decay and no warm-up, judged at ``x``."""
  return AtEvalParams(optax.contrib.schedule_free_adamw(lr, weight_decay=0.0))


BASELINES: Mapping[str, Callable[[float], Any]] = {
    'adam': optax.adam,
    'schedule_free_adamw': schedule_free_adamw,
    'rmsprop': optax.rmsprop,
    'sgd': optax.sgd,
    'nesterov': lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
}
_EVAL_WORD = 0xE7A1
DEFAULT_CANDIDATE = 'default'


def eval_problem(family, seed: int):
  """The task and PRNG key of evaluation problem ``seed``."""
  task = family.sample_task(np.random.default_rng([seed, 0, _EVAL_WORD]))
  return task, jax.random.fold_in(jax.random.key(_EVAL_WORD), seed)


def _record_every(num_steps: int, max_points: int = 200) -> int:
  every = max(1, num_steps // max_points)
  while num_steps % every:
    every -= 1
  return every


class AtAverage(NamedTuple):
  """A ``free`` or ``compact`` design optimizer judged at its schedule-free
  average ``x``.

  Its losses are taken at ``l2l.averaged_params(params, state,
  meta_params)`` (what schedule-free methods export) instead of at the
  params ``y`` that training follows. Spelled ``NAME@x`` on command lines.
  """
  optimizer: optax.GradientTransformation
  meta_params: Any


AVERAGE_SUFFIX = '@x'


def _judged(candidate):
  """``(optimizer, judge)``: ``judge(params, state)`` gives the params whose
  loss is recorded (the params themselves, or the average of AtAverage)."""
  if isinstance(candidate, AtEvalParams):
    return candidate.optimizer, lambda params, state: (
        optax.contrib.schedule_free_eval_params(state, params))
  if isinstance(candidate, AtAverage):
    return candidate.optimizer, lambda params, state: l2l.averaged_params(
        params, state, candidate.meta_params)
  return candidate, lambda params, state: params


def _start(task, optimizer: optax.GradientTransformation, key: jax.Array):
  """The problem, the initial ``(params, opt_state)`` and the scan step of
  one training run (minibatch ``i`` drawn from ``fold_in(key, i)``)."""
  problem_key, params_key, run_key = jax.random.split(key, 3)
  problem = task.sample_problem(problem_key)
  params = task.init_params(params_key)
  grad_fn = jax.grad(task.loss)

  def step(carry, index):
    params, opt_state = carry
    grads = grad_fn(params, problem, jax.random.fold_in(run_key, index))
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  return problem, (params, optimizer.init(params)), step


def train(task, optimizer: optax.GradientTransformation, key: jax.Array,
          num_steps: int):
  """Trains one problem as :func:`trajectory` does; returns ``(problem,
  params, opt_state)`` after ``num_steps`` steps."""
  problem, carry, step = _start(task, optimizer, key)
  (params, opt_state), _ = jax.lax.scan(step, carry, jnp.arange(num_steps))
  return problem, params, opt_state


def trajectory(task, optimizer, key: jax.Array, num_steps: int) -> jax.Array:
  """Trains one problem; returns full losses at steps ``0, e, 2e, ..., T``.

  The recording interval ``e`` divides ``num_steps`` (at most ~200 points).
  ``optimizer`` is an optax transform or an :class:`AtAverage`.
  """
  optimizer, judge = _judged(optimizer)
  every = _record_every(num_steps)
  problem, carry, step = _start(task, optimizer, key)
  loss = lambda carry: task.full_loss(judge(*carry), problem)

  def record(carry, chunk):
    carry, _ = jax.lax.scan(step, carry, chunk * every + jnp.arange(every))
    return carry, loss(carry)

  _, losses = jax.lax.scan(record, carry, jnp.arange(num_steps // every))
  return jnp.concatenate([loss(carry)[None], losses])


def _grid_runner(make, num_steps):
  """``(lrs, task, key) -> losses [lr, points]``; the task and key are
  arguments, not constants, so that every problem of a structure runs one
  compiled program."""
  return jax.jit(jax.vmap(
      lambda lr, task, key: trajectory(task, make(lr), key, num_steps),
      in_axes=(0, None, None)))


def _summary(curves: np.ndarray) -> dict:
  """Per-seed curves [seeds, points] -> final losses, mean curve, spread."""
  final = curves[:, -1]
  diverged = ~np.isfinite(final) | (final > curves[:, 0])
  return {
      'final_losses': final.tolist(),
      'mean_final_loss': float(np.mean(final)),
      'num_diverged': int(np.sum(diverged)),
      'curve_mean': np.mean(curves, 0).tolist(),
      'curve_min': np.min(curves, 0).tolist(),
      'curve_max': np.max(curves, 0).tolist(),
  }


def _steps_to_reach(curve: np.ndarray, target: float, every: int) -> float:
  reached = np.nonzero(curve <= target)[0]
  return float(reached[0] * every) if reached.size else math.inf


def evaluate(family, candidates: Mapping[str, optax.GradientTransformation],
             *, num_steps: int, seeds: Sequence[int],
             baselines=BASELINES, lr_grid: Sequence[float] = LR_GRID) -> dict:
  """Runs candidates and tuned baselines on the evaluation problems.

  Args:
    family: a ``tasks.TaskFamily``; problem ``s`` is :func:`eval_problem`.
    candidates: name -> optimizer to judge (learned ones, usually).
    num_steps: training horizon.
    seeds: evaluation problem seeds (at least 3 recommended).
    baselines: name -> ``lr -> optax transform``.
    lr_grid: learning rates tried for every baseline.

  Returns:
    A JSON-serialisable dict: for each optimizer its per-seed final losses,
    mean, divergence count and mean/min/max loss curves; for baselines also
    the tuned ``lr`` and ``grid_final_losses`` ``[lr][seed]``; and for each
    candidate ``adam_steps_ratio``, the steps tuned Adam needs to reach the
    candidate's mean final loss divided by ``num_steps`` (``inf`` if never).
  """
  if len(seeds) < 1 or num_steps < 1:
    raise ValueError('evaluate needs at least one seed and one step')
  every = _record_every(num_steps)
  results = {'family': family.name, 'num_steps': num_steps,
             'seeds': list(seeds), 'record_every': every,
             'lr_grid': list(lr_grid), 'optimizers': {}}
  problems = [eval_problem(family, s) for s in seeds]
  for name, optimizer in candidates.items():
    run = jax.jit(lambda task, key: trajectory(task, optimizer, key, num_steps))
    curves = np.stack([np.asarray(run(t, k)) for t, k in problems])
    results['optimizers'][name] = {'kind': 'candidate', **_summary(curves)}
  lrs = jnp.asarray(lr_grid, jnp.float32)
  for name, make in baselines.items():
    run = _grid_runner(make, num_steps)
    grid = np.stack([np.asarray(run(lrs, t, k)) for t, k in problems],
                    axis=1)  # [lr, seed, points]
    finals = grid[:, :, -1]
    score = np.where(np.isfinite(finals), finals, np.inf).mean(1)
    best = int(np.argmin(score))
    results['optimizers'][name] = {
        'kind': 'baseline', 'lr': float(lr_grid[best]),
        'grid_final_losses': finals.tolist(), **_summary(grid[best])}
  if 'adam' in results['optimizers']:
    adam_curve = np.asarray(results['optimizers']['adam']['curve_mean'])
    for name in candidates:
      entry = results['optimizers'][name]
      entry['adam_steps_ratio'] = _steps_to_reach(
          adam_curve, entry['mean_final_loss'], every) / num_steps
  return results


def write_report(results: dict, out_dir: str, stem: str = 'eval') -> tuple[str, str]:
  """Writes ``<stem>.json`` and a ``<stem>.png`` of loss curves."""
  from meta_train import plots  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  json_path = os.path.join(out_dir, stem + '.json')
  tmp = json_path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(results, f, indent=1, allow_nan=True)
  os.replace(tmp, json_path)
  png_path = os.path.join(out_dir, stem + '.png')
  plots.loss_curves(results, png_path)
  return json_path, png_path


def table(results: dict) -> str:
  """A Markdown table of mean final losses (and tuned learning rates)."""
  lines = ['| optimizer | lr | mean final loss | diverged |', '|---|---|---|---|']
  for name, r in results['optimizers'].items():
    lr = f'{r["lr"]:g}' if 'lr' in r else 'learned'
    lines.append(f'| {name} | {lr} | {r["mean_final_loss"]:.4g} | '
                 f'{r["num_diverged"]}/{len(r["final_losses"])} |')
  return '\n'.join(lines)


def add_arguments(parser) -> None:
  parser.add_argument('--family', default='quadratic',
                      help='task family of the evaluation problems')
  parser.add_argument('--eval-steps', type=int, default=100,
                      help='training horizon of each evaluation run')
  parser.add_argument('--eval-seeds', type=int, default=5,
                      help='number of evaluation problems')


def _is_default(arg: str | None) -> bool:
  return arg is None or arg in (DEFAULT_CANDIDATE, 'None')


def candidate_name(arg: str | None) -> str:
  """'default' for the shipped optimizer, else a name from the file's path.

  ``runs/foo/meta_params.npz`` is called ``foo`` (its directory), any other
  file ``runs/foo_50.npz`` ``foo_50`` (its stem); a string that is not a
  file (a named configuration) is its own name. ``ARG@x`` (judged at the
  average, :class:`AtAverage`) is ``ARG``'s name followed by ``@x``.
  """
  if arg is not None and arg.endswith(AVERAGE_SUFFIX):
    return candidate_name(arg[:-len(AVERAGE_SUFFIX)]) + AVERAGE_SUFFIX
  if _is_default(arg):
    return DEFAULT_CANDIDATE
  if arg.endswith('.npz') or os.path.isfile(arg):
    path = os.path.abspath(arg)
    parent = os.path.basename(os.path.dirname(path))
    base = os.path.basename(path)
    return (parent if base == train_lib.META_PARAMS and parent
            else os.path.splitext(base)[0])
  return arg


def candidate_names(args: Sequence[str | None]) -> dict[str, str]:
  """Returns ``{name: argument}`` for the ``--candidates`` arguments.

  Repeats are dropped and every spelling of the default becomes
  ``'default'``; a name that clashes with an earlier one is replaced by its
  argument (as in ``meta_train.evaluate``).
  """
  names = {}
  for arg in dict.fromkeys(DEFAULT_CANDIDATE if _is_default(arg) else arg
                           for arg in args):
    name = candidate_name(arg)
    names[str(arg) if name in names else name] = arg
  return names


def load_candidate(arg: str | None):
  """One ``--candidates`` argument as :func:`load_candidates` builds it."""
  if arg is None or not arg.endswith(AVERAGE_SUFFIX):
    return l2l.lstm_optimizer(None if _is_default(arg) else arg)
  base = arg[:-len(AVERAGE_SUFFIX)]
  base = None if _is_default(base) else base
  optimizer, probe = l2l.lstm_optimizer(base), jnp.zeros(1)
  try:
    l2l.averaged_params(probe, optimizer.init(probe), base)
  except ValueError as e:
    raise ValueError(f'{arg}: cannot be judged at its average: {e}') from e
  return AtAverage(optimizer, base)


def load_candidates(args: Sequence[str | None]) -> dict[str, Any]:
  """Builds ``{name: optimizer}`` with :func:`l2l.lstm_optimizer`.

  Args:
    args: Paths of meta-params files, named configurations, or ``None`` /
      ``'default'`` for the shipped default; with ``@x`` appended, a free
      or compact design judged at its schedule-free average
      (:class:`AtAverage`).

  Raises:
    ValueError: ``@x`` on an optimizer that is not of the free or compact
      design.
  """
  return {name: load_candidate(arg)
          for name, arg in candidate_names(args).items()}


def describe(arg: str | None) -> str:
  """A legend label that says which learned optimizer ``arg`` is: its
  design and, for a meta-trained file, its meta-steps and task family."""
  suffix = ''
  if arg is not None and arg.endswith(AVERAGE_SUFFIX):
    arg, suffix = arg[:-len(AVERAGE_SUFFIX)], ' at its average x'
  name = candidate_name(arg)
  _, manifest = l2l.load_meta_params(None if _is_default(arg) else arg)
  config = manifest.get('config', {})
  steps = manifest.get('meta_steps')
  trained = (f', {steps} meta-steps on {manifest.get("task_family")}'
             if steps else ', not meta-trained')
  return (f'l2l {name} ({config.get("design", "paper")} design{trained})'
          f'{suffix}')


def run(meta_params_paths: Sequence[str | None], family_name: str,
        num_steps: int, num_seeds: int, out_dir: str,
        stem: str = 'eval') -> dict:
  """Evaluates saved learned optimizers; writes JSON and PNG; prints a table."""
  import tasks  # pylint: disable=g-import-not-at-top
  candidates = load_candidates(meta_params_paths)
  family = tasks.get_family(family_name)
  if 'split' in getattr(family, '__dataclass_fields__', {}):
    family = tasks.get_family(family_name, split='test')
  results = evaluate(family, candidates, num_steps=num_steps,
                     seeds=range(num_seeds))
  for name, arg in candidate_names(meta_params_paths).items():
    results['optimizers'][name]['description'] = describe(arg)
  json_path, png_path = write_report(results, out_dir, stem)
  print(table(results))
  print(f'wrote {json_path} and {png_path}')
  return results


def main(argv=None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog='python -m meta_train.evaluate',
      description='Compare learned optimizers with tuned Adam, RMSprop, SGD '
      'and Nesterov SGD on held-out problems.')
  parser.add_argument('meta_params', nargs='*', default=[None],
                      help='meta_params.npz files (default: the shipped one)')
  parser.add_argument('--out', default='runs/eval', help='output directory')
  add_arguments(parser)
  args = parser.parse_args(argv)
  run(args.meta_params, args.family, args.eval_steps, args.eval_seeds, args.out)


if __name__ == '__main__':
  main()
