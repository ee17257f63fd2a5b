"""Plots of ``python -m meta_train.tune``: hyperparameter trajectories
against steps and validation loss against cost, as PNG files."""

import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from matplotlib import ticker  # pylint: disable=g-import-not-at-top

from meta_train import plots

COLOURS = {'online': 'C0', 'learned': 'C1', 'pbt': 'C2', 'random': 'C3',
           'optuna_tpe': 'C4', 'grid': 'C5', 'default': 'k'}


def trajectories(records: list[dict], out_dir: str) -> list[str]:
  """One ``trajectories_<problem>.png`` per problem: each hyperparameter
  against training steps, one line per method and seed (PBT: the best
  member's line; trial-based methods: the chosen trial's constant value)."""
  paths = []
  for problem in dict.fromkeys(r['problem'] for r in records):
    rows = [r for r in records if r['problem'] == problem]
    names = [k for k in rows[0]['trajectory'] if k != 'steps']
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
      seen = set()
      for r in rows:
        t = r['trajectory']
        label = None if r['method'] in seen else r['method']
        seen.add(r['method'])
        ax.plot(t['steps'], t[name], color=COLOURS.get(r['method']),
                label=label, drawstyle='steps-post', alpha=0.8)
      ax.set_xlabel('training step')
      ax.set_ylabel(name)
      if name in ('weight_decay', 'input_noise'):
        ax.set_yscale('log')
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f'{problem}: hyperparameters during training')
    fig.tight_layout()
    path = os.path.join(out_dir, f'trajectories_{problem}.png')
    plots._save(fig, path)  # pylint: disable=protected-access
    paths.append(path)
  return paths


def cost(summary: dict, path: str) -> None:
  """Validation loss against cost (in training runs), one panel a problem."""
  problems = summary['problems']
  fig, axes = plt.subplots(1, len(problems), figsize=(4.5 * len(problems), 3.6),
                           squeeze=False)
  for ax, (problem, by) in zip(axes[0], problems.items()):
    for method, r in by.items():
      ax.scatter(r['cost_runs'], r['val_loss'], color=COLOURS.get(method),
                 label=method)
    ax.set_xscale('log')
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xticks([1, 2, 4, 8, 16])
    ax.set_xlabel('cost (training runs)')
    ax.set_ylabel('validation loss')
    ax.set_title(problem)
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  plots._save(fig, path)  # pylint: disable=protected-access
