"""One-shot architecture search (ENAS, DARTS) on the tabular cell space.

``python -m meta_train.search --strategy enas|darts`` runs :func:`main` here:
the supernet (:class:`l2l.search.TabularCellNet`) is trained on MNIST-1D
training batches with the tabular benchmark's splits, the architecture on
its validation batches; the children it returns are then "retrained from
scratch", which with ``--benchmark tabular`` is a lookup in the stored
table and otherwise a real training at the table's budget.

Cost is counted in units of one child's training (``Budget.steps`` Adam
steps of ``Budget.batch_size`` examples) in floating-point operations
counted by XLA (``jax.jit(f).lower(...).cost_analysis()['flops']``, the
lowered program before optimisation, for the child and the search alike): the unit is the
training of the *reference child*, the cell with dense ReLU on its first
three edges and skips on the others (a uniformly drawn cell has three
dense edges on average; a cell's FLOPs grow linearly with its dense
edges). A DARTS step costs its whole compiled step (both updates, the
unrolled step for second order, all operations on every edge); an ENAS
step costs the child steps of its sampled children, forward passes of the
controller's children on a validation batch and the controller's own
step; ENAS' derivation costs forward passes over the validation set; each
retrained child costs one unit.
"""

import dataclasses
import functools
import json
import os
import pathlib
import sys
import time

import numpy as np

ONESHOT = ('enas', 'darts')


@dataclasses.dataclass(frozen=True)
class OneShotConfig:
  """Settings of a one-shot search (the command line's flags).

  Attributes:
    strategy: ``'enas'`` or ``'darts'``.
    steps: Search steps.
    order: DARTS' order, 1 or 2.
    early_stop: Apply DARTS+ early stopping (DARTS only).
    max_parameter_free: DARTS+ threshold, parameter-free edges in the cell.
    check_every: Steps between checkpoints (DARTS+ checks, journal lines).
    batch_size: Examples per training and validation minibatch.
    learning_rate: Adam step size of the shared weights.
    alpha_learning_rate: DARTS' architecture step size.
    controller_learning_rate: ENAS' controller step size.
    controller_batch: Children scored per controller step.
    temperature: ENAS' controller logit temperature.
    tanh_constant: ENAS' controller logit bound (``None``: unbounded).
    entropy_weight: ENAS' controller entropy bonus.
    baseline_decay: ENAS' reward baseline decay.
    num_samples: Children ENAS samples to derive its result.
    top_k: Children retrained from scratch (ENAS; DARTS retrains 1).
  """
  strategy: str = 'darts'
  steps: int = 250
  order: int = 1
  early_stop: bool = False
  max_parameter_free: int = 2
  check_every: int = 25
  batch_size: int = 64
  learning_rate: float = 3e-3
  alpha_learning_rate: float = 3e-3
  controller_learning_rate: float = 1e-3
  controller_batch: int = 4
  temperature: float = 5.0
  tanh_constant: float | None = 2.5
  entropy_weight: float = 1e-4
  baseline_decay: float = 0.99
  num_samples: int = 64
  top_k: int = 1

  def __post_init__(self):
    if self.strategy not in ONESHOT:
      raise ValueError(f'strategy must be one of {ONESHOT}, got {self.strategy!r}.')
    if self.steps < 1 or self.check_every < 1 or self.steps % self.check_every:
      raise ValueError(f'steps ({self.steps}) must be a positive multiple of check_every '
                       f'({self.check_every}).')
    if self.early_stop and self.strategy != 'darts':
      raise ValueError('early_stop (DARTS+) applies to darts only.')

  @property
  def label(self) -> str:
    if self.strategy == 'enas':
      return 'ENAS'
    return f'DARTS-{self.order}' + ('+ES' if self.early_stop else '')


def make(config: OneShotConfig, space, sample_x):
  """The supernet, its initial-parameter function and the one-shot search.

  Returns:
    ``(net, init_params(key), oneshot, controller or None)``.
  """
  import jax.numpy as jnp
  from l2l import search
  net = search.TabularCellNet(space)
  num_edges, num_ops = len(space.choices), max(space.num_options)
  init_params = lambda key: net.init(key, sample_x, jnp.ones((num_edges, num_ops)) / num_ops)
  if config.strategy == 'darts':
    oneshot = search.darts(net.apply, num_edges, num_ops, config.order, config.learning_rate,
                           config.alpha_learning_rate)
    return net, init_params, oneshot, None
  controller = search.enas_controller(space, config.controller_batch,
                                      config.controller_learning_rate, config.temperature,
                                      config.tanh_constant, config.entropy_weight,
                                      config.baseline_decay)
  oneshot = search.enas(net.apply, space, 1, config.learning_rate, controller)
  return net, init_params, oneshot, controller


