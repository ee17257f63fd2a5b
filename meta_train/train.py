"""The meta-training loop: checkpoints, resume, JSON-lines log, progress bar.

Every random choice is a pure function of ``(seed, step)``: the task of
episode ``e`` is drawn with ``np.random.default_rng([seed, e])`` and the keys
of step ``i`` are folded from the seed, so a run resumed from a checkpoint
takes exactly the steps an uninterrupted run would.

The problems of a meta-step are split over the devices of a ``'tasks'`` mesh
(``l2l.task_mesh``: one device, the local ones, or those of every process
after ``jax.distributed.initialize``); the meta-gradient is reduced across
them. Every process runs this same loop; only process 0 writes the log and
the meta-parameters, and all of them write their shards of the checkpoints.
"""

import dataclasses
import functools
import json
import math
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

import l2l
from l2l import _fit
from l2l import _parallel
import tasks
from tasks import augment
from meta_train import checkpoints as checkpoints_lib
from meta_train import validation as validation_lib
from meta_train.config import TrainConfig

CHECKPOINT = checkpoints_lib.DIRECTORY
LOG = 'metrics.jsonl'
META_PARAMS = 'meta_params.npz'
# The meta-parameters a run starts from (a candidate of its evaluation).
INITIAL = 'meta_params_initial.npz'
# Every task structure compiles its own meta-step. XLA's CPU programs hold
# memory mappings until freed, and a process that keeps ~100 of them runs
# out (LLVM "Cannot allocate memory"), so at most this many stay compiled.
MAX_COMPILED_STRUCTURES = 16
# Seed words of the random episode lengths (apart from the tasks' streams).
HORIZON_STREAM = 0x686f72
# Which meta-params a subset (--train-only) trains; shared with l2l.meta_train.
trainable_leaves = _fit.trainable_leaves


def training_family(config: TrainConfig):
  """The run's family, on random subsets of its split if ``data_subsets``
  (in a mixture, each member family of data sets; ``tasks.on_subsets``).

  Raises:
    TypeError, ValueError: as ``tasks.on_subsets``.
  """
  family = tasks.get_family(config.family)
  if config.data_subsets:
    family = augment.on_subsets(family, config.data_subsets)
  return family


