"""The trial journal and the resumable ask/evaluate/tell loop.

Trials are records, not processes (Optuna's ``JournalStorage`` is the
model): every finished trial is one JSON line appended to the journal with
a single ``write`` followed by ``fsync``, so a killed search loses at most
the trials still running. Resuming replays the strategy with the same seed
and reads finished trials back instead of evaluating them again; because
``ask`` is a pure function of the seed and the fitness told so far, the
resumed search asks exactly what the uninterrupted one would have.
"""

import functools
import json
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from l2l.search._space import Space
from l2l.search._strategies import Strategy

Trial = dict[str, Any]
# evaluate(trials) -> one metrics dict per trial (with 'fitness'), any order
# of work inside, results in the order of ``trials``.
Evaluate = Callable[[Sequence[Trial]], Sequence[dict[str, float]]]


class Journal:
  """An append-only JSON-lines file of finished trials.

  Args:
    path: The ``journal.jsonl`` file; created (with its folder) on the first
      append.

  Example:
    >>> journal = Journal('/tmp/run/journal.jsonl')
    >>> journal.append({'trial': 0, 'config': 'a=1', 'fitness': 0.5})
    >>> [r['trial'] for r in journal.read()]
    [0]
  """

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)

  def read(self) -> list[Trial]:
    """Returns the records in file order; a torn last line (a write cut by
    a kill) is ignored, a corrupt line elsewhere raises ``ValueError``."""
    if not self.path.exists():
      return []
    lines = self.path.read_text().split('\n')
    records = []
    for number, line in enumerate(lines, 1):
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError as error:
        if number >= len(lines) - 1 and not self.path.read_text().endswith('\n'):
          break  # The last, unterminated line: an interrupted append.
        raise ValueError(f'{self.path}:{number}: corrupt journal line.') from error
    return records

  def append(self, record: Trial) -> None:
    """Appends one record as a JSON line, durably (flush and fsync)."""
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._drop_torn_tail()
    line = json.dumps(record, sort_keys=True) + '\n'
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write(line)
      f.flush()
      os.fsync(f.fileno())

  def _drop_torn_tail(self):
    if self.path.exists():
      text = self.path.read_text()
      if text and not text.endswith('\n'):
        keep = text[:text.rfind('\n') + 1]
        tmp = self.path.with_name(self.path.name + '.tmp')
        tmp.write_text(keep)
        os.replace(tmp, self.path)


def trial_seed(seed: int, trial: int) -> int:
  """The training seed of trial ``trial`` of search ``seed`` (31-bit int)."""
  return int(np.random.SeedSequence([int(seed), int(trial)]).generate_state(1)[0] >> 1)


@functools.lru_cache(maxsize=16)
def _compiled(strategy: Strategy):
  """Jitted init, ask and tell, kept per strategy so that resuming the same
  strategy object in one process does not compile again."""
  return jax.jit(strategy.init), jax.jit(strategy.ask), jax.jit(strategy.tell)


def run_trials(strategy: Strategy, space: Space, evaluate: Evaluate,
               journal: Journal, seed: int, num_trials: int,
               resume: bool = False,
               on_step: Callable[[int, list[Trial], Any], None] | None = None,
               ) -> list[Trial]:
  """Runs a search with a journal: ask, evaluate what is not journaled, tell.

  Args:
    strategy: The ask/tell strategy.
    space: Its space (config strings are written to the journal).
    evaluate: Evaluates a list of trials (dicts with ``trial``, ``config``,
      ``indices``, ``seed``) and returns one metrics dict per trial with a
      float ``fitness`` (larger is better); it decides where trials run.
    journal: Where finished trials are appended.
    seed: The search seed.
    num_trials: Trials to run, rounded up to a multiple of the strategy's
      batch size.
    resume: Whether an existing journal may be continued; without it a
      non-empty journal raises.
    on_step: Called after each tell as ``on_step(step, records, state)``.

  Returns:
    Every trial's record, in trial order.

  Raises:
    FileExistsError: the journal has trials and ``resume`` is false.
    ValueError: the journal holds a trial whose config differs from the one
      this search asks (another seed, space or strategy).
  """
  done = {r['trial']: r for r in journal.read()}
  if done and not resume:
    raise FileExistsError(f'{journal.path} already has {len(done)} trials; pass '
                          'resume=True (--resume) to continue it, or use a new folder.')
  batch = strategy.batch_size
  key_init, key_loop = jax.random.split(jax.random.key(int(seed)))
  init, ask, tell = _compiled(strategy)
  state = init(key_init)
  records = []
  for step in range(-(-int(num_trials) // batch)):
    configs, state = ask(jax.random.fold_in(key_loop, step), state)
    configs = np.asarray(configs)
    trials = [{'trial': step * batch + i, 'config': space.config_string(c),
               'indices': c.tolist(), 'seed': trial_seed(seed, step * batch + i)}
              for i, c in enumerate(configs)]
    for trial in trials:
      old = done.get(trial['trial'])
      if old is not None and old['config'] != trial['config']:
        raise ValueError(f'{journal.path}: trial {trial["trial"]} was {old["config"]!r}'
                         f' but this search asks {trial["config"]!r}; not the same search.')
    todo = [t for t in trials if t['trial'] not in done]
    if todo:
      start = time.time()
      for trial, metrics in zip(todo, evaluate(todo)):
        record = dict(trial, **{k: float(v) for k, v in metrics.items()},
                      seconds=round((time.time() - start) / len(todo), 3))
        journal.append(record)
        done[trial['trial']] = record
    step_records = [done[t['trial']] for t in trials]
    fitness = np.asarray([r['fitness'] for r in step_records], np.float32)
    state = tell(state, configs, fitness)
    records += step_records
    if on_step is not None:
      on_step(step, step_records, state)
  return records
