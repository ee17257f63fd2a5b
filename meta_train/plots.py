"""Plots written as PNG files."""

import os
import tempfile

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def loss_curves(results: dict, path: str) -> None:
  """Mean loss curves over seeds, with the min-max band, on a log scale."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  steps = np.arange(len(next(iter(results['optimizers'].values()))[
      'curve_mean'])) * results['record_every']
  for name, r in results['optimizers'].items():
    label = name if r['kind'] == 'candidate' else f'{name} (lr {r["lr"]:g})'
    line, = ax.plot(steps, r['curve_mean'], label=label,
                    lw=2.2 if r['kind'] == 'candidate' else 1.2)
    ax.fill_between(steps, r['curve_min'], r['curve_max'],
                    color=line.get_color(), alpha=0.15)
  ax.set_yscale('log')
  ax.set_xlabel('inner step')
  ax.set_ylabel('training loss (full split)')
  ax.set_title(f'{results["family"]}: mean of {len(results["seeds"])} '
               'evaluation problems (band: min-max)')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                             suffix='.png')
  os.close(fd)
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)