class Trainer:
  """Builds the jitted functions of one run from its config, over ``mesh``
  (all devices when None)."""

  def __init__(self, config: TrainConfig, mesh=None):
    self.config = config
    self.mesh = _parallel.task_mesh() if mesh is None else mesh
    _parallel.check_divisible(self.num_problems(config), self.mesh)
    self.family = training_family(config)
    if config.augment:
      self.family = augment.AugmentedFamily(self.family)
    self._episode_starts = _episode_starts(config)
    self.meta_optimizer = _fit.adam_meta_optimizer(
        self.trainable, meta_lr=config.meta_lr, clip_norm=config.clip_norm)
    self.optimizer_fn = functools.partial(
        l2l.lstm_optimizer, **config.optimizer_kwargs)
    self._step = _fit.jitted_meta_step(
        config.estimator, optimizer_fn=self.optimizer_fn,
        meta_optimizer=self.meta_optimizer, trainable=self.trainable,
        unroll_length=config.unroll_length, log_losses=config.log_losses,
        loss_weights=config.loss_weights, es_pairs=config.es_pairs,
        es_sigma=config.es_sigma, es_fitness=config.es_fitness,
        second_order=config.second_order, remat_chunk=config.remat_chunk,
        mesh=self.mesh)
    self._init_inner = jax.jit(
        lambda meta_params, task, key: l2l.init_inner_states(
            task, self.optimizer_fn(meta_params), key, config.num_tasks),
        out_shardings=_parallel.split(self.mesh))
    self._keys = jax.random.split(jax.random.key(config.seed), 3)
    self._compiled = set()
    self._task = (None, None)

  @staticmethod
  def num_problems(config: TrainConfig) -> int:
    """Problems a meta-step splits over the devices (PES: particles)."""
    return config.num_tasks * (2 if config.estimator == 'pes' else 1)

  @staticmethod
  def check_devices(config: TrainConfig, devices: int | None) -> None:
    """Raises ValueError if ``devices`` cannot take ``config``'s problems."""
    _parallel.check_divisible(Trainer.num_problems(config),
                              _parallel.task_mesh(devices))

  def task(self, episode: int):
    """The task of ``episode``, the same in every run with this seed (with
    host arrays, which enter the mesh's programs on every process)."""
    if self._task[0] != episode:
      self._task = (episode, _parallel.host_task(self.family.sample_task(
          np.random.default_rng([self.config.seed, episode]))))
    return self._task[1]

  def trainable(self, meta_params):
    """Bools shaped like ``meta_params``: which leaves meta-training moves."""
    return trainable_leaves(meta_params, self.config.train_only)

  def initial_state(self) -> l2l.MetaTrainState:
    task, key = self.task(0), jax.random.fold_in(self._keys[1], 0)
    shapes = jax.eval_shape(self._state_at, task, key)
    return jax.jit(self._state_at, out_shardings=self.shardings(shapes))(
        task, key)

  def shardings(self, state) -> l2l.MetaTrainState:
    """Where each leaf of a state lives: problems split over the mesh."""
    return _parallel.state_shardings(state, self.mesh)

  def _state_at(self, task, key) -> l2l.MetaTrainState:
    meta_params = l2l.init_meta_params(self._keys[0], **self.config.architecture)
    return _fit.start_episode(self.config.estimator, l2l.MetaTrainState(
        meta_params, self.meta_optimizer.init(meta_params), None,
        jnp.zeros([], jnp.int32)), self._init_inner(meta_params, task, key))

  def init_inner(self, meta_params, episode: int) -> l2l.InnerState:
    return self._init_inner(meta_params, self.task(episode),
                            jax.random.fold_in(self._keys[1], episode))

  def episode_of(self, step: int) -> tuple[int, int]:
    """``(episode, truncation within it)`` of meta-step ``step``."""
    if self._episode_starts is None:
      return divmod(step, self.config.truncations_per_episode)
    episode = int(np.searchsorted(self._episode_starts, step, 'right')) - 1
    return episode, step - int(self._episode_starts[episode])

  def step(self, state: l2l.MetaTrainState, step: int):
    """Meta-step number ``step`` (0-based); starts a new episode if due."""
    episode, offset = self.episode_of(step)
    task = self.task(episode)
    self._bound_compiled(task)
    if offset == 0 and step > 0:
      state = _fit.start_episode(self.config.estimator, state,
                                 self.init_inner(state.meta_params, episode))
    return self._step(state, task, jax.random.fold_in(self._keys[2], step))

  def _bound_compiled(self, task) -> None:
    """Drops compiled programs once too many task structures have been seen."""
    structure = jax.tree.structure(task)
    if structure not in self._compiled:
      if len(self._compiled) >= MAX_COMPILED_STRUCTURES:
        self._step.clear_cache()
        self._init_inner.clear_cache()
        self._compiled.clear()
      self._compiled.add(structure)

  def state_like(self, step: int) -> l2l.MetaTrainState:
    """Shapes of the state after ``step`` completed meta-steps."""
    episode = self.episode_of(max(step - 1, 0))[0]
    # Sampled outside the trace: families cache their data as device arrays.
    task = self.task(episode)
    key = jax.random.fold_in(self._keys[1], episode)
    return jax.eval_shape(lambda: self._state_at(task, key))


def _episode_starts(config: TrainConfig) -> np.ndarray | None:
  """First meta-step of each episode under randomised horizons (drawn once
  from the seed, so a resumed run sees the same episodes); None without."""
  if not config.random_horizons:
    return None
  lengths = augment.horizons(
      np.random.default_rng([config.seed, HORIZON_STREAM]),
      config.truncations_per_episode, max(config.meta_steps, 1))
  return np.concatenate([[0], np.cumsum(lengths)])


