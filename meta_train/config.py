"""Configuration of a meta-training run (a plain dataclass)."""

import argparse
import dataclasses

import numpy as np

import l2l
from l2l import _fit
import tasks


# The choices l2l.meta_train takes too.
ESTIMATORS = _fit.ESTIMATORS
SUBSETS = _fit.SUBSETS
WEIGHTINGS = ('uniform', 'linear')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """What a meta-training run does.

  Attributes:
    family: task family name (see ``tasks.get_family``), several joined
      by ``+`` for a mixture, or the ``package.module:object`` spec of a
      user's task or family (``--task``); the held-out families
      (``tasks.heldout``, ``tasks.unseen``) are meant for evaluation only.
    meta_steps: meta-gradient steps (truncations) to take; 0 writes the
      initial meta-parameters (for the adaptive and hyper designs, the
      nominal rule with a zero read-out).
    num_tasks: problems per meta-step, trained in parallel with ``vmap``.
    unroll_length: inner steps per truncation, ``K``.
    episode_length: inner steps before a fresh task is sampled, ``T``; a
      multiple of ``unroll_length``.
    meta_lr: Adam learning rate of the meta-optimizer.
    clip_norm: global-norm clip of the meta-gradient.
    log_losses: meta-train on the sum of log losses instead of losses.
    loss_weighting: weights of the inner losses along an unroll:
      ``'uniform'`` (the paper's sum) or ``'linear'`` (weight proportional
      to the step, ``2t/(K+1)``, so that late losses count most, closer to
      judging by the final loss).
    remat_chunk: 0, or rematerialise each BPTT unroll in chunks of this
      many steps (``jax.checkpoint``; ``l2l.unroll``), which bounds the
      memory of long unrolls at the cost of about one more forward pass.
    second_order: keep second derivatives through the optimizee gradient
      (``estimator='bptt'`` only).
    estimator: ``'bptt'`` (truncated backpropagation through the unroll,
      ``l2l.meta_step``), ``'es'`` (antithetic evolution strategies from
      forward unrolls, ``l2l.es_meta_step``) or ``'pes'`` (persistent
      evolution strategies, unbiased across the truncations of an episode:
      ``num_tasks`` antithetic pairs, each with its own two trajectories,
      ``l2l.pes_meta_step``).
    es_pairs: antithetic perturbation pairs per ES meta-step (not PES).
    es_sigma: standard deviation of the ES and PES perturbations.
    es_fitness: ``'difference'`` (loss differences) or ``'rank'`` (centred
      ranks of the losses, so that every family of a mixture weighs the
      same whatever its loss scale); see ``l2l.es_meta_step``.
    train_only: ``'all'`` meta-parameters, or ``'readout'``: only the
      nominal constants and the LSTM's read-out layer (the LSTM layers keep
      their random initial weights as fixed recurrent features), which
      makes the ES estimate far less noisy; or ``'output'``: the read-out
      layer alone (the nominal constants stay as initialised); or
      ``'learned'``: the networks (LSTM and MLP), not the nominal
      constants, so that the nominal rule stays the hand-designed one; or
      ``'scheduler'``: the LSTM alone (for the compact design, its
      per-tensor LSTM, whose step offset is then the only learned output;
      the MLP stays off); or ``'step_sizes'``: as ``'learned'``, but the
      compact MLP's direction output stays zero, so that the learned parts
      set per-tensor and per-coordinate step sizes along the nominal
      rule's direction.
      Step counts (the free design's second-moment warm-up) are never
      trained
      (``l2l.meta_step`` and ``l2l.es_meta_step`` keep them).
    design: the learned optimizer's design (a key of ``l2l.DESIGNS``):
      ``'paper'`` (Andrychowicz et al. 2016), ``'adaptive'`` (Adam-normalised
      momenta and a nominal Adam term), ``'hyper'`` (those inputs plus a
      hypergradient signal, around NAdam with online-adapted per-tensor
      steps), ``'free'`` (the same around schedule-free Adam) or
      ``'compact'`` (a per-parameter MLP and a per-tensor LSTM around the
      free design's nominal rule; with ``--hidden-size 4 --num-layers 1``
      the shipped default's); see ``l2l.lstm_optimizer``.
    hidden_size: LSTM units per layer.
    num_layers: stacked LSTM layers.
    preprocess_p: gradient preprocessing exponent ``p``.
    output_scale: factor on the LSTM's read-out.
    augment: meta-train on augmented tasks (``tasks.augment``): each task
      draws log-uniform per-tensor parameter scales in [0.1, 10] and a loss
      scale in [0.01, 100] (RNNprop, Lv et al. 2017; Celo, Moudgil et al.
      2025).
    data_subsets: 0 (off), or the smallest subset size: each problem of a
      data-set family trains on a random subset of its split, of
      log-uniform size in ``[data_subsets, N]`` (``tasks.SubsetFamily``),
      so that a fixed horizon spans several epoch counts; validation
      problems are drawn the same way. In a mixture, only the member
      families of data sets train on subsets.
    random_horizons: draw each episode's length, in truncations, uniformly
      from ``1 .. 2 E - 1`` (``E = episode_length / unroll_length``, the
      mean), instead of a fixed ``E``.
    seed: seeds meta-parameters, task sampling and minibatches.
    checkpoint_every: meta-steps between checkpoints.
    validate_every: 0 (off), or meta-steps between validations on held-out
      problems of the family (``meta_train.validation``): the run then
      writes its validation curve and returns the meta-parameters of the
      best validation score (step 0, the initial ones, included).
    validate_problems: validation problems.
    validate_steps: inner steps of each validation run (0: the episode
      length).
  """
  family: str = 'quadratic'
  meta_steps: int = 300
  num_tasks: int = 8
  unroll_length: int = 100
  episode_length: int = 100
  meta_lr: float = 3e-3
  clip_norm: float = 1.0
  log_losses: bool = True
  loss_weighting: str = 'uniform'
  second_order: bool = False
  remat_chunk: int = 0
  estimator: str = 'es'
  es_pairs: int = 8
  es_sigma: float = 0.03
  es_fitness: str = 'difference'
  train_only: str = 'readout'
  design: str = 'free'
  hidden_size: int = 20
  num_layers: int = 2
  preprocess_p: float = 10.0
  output_scale: float = 0.1
  augment: bool = False
  data_subsets: int = 0
  random_horizons: bool = False
  seed: int = 0
  checkpoint_every: int = 200
  validate_every: int = 0
  validate_problems: int = 8
  validate_steps: int = 0

  def __post_init__(self):
    if self.meta_steps < 0:
      raise ValueError(f'meta_steps must be at least 0, got {self.meta_steps}')
    positive = ('num_tasks', 'unroll_length', 'episode_length',
                'hidden_size', 'num_layers', 'checkpoint_every', 'es_pairs',
                'validate_problems')
    for name in positive:
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be at least 1, got {getattr(self, name)}')
    if self.episode_length % self.unroll_length:
      raise ValueError(
          f'episode_length ({self.episode_length}) must be a multiple of '
          f'unroll_length ({self.unroll_length})')
    if self.design not in l2l.DESIGNS:
      raise ValueError(f'design must be one of {sorted(l2l.DESIGNS)}, got '
                       f'{self.design!r}')
    if self.train_only not in SUBSETS:
      raise ValueError(f'train_only must be one of {SUBSETS}, got '
                       f'{self.train_only!r}')
    if self.loss_weighting not in WEIGHTINGS:
      raise ValueError(f'loss_weighting must be one of {WEIGHTINGS}, got '
                       f'{self.loss_weighting!r}')
    if self.estimator not in ESTIMATORS:
      raise ValueError(f'estimator must be one of {ESTIMATORS}, got '
                       f'{self.estimator!r}')
    if self.es_fitness not in l2l.ES_FITNESS:
      raise ValueError(f'es_fitness must be one of {l2l.ES_FITNESS}, got '
                       f'{self.es_fitness!r}')
    if self.estimator == 'pes' and self.es_fitness != 'difference':
      raise ValueError("es_fitness 'rank' applies to estimator='es' only")
    if self.second_order and self.estimator != 'bptt':
      raise ValueError("second_order applies to estimator='bptt' only")
    if self.remat_chunk and self.estimator != 'bptt':
      raise ValueError("remat_chunk applies to estimator='bptt' only")
    if self.remat_chunk < 0 or (
        self.remat_chunk and self.unroll_length % self.remat_chunk):
      raise ValueError(f'remat_chunk must be 0 (off) or a divisor of '
                       f'unroll_length {self.unroll_length}, got '
                       f'{self.remat_chunk}')
    for name in ('validate_every', 'validate_steps', 'data_subsets'):
      if getattr(self, name) < 0:
        raise ValueError(f'{name} must be at least 0 (0: off or default), '
                         f'got {getattr(self, name)}')
    for name in ('meta_lr', 'clip_norm', 'es_sigma'):
      if not getattr(self, name) > 0:
        raise ValueError(f'{name} must be positive, got {getattr(self, name)}')

  @property
  def truncations_per_episode(self) -> int:
    return self.episode_length // self.unroll_length

  @property
  def loss_weights(self) -> np.ndarray:
    """``[K]`` weights of the inner losses of one unroll (mean 1)."""
    steps = np.arange(1, self.unroll_length + 1, dtype=np.float32)
    if self.loss_weighting == 'linear':
      return 2 * steps / (self.unroll_length + 1)
    return np.ones_like(steps)

  @property
  def optimizer_kwargs(self) -> dict:
    """Keyword arguments of ``l2l.lstm_optimizer`` besides meta-params."""
    return {'preprocess_p': self.preprocess_p,
            'output_scale': self.output_scale}

  @property
  def architecture(self) -> dict:
    return {'design': self.design, 'hidden_size': self.hidden_size,
            'num_layers': self.num_layers}


