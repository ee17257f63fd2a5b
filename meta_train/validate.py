"""Model selection away from the reported suites.

``python -m meta_train.validate A.npz B.npz`` scores learned optimizers in
two ways, neither of which touches the ``paper`` or ``heldout`` suites:

- **dev** (the selection score): on each development case of
  :data:`meta_train.suite.DEV_CASES` (structures of neither suite, the
  training split, seeds from 100), the log of the candidate's mean final
  loss over tuned Adam's, clipped to [-1, 1]; the score is the mean over
  cases (lower is better; below 0 beats tuned Adam on average).
  ``--dev-seeds`` problems per case (default 10: with 5, a candidate's
  score moved by up to 0.2 between two seed sets, as much as the differences
  between candidates); ``--dev-first-seed 110`` scores on another set of
  problems, to see how much of a difference is noise. Tuned Adam is run once,
  in the same call, on the same problems.
- **training** (``--families``): on unseen problems of the meta-training
  families (evaluation seeds from ``--first-seed``), the mean log final
  training loss per family, summed.

It prints each candidate's dev score, then a table of its per-case log
ratios (where a difference between candidates comes from), then the
training scores. Choosing among meta-training runs by the dev score keeps
the reported suites out of the choice.
"""

import argparse
import math
from typing import Mapping, Sequence

import jax
import numpy as np
import optax

import tasks
from meta_train import evaluate
from meta_train import suite


def scores(meta_params_path: str, families: Sequence[str], *, num_seeds: int,
           first_seed: int, num_steps: int) -> dict[str, float]:
  """Family name -> mean log final full loss over the validation problems.

  ``meta_params_path`` is a ``--candidates`` argument (``NAME@x`` too).
  """
  optimizer = evaluate.load_candidate(meta_params_path)
  run = jax.jit(lambda task, key: evaluate.trajectory(
      task, optimizer, key, num_steps)[-1])
  result = {}
  for name in families:
    family = tasks.get_family(name)
    finals = np.array([float(run(*evaluate.eval_problem(family, seed)))
                       for seed in range(first_seed, first_seed + num_seeds)])
    result[name] = float(np.mean(np.log(np.maximum(finals, 1e-30))))
  return result


# Problems per development case in ``main``: with 5 (``suite.DEV_SEEDS``),
# seed noise in the score was as large as the differences between candidates.
DEV_NUM_SEEDS = 10


# Bound on one case's log loss ratio in the dev score (a factor of e).
SCORE_CLIP = 1.0


# What a non-finite mean loss counts as, in log ratio and in the score.
NON_FINITE_RATIO = 10.0


def _log_ratio(loss: float, reference: float) -> float:
  """log(loss / reference); a non-finite loss counts as 10 (e^10 worse)."""
  if not math.isfinite(loss):
    return NON_FINITE_RATIO
  return float(np.log(max(loss, 1e-30) / max(reference, 1e-30)))


def _score_term(loss: float, reference: float) -> float:
  """The log ratio clipped to ±SCORE_CLIP; 10 for a non-finite loss."""
  if not math.isfinite(loss):
    return NON_FINITE_RATIO
  return float(np.clip(_log_ratio(loss, reference), -SCORE_CLIP, SCORE_CLIP))


def dev_scores(candidates: Mapping[str, optax.GradientTransformation], *,
               cases: Sequence[suite.Case] = suite.DEV_CASES,
               seeds: Sequence[int] = suite.DEV_SEEDS,
               lr_grid: Sequence[float] = evaluate.LR_GRID
               ) -> dict[str, dict[str, float]]:
  """Candidate -> case -> log(mean final loss / tuned Adam's), plus 'score'.

  'score' is the mean over cases of the log ratio clipped to
  ``[-SCORE_CLIP, SCORE_CLIP]`` (a non-finite mean loss counts as 10), so no
  single case, e.g. a chaotic deterministic one whose final loss moves by a
  factor of 3 with summation order, outweighs the others; 'median' is the
  median of the unclipped log ratios. 'wins' counts the cases where the
  candidate's mean final loss is below tuned Adam's and 'diverged' the runs
  that ended non-finite or above their initial loss.
  """
  out = {name: {'wins': 0, 'diverged': 0} for name in candidates}
  terms = {name: [] for name in candidates}
  for case in cases:
    family = tasks.get_family(case.family, **case.kwargs)
    results = evaluate.evaluate(family, candidates, num_steps=case.num_steps,
                                seeds=seeds, lr_grid=lr_grid,
                                baselines={'adam': optax.adam})
    adam = results['optimizers']['adam']['mean_final_loss']
    for name in candidates:
      entry = results['optimizers'][name]
      out[name][case.name] = _log_ratio(entry['mean_final_loss'], adam)
      terms[name].append(_score_term(entry['mean_final_loss'], adam))
      out[name]['wins'] += int(entry['mean_final_loss'] < adam)
      out[name]['diverged'] += entry['num_diverged']
  for name in candidates:
    out[name]['score'] = float(np.mean(terms[name]))
    out[name]['median'] = float(np.median([out[name][c.name] for c in cases]))
  return out