def _atomic_write_text(path: str, text: str) -> None:
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.tmp-')
  with os.fdopen(fd, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def _step_of(line: str) -> float:
  """The step of a log line; infinity for a blank or cut-off one (a run
  killed while writing it), which a resume drops."""
  try:
    return json.loads(line)['step']
  except (ValueError, KeyError, TypeError):
    return math.inf


def _truncate_log(path: str, step: int) -> None:
  """Drops log lines of steps at or after ``step`` (they will be redone)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [l for l in f if _step_of(l) < step]
  _atomic_write_text(path, ''.join(lines))


def _save(checkpoints, trainer: Trainer, state, step: int,
          elapsed_s: float) -> None:
  checkpoints_lib.save(checkpoints, step, state, {
      'kind': 'meta_train_state', 'step': step, 'elapsed_s': elapsed_s,
      'config': dataclasses.asdict(trainer.config)})


def latest_checkpoint(out_dir: str):
  """``(path, manifest, manager)`` of a run's latest checkpoint (``manager``
  is None for an l2l <= 0.7 ``checkpoint.npz``), or None if it has none."""
  checkpoints, step = checkpoints_lib.latest(out_dir)
  if checkpoints is not None:
    return (os.path.join(out_dir, CHECKPOINT, str(step)),
            checkpoints_lib.read_manifest(checkpoints, step), checkpoints)
  legacy = os.path.join(out_dir, checkpoints_lib.LEGACY)
  if os.path.exists(legacy):
    return legacy, l2l.read_manifest(legacy), None
  return None


def _restore(trainer: Trainer, out_dir: str, check_config: bool = True):
  """Loads the latest checkpoint: ``(state, step, elapsed seconds)``, or
  None when the run has none.

  The run's flags must match the checkpoint's, except ``--meta-steps``
  (nothing in a run depends on its total length), which may extend a run
  but not end it before the checkpoint's step. The state is placed on the
  trainer's mesh, whatever the devices it was saved from.
  """
  found = latest_checkpoint(out_dir)
  if found is None:
    return None
  path, manifest, checkpoints = found
  # Fields added since the checkpoint was written take their defaults.
  defaults = dataclasses.asdict(TrainConfig())
  ignore_length = lambda config: {**defaults, **config, 'meta_steps': None}
  ours = dataclasses.asdict(trainer.config)
  theirs = ignore_length(manifest.get('config') or {})
  differ = sorted(k for k in theirs.keys() | ours.keys()
                  if k != 'meta_steps' and theirs.get(k) != ours.get(k))
  if check_config and differ:
    raise ValueError(
        f'{path} was written by a run with other flags; resume with the same '
        'flags: ' + ', '.join(f'{k} was {theirs.get(k)!r}, now '
                               f'{ours.get(k)!r}' for k in differ))
  step = manifest['step']
  if check_config and step > trainer.config.meta_steps:
    raise ValueError(
        f'{path} is at meta-step {step}, beyond --meta-steps '
        f'{trainer.config.meta_steps}')
  like = trainer.state_like(step)
  shardings = trainer.shardings(like)
  if checkpoints is not None:
    state = checkpoints_lib.restore(checkpoints, step, like, shardings)
    checkpoints.close()
  else:
    state, _ = l2l.load_checkpoint(path, like)
    # Host arrays enter a program over the mesh on every process.
    state = jax.jit(lambda s: s, out_shardings=shardings)(state)
  return state, step, manifest['elapsed_s']


def train(config: TrainConfig, out_dir: str, *, resume: bool = False,
          progress: bool = True, stop_after: int | None = None,
          command: str | None = None, devices: int | None = None) -> str:
  """Meta-trains a learned optimizer and saves its meta-parameters.

  Args:
    config: the run's configuration.
    out_dir: where ``checkpoints/``, ``metrics.jsonl`` and
      ``meta_params.npz`` are written.
    resume: continue from the latest checkpoint in ``out_dir`` if there is
      one (on any number of devices or processes); without it, earlier
      checkpoints there are removed.
    progress: show a progress bar.
    stop_after: stop (after checkpointing) once this many meta-steps are
      done, as an interrupted run would; for tests.
    command: the command line recorded in the manifest (default: argv).
    devices: how many devices the problems are split over
      (``l2l.task_mesh``); all that JAX sees when None.

  Returns:
    The path of the saved meta-parameters (written by process 0 only).
  """
  # First: a bad family or device count fails before any file.
  trainer = Trainer(config, _parallel.task_mesh(devices))
  lead = jax.process_index() == 0
  os.makedirs(out_dir, exist_ok=True)
  start, state, elapsed = 0, None, 0.0
  restored = _restore(trainer, out_dir) if resume else None
  if restored is not None:
    state, start, elapsed = restored
  else:
    state = trainer.initial_state()
  if resume and lead:
    print(f'resuming {out_dir} at meta-step {start}' if restored else
          f'--resume: no checkpoint in {out_dir}; starting a new run',
          file=sys.stderr)
  checkpoints = checkpoints_lib.manager(out_dir)
  if restored is None:
    for old in checkpoints.all_steps():
      checkpoints.delete(old)
  log_path = os.path.join(out_dir, LOG)
  if lead:
    _truncate_log(log_path, start)
  end = min(config.meta_steps, stop_after or config.meta_steps)
  saved = functools.partial(
      _save_meta_params, config=config, command=command or ' '.join(sys.argv))
  if lead and start == 0:
    saved(os.path.join(out_dir, INITIAL), state.meta_params, meta_steps=0)
  validate = _Validation(trainer, out_dir, start, saved) if (
      config.validate_every and lead) else None
  begin_time = time.time()
  # Line-buffered: each meta-step's record shows in the log as it is read
  # back (one step late, so no host sync per step).
  log_file = log_path if lead else os.devnull
  with open(log_file, 'a', buffering=1) as log, tqdm.tqdm(
      total=config.meta_steps, initial=start, disable=not (progress and lead),
      desc='meta-train', file=sys.stderr) as bar:
    pending = None
    if validate and start == 0:
      validate(state.meta_params, 0, bar)
    for step in range(start, end):
      state, metrics = trainer.step(state, step)
      if pending is not None:  # read back one step late: no sync per step
        _write_metrics(log, bar, *pending)
      pending = (step, metrics)
      validate_now = validate and ((step + 1) % config.validate_every == 0
                                   or step + 1 == config.meta_steps)
      if ((step + 1) % config.checkpoint_every == 0 or step + 1 == end
          or validate_now):
        _write_metrics(log, bar, *pending)
        pending = None
        log.flush()
      if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
        _save(checkpoints, trainer, state, step + 1,
              elapsed + time.time() - begin_time)
      if validate_now:
        validate(state.meta_params, step + 1, bar)
  checkpoints.wait_until_finished()
  checkpoints.close()
  path = os.path.join(out_dir, META_PARAMS)
  if end == config.meta_steps and lead:
    wall_time_s = round(elapsed + time.time() - begin_time, 1)
    if validate:
      validate.finish(path, wall_time_s)
    else:
      saved(path, state.meta_params, meta_steps=config.meta_steps,
            wall_time_s=wall_time_s)
  return path


def _save_meta_params(path: str, meta_params, *, config: TrainConfig,
                      command: str, **metadata) -> None:
  l2l.save_meta_params(
      path, meta_params, config={**config.architecture,
                                 **config.optimizer_kwargs},
      task_family=config.family, seed=config.seed,
      train_config=dataclasses.asdict(config), command=command, **metadata)


class _Validation:
  """Validates a run's meta-parameters and keeps the best ones on disk
  (``meta_train.validation``); process 0 only.

  On resume the validation log is cut back to the checkpoint's step; the
  best file may then hold a later step's meta-parameters, which the resumed
  run reproduces when it gets there (resume is exact).
  """

  def __init__(self, trainer: Trainer, out_dir: str, start: int, saved):
    config = trainer.config
    self.out_dir, self.saved, self.config = out_dir, saved, config
    self.validator = validation_lib.Validator(
        training_family(config), config.validate_problems,
        config.validate_steps or config.episode_length,
        config.optimizer_kwargs)
    self.records = validation_lib.read_log(out_dir, before=start + 1)
    validation_lib.write_log(out_dir, self.records)

  def __call__(self, meta_params, step: int, bar) -> None:
    if any(r['step'] == step for r in self.records):
      return
    scores = self.validator.scores(meta_params)
    record = {'step': step, 'score': float(np.mean(scores)),
              'scores': scores.tolist()}
    best = validation_lib.best(self.records)
    if best is None or record['score'] < best['score']:
      self.saved(os.path.join(self.out_dir, validation_lib.BEST), meta_params,
                 meta_steps=step, validation_score=record['score'])
    self.records.append(record)
    validation_lib.write_log(self.out_dir, self.records)
    bar.write(f'validation at meta-step {step}: {record["score"]:+.4f} '
              f'(mean log10 loss of {len(scores)} problems; best '
              f'{validation_lib.best(self.records)["score"]:+.4f})')

  def finish(self, path: str, wall_time_s: float) -> None:
    """Writes the best meta-parameters as the run's result, and the plot."""
    best = validation_lib.best(self.records)
    meta_params, _ = l2l.load_meta_params(
        os.path.join(self.out_dir, validation_lib.BEST))
    self.saved(path, meta_params, meta_steps=self.config.meta_steps,
               selected_meta_step=best['step'],
               validation_score=best['score'], wall_time_s=wall_time_s)
    validation_lib.plot(self.out_dir, os.path.join(self.out_dir, LOG),
                        f'{self.config.family}, {self.config.design} design, '
                        f'{self.config.estimator}')


def _write_metrics(log, bar, step, metrics) -> None:
  record = {'step': step, **{k: float(v) for k, v in metrics.items()}}
  record['num_skipped'] = int(record['num_skipped'])
  record['skipped'] = bool(record['skipped'])
  log.write(json.dumps(record) + '\n')
  bar.update(1)
  bar.set_postfix(meta_loss=f'{record["meta_loss"]:.3g}',
                  final_loss=f'{record["final_loss"]:.3g}', refresh=False)