def field_help() -> dict[str, str]:
  """Each :class:`TrainConfig` field's entry of its docstring's Attributes
  section, as one line of plain text (the command line's help)."""
  doc = TrainConfig.__doc__.split('Attributes:\n', 1)[1]
  entries, name = {}, None
  for line in doc.splitlines():
    head, sep, text = line.strip().partition(': ')
    if line.startswith('    ') and not line.startswith('     ') and sep:
      name, entries[head] = head, text
    elif name and line.strip():
      entries[name] += ' ' + line.strip()
  return {name: text.replace('``', '').replace('%', '%%')
          for name, text in entries.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds one ``--flag`` per :class:`TrainConfig` field, with the field's
  docstring as help, and ``--task``, which sets ``family`` to a user's spec
  (exclusive with ``--family``)."""
  helps = field_help()
  for field in dataclasses.fields(TrainConfig):
    flag = '--' + field.name.replace('_', '-')
    text = f'{helps[field.name].rstrip(".")} (default: {field.default})'
    if field.name == 'family':
      # No default here: argparse misses the clash with --task when
      # --family repeats its default value.
      group = parser.add_mutually_exclusive_group()
      group.add_argument(flag, help=f'{text}. Registered: '
                         f'{", ".join(tasks.FAMILIES)}')
      group.add_argument('--task', dest='family', type=task_spec,
                         default=argparse.SUPPRESS, metavar='MODULE:OBJECT',
                         help="your own Task or TaskFamily, or a class or "
                         "function returning one, e.g. 'mypkg.tasks:MY_TASK'")
    elif field.type in (bool, 'bool'):
      parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                          default=field.default, help=text)
    else:
      kind = {'int': int, 'float': float, 'str': str}.get(
          field.type if isinstance(field.type, str) else field.type.__name__)
      choices = {'estimator': ESTIMATORS, 'train_only': SUBSETS,
                 'loss_weighting': WEIGHTINGS, 'design': tuple(l2l.DESIGNS),
                 'es_fitness': l2l.ES_FITNESS}.get(field.name)
      parser.add_argument(flag, type=kind, default=field.default,
                          choices=choices, help=text)


def task_spec(value: str) -> str:
  """Checks the form of a ``--task`` spec; the import happens later."""
  module, _, attribute = value.partition(':')
  if not module or not attribute:
    raise argparse.ArgumentTypeError(
        f"expected 'package.module:object', got {value!r}")
  return value


def from_arguments(args: argparse.Namespace) -> TrainConfig:
  """The config of parsed flags; a flag left at None takes the default."""
  values = {f.name: getattr(args, f.name, None)
            for f in dataclasses.fields(TrainConfig)}
  return TrainConfig(**{k: v for k, v in values.items() if v is not None})
