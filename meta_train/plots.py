"""Plots written as PNG files."""

import os
import tempfile
from typing import Sequence

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def _save(fig, path: str) -> None:
  """Writes ``fig`` to ``path`` atomically (temporary file, then rename)."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                             suffix='.png')
  os.close(fd)
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.chmod(tmp, 0o644)
  os.replace(tmp, path)


# Floor of a mean final loss in the bars' ratios (an exact 0 is a finite win).
LOSS_FLOOR = 1e-30

# Where a non-finite loss's bar ends, in decades (the plot's right edge).
NON_FINITE_BAR = 5.0


def log10_ratio(loss: float, reference: float) -> float:
  """log10(loss / reference), both floored at ``LOSS_FLOOR``; nan or inf
  when ``loss`` is not finite."""
  return float(np.log10(np.maximum(loss, LOSS_FLOOR)
                        / np.maximum(reference, LOSS_FLOOR)))


def suite_summary(rows: Sequence[dict], path: str) -> None:
  """Bars of log10(candidate's mean final loss / tuned Adam's) per case.

  Bars left of 0 beat tuned Adam. Diverged runs are marked with ``x``;
  non-finite losses are drawn at the right edge.
  """
  cases = list(dict.fromkeys(r['case'] for r in rows))
  candidates = list(dict.fromkeys(r['candidate'] for r in rows))
  by = {(r['case'], r['candidate']): r for r in rows}
  height = 0.8 / len(candidates)
  fig, ax = plt.subplots(figsize=(8, 0.45 * len(cases) + 1.5))
  for j, name in enumerate(candidates):
    y, ratio, diverged = [], [], []
    for i, case in enumerate(cases):
      r = by.get((case, name))
      if r is None:
        continue
      value = log10_ratio(r['candidate_mean_final_loss'],
                          r['adam_mean_final_loss'])
      y.append(i + (j - (len(candidates) - 1) / 2) * height)
      ratio.append(value if np.isfinite(value) else NON_FINITE_BAR)
      diverged.append(r['candidate_diverged'] > 0)
    ax.barh(y, ratio, height=height, label=name)
    ax.scatter(np.asarray(ratio)[diverged], np.asarray(y)[diverged],
               marker='x', color='k', zorder=3)
  ax.axvline(0.0, color='k', lw=0.8)
  ax.set_yticks(range(len(cases)), cases, fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel('log10(mean final loss / tuned Adam\'s)   (< 0: better '
                'than tuned Adam)')
  ax.legend(fontsize=8, loc='lower right')
  fig.tight_layout()
  _save(fig, path)


def loss_curves(results: dict, path: str) -> None:
  """Mean loss curves over seeds, with the min-max band, on a log scale."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  steps = np.arange(len(next(iter(results['optimizers'].values()))[
      'curve_mean'])) * results['record_every']
  for name, r in results['optimizers'].items():
    label = (r.get('description', name) if r['kind'] == 'candidate'
             else f'{name} (lr {r["lr"]:g})')
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
  _save(fig, path)


def main(argv=None) -> None:
  """``python -m meta_train.plots SUMMARY_JSON OUT_PNG``."""
  import argparse  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog='python -m meta_train.plots',
      description="Redraws a suite's summary plot from its summary.json.")
  parser.add_argument('summary', help="a suite's summary.json")
  parser.add_argument('out', help='the PNG to write')
  args = parser.parse_args(argv)
  try:
    with open(args.summary) as f:
      rows = json.load(f)['rows']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise SystemExit(f'cannot read suite rows from {args.summary}: {e!r}')
  if not rows:
    raise SystemExit(f'{args.summary} has no rows to plot')
  suite_summary(rows, args.out)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
