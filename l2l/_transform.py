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
from l2l import _preprocess
from l2l._base import Array, MetaParams, Params, Updates

DEFAULT_META_PARAMS = os.path.join(
    os.path.dirname(__file__), 'default', 'lstm_optimizer.npz')
PAPER_CONFIG = {'preprocess_p': 10.0, 'output_scale': 0.1}


class LSTMOptimizerState(NamedTuple):
  """State of :func:`lstm_optimizer`.

  Attributes:
    count: int32 number of updates taken.
    cell: per-coordinate LSTM cell state: one tree like the params per
      layer, whose leaves have shape ``param.shape + (hidden_size,)``.
    hidden: per-coordinate LSTM hidden state, shaped like ``cell``.
  """
  count: Array
  cell: Any
  hidden: Any


@functools.cache
def _default_meta_params() -> tuple[MetaParams, dict]:
  meta_params, manifest = _checkpoint.load_meta_params(DEFAULT_META_PARAMS)
  return meta_params, manifest['config']


def architecture(meta_params: MetaParams) -> dict[str, int]:
  """Returns ``{'hidden_size', 'num_layers'}`` read off the meta-params."""
  try:
    layers = meta_params['params']
    num_layers = sum(1 for k in layers if k.endswith('_h'))
    hidden_size = layers['output']['kernel'].shape[0]
    if num_layers < 1:
      raise ValueError('no LSTM layers (lstm_0_h, lstm_1_h, ...)')
    for i in range(num_layers):
      fan_in = _network.NUM_INPUTS if i == 0 else hidden_size
      shapes = [layers[f'lstm_{i}_{k}'].shape for k in 'xhb']
      if shapes != [(fan_in, 4 * hidden_size), (hidden_size, 4 * hidden_size),
                    (4 * hidden_size,)]:
        raise ValueError(f'layer {i} has weight shapes {shapes}')
  except (KeyError, TypeError, AttributeError, ValueError) as e:
    raise ValueError(
        'meta_params do not describe a coordinatewise LSTM made by '
        f'l2l.init_meta_params: {e!r}') from e
  return {'hidden_size': int(hidden_size), 'num_layers': num_layers}


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


def lstm_optimizer(
    meta_params: MetaParams | str | os.PathLike | None = None,
    *,
    preprocess_p: float | None = None,
    output_scale: float | None = None,
    state_dtype: Any = jnp.float32,
) -> optax.GradientTransformationExtraArgs:
  r"""A coordinatewise LSTM learned optimizer (Andrychowicz et al., 2016).

  Every coordinate :math:`i` of every parameter runs the same LSTM
  :math:`m_\phi` on its own gradient, with its own recurrent state:

  .. math::
    (u_t^i, h_{t+1}^i) = m_\phi(\mathrm{pre}(g_t^i), h_t^i), \qquad
    \theta_{t+1}^i = \theta_t^i + u_t^i

  where :math:`\mathrm{pre}` is :func:`l2l.preprocess_gradients` and the
  LSTM's linear read-out is multiplied by ``output_scale``. All coordinates
  of all leaves are processed as one batch. The LSTM runs in float32; the
  state is stored in ``state_dtype`` and updates come out in the dtype of
  the params (or of the gradients when ``params`` is not given). A
  non-finite gradient coordinate gives a non-finite update and state for
  that coordinate: wrap the optimizer in ``optax.apply_if_finite`` to skip
  such steps.

  Args:
    meta_params: the LSTM weights (a pytree from :func:`l2l.init_meta_params`
      or meta-training, traced or concrete), a path to a file written by
      :func:`l2l.save_meta_params`, or ``None`` for the default shipped with
      the package. The architecture is read off their shapes.
    preprocess_p: exponent ``p`` of the gradient preprocessing; ``None``
      takes the value stored with the loaded meta-params, else 10.
    output_scale: factor on the read-out; ``None`` as for ``preprocess_p``,
      else 0.1.
    state_dtype: dtype of the stored LSTM state.

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
  """
  config = dict(PAPER_CONFIG)
  if meta_params is None:
    meta_params, stored = _default_meta_params()
    config.update({k: stored[k] for k in PAPER_CONFIG if k in stored})
  elif isinstance(meta_params, (str, os.PathLike)):
    meta_params, manifest = _checkpoint.load_meta_params(meta_params)
    config.update({k: manifest['config'][k] for k in PAPER_CONFIG
                   if k in manifest['config']})
  if preprocess_p is not None:
    config['preprocess_p'] = preprocess_p
  if output_scale is not None:
    config['output_scale'] = output_scale
  arch = architecture(meta_params)
  network = _network.CoordinatewiseLSTM(
      output_scale=config['output_scale'], **arch)
  num_layers, tail = arch['num_layers'], (arch['hidden_size'],)

  def init_fn(params: Params) -> LSTMOptimizerState:
    zeros = lambda p: jnp.zeros(jnp.shape(p) + tail, state_dtype)
    layers = lambda: tuple(jax.tree.map(zeros, params)
                           for _ in range(num_layers))
    return LSTMOptimizerState(jnp.zeros([], jnp.int32), layers(), layers())

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    _check_structure(updates, state)
    grads, treedef = jax.tree.flatten(updates)
    count = optax.safe_increment(state.count)
    if not grads:
      return updates, state._replace(count=count)
    splits = np.cumsum([np.size(g) for g in grads])[:-1]
    flat = lambda leaves, tail: jnp.concatenate(
        [jnp.reshape(x, (-1,) + tail).astype(jnp.float32) for x in leaves])
    per_layer = lambda layers: tuple(
        flat(jax.tree.leaves(tree), tail) for tree in layers)
    inputs = _preprocess.preprocess_gradients(
        flat(grads, ()), config['preprocess_p'])
    step, carry = network.apply(meta_params, inputs, _network.LSTMCarry(
        per_layer(state.cell), per_layer(state.hidden)))

    def unflatten(x, tail, dtypes):
      return treedef.unflatten([
          jnp.reshape(part, jnp.shape(g) + tail).astype(dtype)
          for part, g, dtype in zip(jnp.split(x, splits), grads, dtypes)])

    like = jax.tree.leaves(params) if params is not None else grads
    new_updates = unflatten(step, (), [x.dtype for x in like])
    state_dtypes = [state_dtype] * len(grads)
    cell, hidden = (tuple(unflatten(x, tail, state_dtypes) for x in layers)
                    for layers in carry)
    return new_updates, LSTMOptimizerState(count, cell, hidden)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
