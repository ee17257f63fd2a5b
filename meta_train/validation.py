"""Held-out validation during meta-training: the curve, and the best step.

Every ``--validate-every`` meta-steps the current meta-parameters train
``--validate-problems`` validation problems of the run's family for
``--validate-steps`` inner steps; the score is the mean over problems of the
log10 full loss averaged over the last tenth of the run (lower is better).
The validation problems are drawn from their own stream, apart from the
episodes of meta-training (``[seed, episode]``) and from the evaluation
problems of :mod:`meta_train.evaluate` (``[seed, 0, 0xE7A1]``), and do not
depend on the run's ``--seed``: runs with different seeds are scored on the
same problems. They use the family's training split; the final evaluation
uses its test split.

Files, in the run's directory (written atomically):
  ``validation.jsonl``: one line per validation, ``{"step", "score",
    "scores"}`` (the per-problem scores);
  ``meta_params_best.npz``: the meta-parameters of the best score so far
    (step 0 is the fresh optimizer);
  ``meta_training.png``: the meta-loss of every meta-step and the
    validation score against meta-steps.
"""

import functools
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import l2l
from meta_train import evaluate

LOG = 'validation.jsonl'
BEST = 'meta_params_best.npz'
PLOT = 'meta_training.png'
# Seed word of the validation problems' stream.
_VALID_WORD = 0x7A11D


def validation_problem(family, index: int):
  """The task and PRNG key of validation problem ``index``."""
  task = family.sample_task(np.random.default_rng([index, 1, _VALID_WORD]))
  return task, jax.random.fold_in(jax.random.key(_VALID_WORD), index)


def _score(losses: jax.Array) -> jax.Array:
  """log10 of the mean full loss over the last tenth of a recorded curve."""
  tail = max(1, (losses.shape[0] - 1) // 10)
  return jnp.log10(jnp.maximum(jnp.mean(losses[-tail:]), 1e-30))


class Validator:
  """Scores meta-parameters on fixed validation problems of a family.

  Args:
    family: a task family (``sample_task(rng)``).
    num_problems: validation problems (at least 1).
    num_steps: inner steps of each validation run.
    optimizer_kwargs: further arguments of :func:`l2l.lstm_optimizer`.

  One program is compiled per task structure; the meta-parameters enter it
  as traced data, so validating again never recompiles.
  """

  def __init__(self, family, num_problems: int, num_steps: int,
               optimizer_kwargs: dict | None = None):
    if num_problems < 1 or num_steps < 1:
      raise ValueError('validation needs at least one problem and one step, '
                       f'got {num_problems} problems of {num_steps} steps')
    self.problems = [validation_problem(family, i) for i in range(num_problems)]
    kwargs = dict(optimizer_kwargs or {})

    @jax.jit
    def run(meta_params, task, key):
      optimizer = l2l.lstm_optimizer(meta_params, **kwargs)
      return _score(evaluate.trajectory(task, optimizer, key, num_steps))

    self._run = run

  def scores(self, meta_params) -> np.ndarray:
    """Per-problem scores, float64 ``[num_problems]`` (non-finite: inf)."""
    values = np.array([float(self._run(meta_params, task, key))
                       for task, key in self.problems])
    return np.where(np.isfinite(values), values, np.inf)


def read_log(out_dir: str, before: int | None = None) -> list[dict]:
  """The validation records of a run (those of steps < ``before``)."""
  path = os.path.join(out_dir, LOG)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [r for r in records if before is None or r['step'] < before]


def write_log(out_dir: str, records: list[dict]) -> None:
  """Replaces the validation log with ``records``, atomically."""
  fd, tmp = tempfile.mkstemp(dir=out_dir, prefix='.tmp-')
  with os.fdopen(fd, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)
  os.replace(tmp, os.path.join(out_dir, LOG))


def best(records: list[dict]) -> dict | None:
  """The record of the lowest score (the earliest among equals)."""
  return min(records, key=lambda r: (r['score'], r['step']), default=None)


def plot(out_dir: str, metrics_path: str, title: str) -> str:
  """Draws ``meta_training.png``: the meta-loss per meta-step (thin) and the
  validation score against meta-steps, with the best step marked."""
  from meta_train import plots  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  records = read_log(out_dir)
  steps_losses = []
  if os.path.exists(metrics_path):
    with open(metrics_path) as f:
      steps_losses = [(r['step'], r['meta_loss']) for r in map(json.loads, f)
                      if 'meta_loss' in r]
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
  if steps_losses:
    steps, losses = np.array(steps_losses).T
    top.plot(steps + 1, losses, lw=0.6, color='0.5')
  top.set_ylabel('meta-loss (training problems)')
  if records:
    steps = [r['step'] for r in records]
    bottom.plot(steps, [r['score'] for r in records], 'o-', ms=3,
                label='validation problems')
    bottom.axhline(records[0]['score'], color='k', lw=0.8, ls='--',
                   label=f'at meta-step {records[0]["step"]}')
    chosen = best(records)
    bottom.plot([chosen['step']], [chosen['score']], '*', ms=12,
                color='C3', label=f'best, meta-step {chosen["step"]}')
    bottom.legend(fontsize=8)
  bottom.set_xlabel('meta-step')
  bottom.set_ylabel('mean log10 final loss')
  top.set_title(title)
  fig.tight_layout()
  path = os.path.join(out_dir, PLOT)
  plots._save(fig, path)  # pylint: disable=protected-access
  return path