def case_table(dev: Mapping[str, Mapping[str, float]],
               cases: Sequence[suite.Case] = suite.DEV_CASES) -> str:
  """A markdown table of :func:`dev_scores`' per-case log ratios (rows:
  cases; columns: candidates; below 0 beats tuned Adam)."""
  names = list(dev)
  lines = ['| dev case: log(loss / tuned Adam\'s) | ' + ' | '.join(names) + ' |',
           '|---' * (len(names) + 1) + '|']
  for case in cases:
    lines.append(f'| {case.name} | ' + ' | '.join(
        f'{dev[name][case.name]:+.2f}' for name in names) + ' |')
  return '\n'.join(lines)


def main(argv=None) -> dict[str, dict[str, float]]:
  parser = argparse.ArgumentParser(prog='python -m meta_train.validate',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('meta_params', nargs='+',
                      help="meta_params.npz files, or 'default'")
  parser.add_argument('--families', nargs='*', default=[],
                      help='also score unseen problems of these training '
                      'families (e.g. quadratic mnist1d_mlp_paper)')
  parser.add_argument('--seeds', type=int, default=16,
                      help='problems per training family')
  parser.add_argument('--first-seed', type=int, default=1000)
  parser.add_argument('--steps', type=int, default=100,
                      help='horizon on the training families')
  parser.add_argument('--no-dev', dest='dev', action='store_false',
                      help='skip the development cases')
  parser.add_argument('--dev-seeds', type=int, default=DEV_NUM_SEEDS,
                      help='evaluation problems per development case')
  parser.add_argument('--dev-first-seed', type=int, default=suite.DEV_SEEDS[0],
                      help='first of the dev cases\' evaluation seeds (at '
                      'least 100, away from the suites\'); another seed set '
                      'shows how much of a dev score difference is noise')
  args = parser.parse_args(argv)
  if args.dev_first_seed < suite.DEV_SEEDS[0]:
    parser.error(f'--dev-first-seed must be at least {suite.DEV_SEEDS[0]} '
                 f'(the suites use seeds 0, 1, ...), got {args.dev_first_seed}')
  if args.dev_seeds < 1:
    parser.error(f'--dev-seeds must be at least 1, got {args.dev_seeds}')
  dev_seeds = tuple(range(args.dev_first_seed,
                          args.dev_first_seed + args.dev_seeds))
  names = evaluate.candidate_names(args.meta_params)
  results = {name: {} for name in names}
  if args.dev:
    candidates = evaluate.load_candidates(args.meta_params)
    dev = dev_scores(candidates, seeds=dev_seeds)
    for name, entry in dev.items():
      results[name]['dev'] = entry
      print(f'{name}: dev score {entry["score"]:.3f} (mean clipped log loss '
            f'ratio to tuned Adam over {len(suite.DEV_CASES)} cases x '
            f'{len(dev_seeds)} seeds, median '
            f'{entry["median"]:.3f}), beats Adam on '
            f'{entry["wins"]}, {entry["diverged"]} runs diverged', flush=True)
    print(case_table(dev), flush=True)
  for name, path in names.items():
    if args.families:
      fams = scores(path, args.families, num_seeds=args.seeds,
                    first_seed=args.first_seed, num_steps=args.steps)
      results[name]['training'] = fams
      cells = ' '.join(f'{k} {v:.3f}' for k, v in fams.items())
      print(f'{name}: training {cells} | sum {sum(fams.values()):.3f}',
            flush=True)
  return results


if __name__ == '__main__':
  main()
