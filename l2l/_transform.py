"""The learned optimizer as an optax gradient transformation."""

import functools
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2l import _checkpoint
from l2l import _network
from l2l import _rules
from l2l._base import Array, MetaParams, Params, Updates

_SHIPPED = os.path.join(os.path.dirname(__file__), 'default')
# Named configurations shipped inside the package.
NAMED = {'default': os.path.join(_SHIPPED, 'lstm_optimizer.npz'),
         'paper2016': os.path.join(_SHIPPED, 'paper2016.npz')}
DEFAULT_META_PARAMS = NAMED['default']
PAPER_CONFIG = {'preprocess_p': 10.0, 'output_scale': 0.1}


class LSTMOptimizerState(NamedTuple):
  """State of :func:`lstm_optimizer`.

  Attributes:
    count: int32 number of updates taken.
    cell: per-coordinate LSTM cell state: one tree like the params per
      layer, whose leaves have shape ``param.shape + (hidden_size,)``.
    hidden: per-coordinate LSTM hidden state, shaped like ``cell``.
    moments: the design's gradient accumulators, each a tree like the
      params (empty for the paper design; second moment and momenta at
      decays 0.5, 0.9, 0.99 for the adaptive one, and also the previous
      direction for the hyper one, or the average of past directions and
      the gap ``z - x`` between the schedule-free sequences for the free
      one).
    scale: per parameter tensor, in a tree like the params: the hyper
      design's float32 log step offset; the free design's ``[offset, sum of
      averaging weights, largest step so far, running mean square of the
      gradient]`` (the spike cut's); zeros, unused, for the other designs.
  """
  count: Array
  cell: Any
  hidden: Any
  moments: Any = ()
  scale: Any = ()


@functools.cache
def _load(path: str) -> tuple[MetaParams, dict]:
  meta_params, manifest = _checkpoint.load_meta_params(path)
  return meta_params, manifest['config']


def _resolve(meta_params) -> tuple[MetaParams, dict]:
  """Meta-params and stored config from a pytree, a path or a name."""
  if meta_params is None or isinstance(meta_params, (str, os.PathLike)):
    path = NAMED.get(meta_params or 'default', meta_params)
    return _load(os.fspath(path))
  return meta_params, {}


def architecture(meta_params: MetaParams) -> dict[str, Any]:
  """Returns ``{'design', 'hidden_size', 'num_layers'}`` of the meta-params."""
  try:
    nominal = meta_params.get('nominal', {})
    design = ('paper' if not nominal else
              'free' if 'interpolation' in nominal else
              'hyper' if 'log_kappa' in nominal else 'adaptive')
    num_inputs, num_outputs = _network.DESIGNS[design]
    layers = meta_params['params']
    num_layers = sum(1 for k in layers if k.endswith('_h'))
    hidden_size = layers['output']['kernel'].shape[0]
    if num_layers < 1:
      raise ValueError('no LSTM layers (lstm_0_h, lstm_1_h, ...)')
    for i in range(num_layers):
      fan_in = num_inputs if i == 0 else hidden_size
      shapes = [layers[f'lstm_{i}_{k}'].shape for k in 'xhb']
      if shapes != [(fan_in, 4 * hidden_size), (hidden_size, 4 * hidden_size),
                    (4 * hidden_size,)]:
        raise ValueError(f'layer {i} has weight shapes {shapes}')
    if layers['output']['kernel'].shape != (hidden_size, num_outputs):
      raise ValueError('the read-out does not match the design')
  except (KeyError, TypeError, AttributeError, ValueError) as e:
    raise ValueError(
        'meta_params do not describe a coordinatewise LSTM made by '
        f'l2l.init_meta_params: {e!r}') from e
  return {'design': design, 'hidden_size': int(hidden_size),
          'num_layers': num_layers}


def _check_structure(updates: Updates, state: LSTMOptimizerState) -> None:
  """Raises if the gradient tree differs from the params given to init."""
  cell = state.cell[0]
  if jax.tree.structure(updates) != jax.tree.structure(cell):
    raise ValueError(
        'lstm_optimizer: the gradient tree '
        f'{jax.tree.structure(updates)} differs from the params tree given '
        f'to init {jax.tree.structure(cell)}')
  paths = jax.tree_util.tree_flatten_with_path(updates)[0]
  for (path, g), c in zip(paths, jax.tree.leaves(cell)):
    if jnp.shape(g) != c.shape[:-1]:
      raise ValueError(
          f'lstm_optimizer: gradient {jax.tree_util.keystr(path)} has shape '
          f'{jnp.shape(g)} but init saw a parameter of shape {c.shape[:-1]}')