def search_fn(config: OneShotConfig, space, split):
  """``fn(seed) -> (state, metrics)``: the whole search in one ``lax.scan``,
  jitted, the data entering as arguments (as constants XLA would fold them
  for a long time); ``fn(seeds)`` with ``seeds`` int32 ``(S,)`` runs S seeds
  under ``vmap``."""
  import jax
  from l2l import search
  _, init_params, oneshot, _ = make(config, space, split['train'][0][:1])

  @jax.jit
  def searches(seeds, split):
    return jax.vmap(lambda s: one(s, split))(seeds) if seeds.ndim else one(seeds, split)

  def one(seed, split):
    key_params, key_search, key_run = jax.random.split(jax.random.key(seed), 3)
    state = oneshot.init(key_search, init_params(key_params))
    return search.run_oneshot(oneshot, state, key_run, split['train'], split['val'],
                              config.steps, config.batch_size)
  return lambda seeds: searches(jax.numpy.asarray(seeds, jax.numpy.int32), split)


def trajectory(config: OneShotConfig, space, metrics) -> np.ndarray:
  """Operation probabilities per checkpoint, float ``(..., checkpoints, edges, ops)``:
  DARTS' ``softmax(alpha)``; ENAS' frequencies of the children its
  controller sampled since the previous checkpoint."""
  if config.strategy == 'darts':
    weights = np.asarray(metrics['op_weights'])
    return weights[..., config.check_every - 1::config.check_every, :, :]
  configs = np.asarray(metrics['configs'])  # (..., steps, batch, edges)
  one_hot = np.eye(max(space.num_options))[configs]
  shape = configs.shape[:-3] + (-1, config.check_every * configs.shape[-2]) + one_hot.shape[-2:]
  return one_hot.reshape(shape).mean(-3)


def derive(config: OneShotConfig, space, split, state, seed: int):
  """The children to retrain, int ``(k, edges)``, and the DARTS+ stop
  checkpoint (``None`` without early stopping)."""
  import jax
  from l2l import search
  if config.strategy == 'darts':
    raise ValueError('derive() is for ENAS; DARTS derives from its trajectory.')
  net, _, _, controller = make(config, space, split['train'][0][:1])
  configs, _ = search.enas_derive(net.apply, space, state, controller,
                                  jax.random.fold_in(jax.random.key(seed), 7), split['val'],
                                  config.num_samples, config.top_k)
  return np.asarray(configs)


def darts_result(config: OneShotConfig, space, op_weights):
  """DARTS' cell from its checkpoints ``(checkpoints, edges, ops)``: the last
  one's argmax, or DARTS+'s; returns ``(config (edges,), stop index)``."""
  from l2l import search
  if config.early_stop:
    cell, stop = search.darts_plus_stop(space, op_weights, config.max_parameter_free)
    return np.asarray(cell), int(stop)
  return np.asarray(search.discretise(space, op_weights[-1])), len(op_weights) - 1


def _flops(fn, *args) -> float:
  import jax
  analysis = jax.jit(fn).lower(*args).cost_analysis()  # No compilation needed.
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis['flops'])


