"""PNG plots of an architecture search and of the regret comparison."""

import textwrap

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from meta_train.plots import _save


def best_so_far(records, path) -> None:
  """Best-so-far validation fitness, and the test accuracy of that trial, against trials."""
  fitness = np.asarray([r['fitness'] for r in records])
  incumbent = [int(np.argmax(fitness[:i + 1])) for i in range(len(fitness))]
  fig, ax = plt.subplots(figsize=(6, 4))
  trials = np.arange(1, len(records) + 1)
  ax.plot(trials, np.maximum.accumulate(fitness), label='best validation (fitness)')
  if all('test_accuracy' in r for r in records):
    test = np.asarray([records[i]['test_accuracy'] for i in incumbent])
    ax.plot(trials, test, label='its test accuracy')
  ax.scatter(trials, fitness, s=6, color='grey', alpha=0.5, label='each trial')
  ax.set_xlabel('trials')
  ax.set_ylabel('accuracy')
  ax.legend()
  _save(fig, str(path))


def rewards(values, strategy: str, path, steps=None,
            xlabel: str = 'strategy step (one ask/tell)',
            ylabel: str = 'mean reward of the batch') -> None:
  """Mean reward (fitness) per strategy step, the controller's learning
  curve; or, given ``steps`` and labels, any score at those steps."""
  fig, ax = plt.subplots(figsize=(6, 4))
  steps = np.arange(1, len(values) + 1) if steps is None else np.asarray(steps)
  ax.plot(steps, values, marker='.')
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(f'{strategy}: {ylabel}')
  _save(fig, str(path))


def best_cell(space, config, path) -> None:
  """The best configuration: a tabular cell as a DAG, other spaces as text."""
  values = space.values(config)
  fig, ax = plt.subplots(figsize=(7, 4))
  ax.axis('off')
  if space.name == 'tabular_cell':
    nodes = space.settings()['num_nodes']
    xs = np.linspace(0, 1, nodes)
    for name, op in values.items():
      i, j = int(name[-2]), int(name[-1])
      if op == 'none':
        continue
      height = 0.12 * (j - i)
      mid = (xs[i] + xs[j]) / 2
      arc = np.linspace(0, np.pi, 30)
      ax.plot(mid - (xs[j] - xs[i]) / 2 * np.cos(arc), height * np.sin(arc),
              color='tab:blue')
      ax.text(mid, height + 0.01, op, ha='center', fontsize=8)
    ax.scatter(xs, np.zeros(nodes), s=300, color='tab:orange', zorder=3)
    for k, x in enumerate(xs):
      ax.text(x, -0.06, 'input' if k == 0 else ('output' if k == nodes - 1 else f'node {k}'),
              ha='center')
    ax.set_ylim(-0.15, 0.5)
  else:
    ax.text(0, 1, textwrap.fill(space.config_string(config), 90), va='top',
            family='monospace', fontsize=7, transform=ax.transAxes)
  ax.set_title(f'best {space.name} configuration')
  _save(fig, str(path))


def regret_curves(curves: dict, path, title: str) -> None:
  """Mean regret against trials with a band of one standard error, per strategy.

  Args:
    curves: ``{name: regret float array (seeds, trials)}``.
  """
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for name, regret in curves.items():
    mean = regret.mean(0)
    sem = regret.std(0, ddof=1) / np.sqrt(regret.shape[0])
    trials = np.arange(1, regret.shape[1] + 1)
    ax.plot(trials, mean, label=name)
    ax.fill_between(trials, mean - sem, mean + sem, alpha=0.2)
  ax.set_yscale('log')
  ax.set_xlabel('trials')
  ax.set_ylabel('regret (test accuracy)')
  ax.set_title(title, fontsize=10)
  ax.legend()
  fig.tight_layout()
  _save(fig, str(path))


def op_probabilities(space, probabilities, check_every: int, label: str, path) -> None:
  """Operation probabilities of every edge over the search, one panel per edge.

  Args:
    space: The tabular cell space.
    probabilities: float ``(checkpoints, edges, ops)``: DARTS' softmax(alpha)
      or the frequencies of the children ENAS' controller sampled.
    check_every: Search steps between checkpoints.
  """
  probabilities = np.asarray(probabilities)
  ops = space.choices[0].options
  steps = check_every * np.arange(1, probabilities.shape[0] + 1)
  cols = 3
  rows = -(-len(space.choices) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), sharey=True,
                           squeeze=False)
  for e, choice in enumerate(space.choices):
    ax = axes[e // cols, e % cols]
    for k, op in enumerate(ops):
      ax.plot(steps, probabilities[:, e, k], label=op)
    ax.set_title(choice.name, fontsize=9)
    ax.set_xlabel('search step', fontsize=8)
  for ax in axes.flat[len(space.choices):]:
    ax.axis('off')
  axes[0, 0].set_ylabel('probability')
  axes[0, 0].legend(fontsize=7)
  fig.suptitle(f'{label}: operation probabilities per edge')
  fig.tight_layout()
  _save(fig, str(path))


def accuracy_vs_cost(methods: dict, curves: dict, best: float, path, title: str) -> None:
  """Test accuracy of the returned cell against search cost (child trainings).

  Args:
    methods: ``{label: row}`` with ``cost_child_units`` and
      ``test_accuracy_stats`` (``mean``, ``std``).
    curves: ``{name: incumbent test accuracy float (seeds, trials)}`` of the
      trial-based baselines (one trial costs one unit).
    best: The space's best test accuracy.
  """
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for name, accuracy in curves.items():
    trials = np.arange(1, accuracy.shape[1] + 1)
    mean, std = accuracy.mean(0), accuracy.std(0, ddof=1)
    ax.plot(trials, mean, label=f'{name} (incumbent)')
    ax.fill_between(trials, mean - std, mean + std, alpha=0.15)
  for label, row in methods.items():
    stats = row['test_accuracy_stats']
    cost = row['cost_child_units']
    ax.errorbar(cost['mean'], stats['mean'], yerr=stats['std'],
                xerr=[[max(cost['mean'] - cost['min'], 0.0)], [max(cost['max'] - cost['mean'], 0.0)]],
                fmt='o', capsize=3, label=label)
  ax.axhline(best, color='grey', linestyle=':', label='space best')
  ax.set_xscale('log')
  ax.set_xlabel('search cost (child trainings)')
  ax.set_ylabel('test accuracy of the returned cell')
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=7)
  fig.tight_layout()
  _save(fig, str(path))