def _gather(trees, tail: tuple[int, ...]) -> tuple[Array, ...]:
  """Concatenates each tree's leaves into one float32 ``[N, *tail]`` batch."""
  return tuple(jnp.concatenate([
      jnp.reshape(x, (-1,) + tail).astype(jnp.float32)
      for x in jax.tree.leaves(tree)]) for tree in trees)


def _scatter(flats, grads, treedef, tail: tuple[int, ...], dtypes):
  """Splits each ``[N, *tail]`` batch back into trees shaped like ``grads``."""
  splits = np.cumsum([np.size(g) for g in grads])[:-1]
  return tuple(treedef.unflatten([
      jnp.reshape(part, jnp.shape(g) + tail).astype(dtype)
      for part, g, dtype in zip(jnp.split(flat, splits), grads, dtypes)])
               for flat in flats)


def lstm_optimizer(
    meta_params: MetaParams | str | os.PathLike | None = None,
    *,
    preprocess_p: float | None = None,
    output_scale: float | None = None,
    state_dtype: Any = jnp.float32,
) -> optax.GradientTransformationExtraArgs:
  r"""A coordinatewise LSTM learned optimizer.

  Every coordinate :math:`i` of every parameter runs the same LSTM
  :math:`m_\phi` with its own recurrent state, and
  :math:`\theta_{t+1}^i = \theta_t^i + u_t^i`. Two designs exist, told apart
  by the meta-parameters:

  - ``'paper'`` (Andrychowicz et al., 2016):
    :math:`u_t^i = m_\phi(\mathrm{pre}(g_t^i))` with the log-magnitude and
    sign preprocessing :func:`l2l.preprocess_gradients`.
  - ``'adaptive'``: Adam-normalised gradient and momenta at three
    timescales in, a per-coordinate step-size factor and a direction
    correction out, around a nominal Adam step (see ``l2l._rules.adaptive``).
  - ``'hyper'``: the adaptive inputs plus a hypergradient signal in, the
    same outputs around a nominal NAdam step whose size is adapted online
    for each tensor (see ``l2l._rules.hyper``).
  - ``'free'``: the hyper inputs and outputs around schedule-free Adam
    (Defazio et al., 2024) with steps adapted online for each tensor (see
    ``l2l._rules.free``); the default.

  The read-out is multiplied by ``output_scale``. All coordinates of all
  leaves are processed as one batch. The LSTM runs in float32; the state is
  stored in ``state_dtype`` and updates come out in the dtype of the params
  (or of the gradients when ``params`` is not given). A non-finite gradient
  coordinate gives a non-finite update and state for that coordinate only
  (the hyper design's per-tensor step offset ignores it): wrap
  the optimizer in ``optax.apply_if_finite`` to skip such steps.

  Args:
    meta_params: the weights (a pytree from :func:`l2l.init_meta_params` or
      meta-training, traced or concrete); a path to a file written by
      :func:`l2l.save_meta_params`; the name of a configuration shipped with
      the package (``'default'``, ``'paper2016'``); or ``None`` for
      ``'default'``. The design and sizes are read off the meta-params.
    preprocess_p: exponent ``p`` of the paper design's preprocessing;
      ``None`` takes the value stored with loaded meta-params, else 10.
    output_scale: factor on the read-out; ``None`` as for ``preprocess_p``,
      else 0.1.
    state_dtype: dtype of the stored LSTM state and moments.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` does not need
    ``params``.

  Example:
    >>> import jax.numpy as jnp, optax, l2l
    >>> opt = optax.chain(optax.clip_by_global_norm(1.0), l2l.lstm_optimizer())
    >>> params = {'w': jnp.ones(3)}
    >>> state = opt.init(params)
    >>> updates, state = opt.update({'w': jnp.ones(3)}, state)

  References:
    Andrychowicz et al., 2016, "Learning to learn by gradient descent by
    gradient descent", https://arxiv.org/abs/1606.04474.
    Lv et al., 2017, "Learning gradient descent: better generalization and
    longer horizons", https://arxiv.org/abs/1703.03633.
    Wichrowska et al., 2017, "Learned optimizers that scale and
    generalize", https://arxiv.org/abs/1703.04813.
    Harrison et al., 2022, "A closer look at learned optimization:
    stability, robustness, and inductive biases",
    https://arxiv.org/abs/2209.11208.
  """
  config = dict(PAPER_CONFIG)
  meta_params, stored = _resolve(meta_params)
  config.update({k: stored[k] for k in PAPER_CONFIG if k in stored})
  if preprocess_p is not None:
    config['preprocess_p'] = preprocess_p
  if output_scale is not None:
    config['output_scale'] = output_scale
  arch = architecture(meta_params)
  rule = _rules.RULES[arch['design']]
  network = _network.CoordinatewiseLSTM(
      hidden_size=arch['hidden_size'], num_layers=arch['num_layers'],
      num_outputs=_network.DESIGNS[arch['design']][1],
      output_scale=config['output_scale'])
  tail = (arch['hidden_size'],)

  def init_fn(params: Params) -> LSTMOptimizerState:
    zeros = lambda shape_tail: lambda p: jnp.zeros(
        jnp.shape(p) + shape_tail, state_dtype)
    trees = lambda n, shape_tail: tuple(
        jax.tree.map(zeros(shape_tail), params) for _ in range(n))
    return LSTMOptimizerState(
        jnp.zeros([], jnp.int32), trees(arch['num_layers'], tail),
        trees(arch['num_layers'], tail), trees(rule.num_moments, ()),
        jax.tree.map(lambda p: jnp.zeros(rule.scale_shape, jnp.float32),
                     params))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    _check_structure(updates, state)
    grads, treedef = jax.tree.flatten(updates)
    count = optax.safe_increment(state.count)
    if not grads:
      return updates, state._replace(count=count)
    step, carry, moments, scale = rule.apply(
        network, meta_params, _gather([updates], ())[0],
        _network.LSTMCarry(_gather(state.cell, tail),
                           _gather(state.hidden, tail)),
        _gather(state.moments, ()), count,
        jnp.stack(jax.tree.leaves(state.scale)),
        tuple(int(np.size(g)) for g in grads),
        config['preprocess_p'])
    out_dtypes = [x.dtype for x in (
        jax.tree.leaves(params) if params is not None else grads)]
    scatter = lambda flats, tail, dtypes: _scatter(
        flats, grads, treedef, tail, dtypes)
    state_dtypes = [state_dtype] * len(grads)
    return scatter([step], (), out_dtypes)[0], LSTMOptimizerState(
        count, scatter(carry.cell, tail, state_dtypes),
        scatter(carry.hidden, tail, state_dtypes),
        scatter(moments, (), state_dtypes), treedef.unflatten(list(scale)))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def averaged_params(params: Params, state: LSTMOptimizerState,
                    meta_params: MetaParams | str | os.PathLike | None = None
                    ) -> Params:
  r"""The schedule-free average :math:`x` of a ``free`` design optimizer.

  The params of a ``free`` optimizer are the interpolation
  :math:`y = (1 - \beta) z + \beta x`, where gradients are evaluated; the
  average :math:`x = y - (1 - \beta)(z - x)` is what schedule-free methods
  evaluate and export (compare ``optax.contrib.schedule_free_eval_params``).

  Args:
    params: the current params :math:`y`.
    state: the :class:`LSTMOptimizerState` of the optimizer that produced
      them (inside ``optax.chain``, its entry of the chain's state).
    meta_params: the optimizer's meta-params, path or name, as given to
      :func:`lstm_optimizer` (``None`` for ``'default'``).

  Returns:
    :math:`x`, a tree like ``params`` in the params' dtypes.

  Raises:
    ValueError: if ``state`` is not an ``LSTMOptimizerState`` or the
      meta-params are not of the ``free`` design.
  """
  if not isinstance(state, LSTMOptimizerState):
    raise ValueError(
        'averaged_params needs the LSTMOptimizerState of lstm_optimizer, '
        f'got {type(state).__name__} (inside optax.chain, pass its entry)')
  meta_params, _ = _resolve(meta_params)
  design = architecture(meta_params)['design']
  if design != 'free':
    raise ValueError('averaged_params applies to the free design only; '
                     f'these meta-params are of the {design!r} design, whose '
                     'params are already the iterate to use')
  beta = _rules.interpolation(meta_params)
  return jax.tree.map(lambda p, gap: (p - (1 - beta) * gap).astype(p.dtype),
                      params, state.moments[-1])