def reference_child(space) -> tuple[int, ...]:
  """The unit's child: dense ReLU on the first half of the edges (rounded
  up), skip on the others; ``(2, 2, 2, 1, 1, 1)`` for the 6-edge cell."""
  ops = space.choices[0].options
  half = -(-len(space.choices) // 2)
  return tuple(ops.index('dense_relu') if e < half else ops.index('skip')
               for e in range(len(space.choices)))


def costs(config: OneShotConfig, space, split, budget) -> dict:
  """FLOPs of the pieces of a search, in units of one reference child's training.

  Returns:
    ``{'child_step_flops', 'step_units', 'derive_units'}``: one search step
    and ENAS' derivation, as fractions of a child's training.
  """
  import jax
  import jax.numpy as jnp
  import optax
  from l2l import search
  x, y = split['train'][0][:config.batch_size], split['train'][1][:config.batch_size]
  child = search.build(space, reference_child(space))
  # Shapes only: lowering needs no values (and eager inits compile op by op).
  params = jax.eval_shape(child.init, jax.random.key(0), x[:1])
  adam = optax.adam(budget.learning_rate)

  def child_step(params, opt_state, x, y):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(child.apply(p, x), y).mean()
    grads = jax.grad(loss)(params)
    updates, opt_state = adam.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  step_flops = _flops(child_step, params, jax.eval_shape(adam.init, params), x, y)
  unit = step_flops * budget.steps
  forward = _flops(child.apply, params, x)  # One batch of config.batch_size.
  _, init_params, oneshot, controller = make(config, space, x[:1])
  state = jax.eval_shape(lambda: oneshot.init(jax.random.key(0), init_params(jax.random.key(1))))
  if config.strategy == 'darts':
    step = _flops(oneshot.step, state, jax.random.key(0), (x, y), (x, y))
    derive_flops = 0.0
  else:
    def control(c_state, key):
      configs, c_state = controller.ask(key, c_state)
      sampled, _ = controller.ask(key, c_state)  # The weight step's child.
      return controller.tell(c_state, configs, jnp.zeros(configs.shape[0])), sampled
    step = (step_flops + controller.batch_size * forward
            + _flops(control, state.controller, jax.random.key(0)))
    val_batches = split['val'][1].shape[0] / config.batch_size
    derive_flops = config.num_samples * (forward * val_batches + _flops(
        lambda s, k: controller.ask(k, s)[0], state.controller, jax.random.key(0))
        / controller.batch_size)
  return {'child_step_flops': step_flops, 'step_units': step / unit,
          'derive_units': derive_flops / unit}


def total_units(config: OneShotConfig, cost: dict, steps_run: int) -> float:
  """Search steps run, derivation and retraining, in child trainings."""
  retrained = config.top_k if config.strategy == 'enas' else 1
  return steps_run * cost['step_units'] + cost['derive_units'] + retrained


def steps_for_budget(config: OneShotConfig, cost: dict, units: float) -> int:
  """The most search steps (a multiple of ``check_every``) within ``units``."""
  spare = units - total_units(config, cost, 0)
  steps = int(spare / cost['step_units']) // config.check_every * config.check_every
  if steps < config.check_every:
    raise ValueError(f'{units} units leave no room for {config.check_every} search steps.')
  return steps


def _write_json(path: pathlib.Path, obj) -> None:
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_text(json.dumps(obj, indent=1) + '\n')
  os.replace(tmp, path)


def _timed(fn, *args):
  """Seconds of a call after compiling it (the first call), and its result."""
  import jax
  jax.block_until_ready(fn(*args))
  start = time.time()
  result = jax.block_until_ready(fn(*args))
  return time.time() - start, result


def child_seconds(space, split, budget, num: int = 1) -> float:
  """Wall seconds per child of training ``num`` reference children in one
  vmapped call (compiled first), to compare with a search vmapped over
  ``num`` seeds."""
  import jax.numpy as jnp
  from tasks import nas
  fn = nas.tabular_train_fn(space, split, budget, pairs=True)
  configs = np.repeat(np.asarray([reference_child(space)], np.int32), num, 0)
  return _timed(fn, configs, jnp.arange(num, dtype=jnp.int32))[0] / num


def checkpoint_records(config: OneShotConfig, space, metrics, cost: dict) -> list[dict]:
  """One journal line per checkpoint: losses, operation probabilities, the
  discretised cell and its parameter-free share, the cost so far."""
  from l2l import search
  probs = trajectory(config, space, metrics)
  score = 'val_loss' if config.strategy == 'darts' else 'reward'
  window = lambda name: np.asarray(metrics[name]).reshape(-1, config.check_every).mean(1)
  losses, scores = window('train_loss'), window(score)
  records = []
  for i, p in enumerate(probs):
    cell = np.asarray(search.discretise(space, p, ('none',) if config.strategy == 'darts' else ()))
    records.append({'kind': 'checkpoint', 'step': (i + 1) * config.check_every,
                    'train_loss': float(losses[i]), score: float(scores[i]),
                    'op_probabilities': np.round(p, 4).tolist(),
                    'config': space.config_string(cell),
                    'parameter_free_share': float(search.parameter_free_share(space, cell)),
                    'cost_child_units': (i + 1) * config.check_every * cost['step_units']})
  return records


@functools.lru_cache(maxsize=4)
def _prepared(config: OneShotConfig, space, dataset: str, budget):
  """Data, costs and the jitted search, once per setting in a process (a
  resumed run compiles nothing again)."""
  import jax
  from tasks import nas
  split = jax.tree.map(jax.numpy.asarray, nas.splits(dataset, budget.val_size))
  return (split, costs(config, space, split, budget),
          search_fn(config, space, split))


RUN = 'run.json'  # What a one-shot search was run with; --resume must match it.


class ResumeMismatch(ValueError):
  """A resumed one-shot search was given other flags than its run's."""


def _run_record(config: OneShotConfig, args) -> dict:
  """Everything a one-shot search's result depends on."""
  return {'settings': dataclasses.asdict(config), 'seed': args.seed, 'space': args.space,
          'space_options': list(args.space_option), 'benchmark': args.benchmark,
          'table_dir': args.table_dir, 'dataset': args.dataset, 'steps': args.steps,
          'train_batch': args.train_batch, 'optimizer': args.optimizer}


def _check_run(path: pathlib.Path, record: dict, resume: bool) -> None:
  """Writes ``record`` to ``path``; on resume, first checks it against the
  one there.

  Raises:
    ResumeMismatch: a resumed search's flags differ from the journal's run
      (the message names each difference).
  """
  if resume and path.exists():
    before = json.loads(path.read_text())
    # The search's settings by their flag names where one clashes.
    flat = lambda r: {**{k: v for k, v in r.items() if k != 'settings'},
                      **{{'steps': 'search_steps'}.get(k, k): v for k, v in r['settings'].items()}}
    ours, theirs = flat(record), flat(before)
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if differ:
      raise ResumeMismatch(f'{path.parent} holds a search run with other flags; resume with '
                       'the same flags or use a new --out: ' + ', '.join(
                           f'{k} was {theirs.get(k)!r}, now {ours.get(k)!r}' for k in differ))
  _write_json(path, record)


def run(config: OneShotConfig, args, space, evaluate, out: pathlib.Path) -> dict:
  """The command line's one-shot search: search, derive, retrain, write
  ``journal.jsonl``, ``summary.json`` and the PNGs; returns the summary.

  Raises:
    FileExistsError: the journal exists and ``args.resume`` is false.
    ResumeMismatch: ``args.resume`` with other flags than the journal's run.
  """
  import jax
  from l2l import search
  from meta_train import search_plots
  from tasks import nas
  journal = search.Journal(out / 'journal.jsonl')
  old = journal.read()
  if old and not args.resume:
    raise FileExistsError(f'{journal.path} already has {len(old)} records; pass --resume '
                          'to reuse its retrained children, or use a new folder.')
  if args.resume:  # as python -m meta_train --resume says
    print(f'resuming {out}: {len(old)} journal records' if old else
          f'--resume: no journal in {out}; starting a new search', file=sys.stderr)
  _check_run(out / RUN, _run_record(config, args), resume=bool(old))
  budget = nas.Budget(steps=args.steps, batch_size=args.train_batch)
  split, cost, fn = _prepared(config, space, args.dataset, budget)
  seconds, (state, metrics) = _timed(fn, args.seed)
  metrics = jax.device_get(metrics)
  checkpoints = checkpoint_records(config, space, metrics, cost)
  if config.strategy == 'darts':
    cell, stop = darts_result(config, space, trajectory(config, space, metrics))
    cells, steps_run = cell[None], (stop + 1) * config.check_every
  else:
    cells, steps_run = derive(config, space, split, state, args.seed), config.steps
  done = {r['trial']: r for r in old if r.get('kind') == 'retrain'}
  if not old:
    for record in checkpoints:
      journal.append(record)
  trials = [{'trial': i, 'config': space.config_string(c), 'indices': c.tolist(),
             'seed': search.trial_seed(args.seed, i)} for i, c in enumerate(cells)]
  todo = [t for t in trials if t['trial'] not in done]
  for trial, metrics_i in zip(todo, evaluate(todo) if todo else []):
    done[trial['trial']] = dict(trial, kind='retrain', **{k: float(v) for k, v in metrics_i.items()})
    journal.append(done[trial['trial']])
  records = [done[t['trial']] for t in trials]
  best = max(records, key=lambda r: (r['fitness'], -r['trial']))
  units = total_units(config, cost, steps_run)
  summary = {'best_config': best['config'], 'best_trial': best['trial'],
             'best_fitness': best['fitness'], 'best_test_accuracy': best.get('test_accuracy'),
             'trials': len(records), 'space': args.space, 'strategy': args.strategy,
             'method': config.label, 'seed': args.seed, 'benchmark': args.benchmark,
             'search_steps': steps_run, 'cost_child_units': units,
             'cost_breakdown': {'search': steps_run * cost['step_units'],
                                'derive': cost['derive_units'],
                                'retrain': len(records)},
             'parameter_free_share': float(search.parameter_free_share(
                 space, np.asarray(best['indices']))),
             'search_seconds': round(seconds, 2),
             'settings': dataclasses.asdict(config)}
  _write_json(out / 'summary.json', summary)
  search_plots.best_so_far(records, out / 'best_so_far.png')
  score = 'val_loss' if config.strategy == 'darts' else 'reward'
  search_plots.rewards(
      [c[score] for c in checkpoints], config.label, out / 'reward.png',
      steps=[c['step'] for c in checkpoints], xlabel='search step',
      ylabel=('validation loss of the supernet (mean over the last '
              f'{config.check_every} steps)' if score == 'val_loss' else
              f'mean reward of the sampled children (last {config.check_every} steps)'))
  search_plots.op_probabilities(space, trajectory(config, space, metrics),
                                config.check_every, config.label, out / 'op_probabilities.png')
  search_plots.best_cell(space, space.parse(summary['best_config']), out / 'best_cell.png')
  return summary
