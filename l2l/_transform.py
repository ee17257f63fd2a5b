"""The learned optimizer as an optax gradient transformation."""

import functools
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2l import _checkpoint
from l2l import _compact
from l2l import _network
from l2l import _rules
from l2l._base import Array, MetaParams, Params, Updates
from l2l._network import architecture

NAMED = _checkpoint.NAMED
DEFAULT_META_PARAMS = NAMED['default']
PAPER_CONFIG = {'preprocess_p': 10.0, 'output_scale': 0.1}
RULES = {**_rules.RULES, 'compact': _compact.RULE}
ScalarOrSchedule = float | Array | Callable[[Array], Array]


class LSTMOptimizerState(NamedTuple):
  """State of :func:`lstm_optimizer`.

  Attributes:
    count: int32 number of updates taken.
    cell: per-coordinate LSTM cell state: one tree like the params per
      layer, whose leaves have shape ``param.shape + (hidden_size,)``
      (``(hidden_size,)``, per tensor, for the compact design).
    hidden: per-coordinate LSTM hidden state, shaped like ``cell``.
    moments: the design's gradient accumulators, each a tree like the
      params (empty for the paper design; second moment and momenta at
      decays 0.5, 0.9, 0.99 for the adaptive one, and also the previous
      direction for the hyper one, or the average of past directions and
      the gap ``z - x`` between the schedule-free sequences for the free
      and compact ones).
    scale: per parameter tensor, in a tree like the params: the hyper
      design's float32 log step offset; the free design's ``[offset, sum of
      averaging weights, largest step so far, running mean square of the
      gradient]`` (the spike cut's); for the compact design a dict of
      that ``'tensor'`` entry and, for tensors of rank 2 or more, the
      factored second moment's ``'rows'`` and ``'cols'``; zeros, unused,
      for the other designs.
  """
  count: Array
  cell: Any
  hidden: Any
  moments: Any = ()
  scale: Any = ()


@functools.lru_cache(maxsize=32)
def _load(path: str, size: int, mtime_ns: int) -> tuple[MetaParams, dict]:
  """Reads a file once per identity: a rewritten file is read again."""
  del size, mtime_ns
  meta_params, manifest = _checkpoint.load_meta_params(path)
  # Host arrays: device arrays made under one mesh context would carry it
  # into computations under another.
  return jax.device_get(meta_params), manifest['config']


def _resolve(meta_params) -> tuple[MetaParams, dict]:
  """Meta-params and stored config from a pytree, a path or a name."""
  _checkpoint.reject_loaded_tuple(meta_params, 'lstm_optimizer')
  if meta_params is None or isinstance(meta_params, (str, os.PathLike)):
    path = os.path.realpath(_checkpoint.resolve_path(meta_params))
    stat = os.stat(path)
    return _load(path, stat.st_size, stat.st_mtime_ns)
  return meta_params, {}


def _check_params(params: Params) -> None:
  """Raises for leaves the learned optimizer cannot train."""
  for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
    dtype = jnp.result_type(p)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(
          f'lstm_optimizer: parameter {jax.tree_util.keystr(path)} has dtype '
          f'{dtype}; only real floating-point parameters can be trained '
          '(split a complex parameter into real and imaginary parts, and '
          'keep integer values out of the trained tree, e.g. with '
          'optax.masked)')


def _check_structure(updates: Updates, state: LSTMOptimizerState) -> None:
  """Raises if the gradient tree differs from the params given to init."""
  # The first moment is shaped like the params; the paper design has none,
  # and its per-coordinate LSTM state has one trailing axis more.
  like, trim = ((state.moments[0], 0) if state.moments
                else (state.cell[0], 1))
  if jax.tree.structure(updates) != jax.tree.structure(like):
    raise ValueError(
        'lstm_optimizer: the gradient tree '
        f'{jax.tree.structure(updates)} differs from the params tree given '
        f'to init {jax.tree.structure(like)}')
  paths = jax.tree_util.tree_flatten_with_path(updates)[0]
  for (path, g), c in zip(paths, jax.tree.leaves(like)):
    shape = c.shape[:c.ndim - trim]
    if jnp.shape(g) != shape:
      raise ValueError(
          f'lstm_optimizer: gradient {jax.tree_util.keystr(path)} has shape '
          f'{jnp.shape(g)} but init saw a parameter of shape {shape}')
    if not jnp.issubdtype(jnp.result_type(g), jnp.floating):
      raise ValueError(
          f'lstm_optimizer: gradient {jax.tree_util.keystr(path)} has dtype '
          f'{jnp.result_type(g)}; real floating-point gradients are needed')


def _like(new, old):
  """``new`` in ``old``'s tree structure and dtypes, matched by leaf order
  (flax's ``nnx.Optimizer`` hands back stored dicts as ``nnx.State``)."""
  pairs = list(zip(jax.tree.leaves(new), jax.tree.leaves(old)))
  if any(jnp.shape(n) != jnp.shape(o) for n, o in pairs):
    raise ValueError('lstm_optimizer: the stored per-tensor state has '
                     f'shapes {jax.tree.map(jnp.shape, old)}; the rule gave '
                     f'{jax.tree.map(jnp.shape, new)}')
  return jax.tree.unflatten(jax.tree.structure(old),
                            [n.astype(o.dtype) for n, o in pairs])


def _param_leaves(params, grads: list) -> list:
  """The leaves of ``params``, one per gradient leaf and shaped like it.

  Matched by leaf order, not by container type: flax's ``nnx.Optimizer``
  passes the params as ``nnx.State`` beside gradients in plain dicts.
  """
  leaves = jax.tree.leaves(params)
  if len(leaves) != len(grads) or any(
      jnp.shape(p) != jnp.shape(g) for p, g in zip(leaves, grads)):
    raise ValueError(
        'lstm_optimizer: the params given to update (shapes '
        f'{[jnp.shape(p) for p in leaves]}) do not match the gradients '
        f'(shapes {[jnp.shape(g) for g in grads]})')
  return leaves


def _compute_dtype(dtype) -> Any:
  """float32, or float64 for float64 values (under ``jax_enable_x64``)."""
  return jnp.promote_types(dtype, jnp.float32)


def _decay_mask(mask, params) -> list[bool]:
  """Per leaf of ``params``, whether weight decay applies."""
  if mask is None:
    return [True] * len(jax.tree.leaves(params))
  if callable(mask):
    mask = mask(params)
  return [bool(m) for m in jax.tree.structure(params).flatten_up_to(mask)]


def lstm_optimizer(
    meta_params: MetaParams | str | os.PathLike | None = None,
    *,
    learning_rate: ScalarOrSchedule = 1.0,
    weight_decay: float | Array | None = None,
    mask: Any = None,
    preprocess_p: float | None = None,
    output_scale: float | None = None,
    state_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""A coordinatewise LSTM learned optimizer.

  Every coordinate :math:`i` of every parameter runs the same LSTM
  :math:`m_\phi` with its own recurrent state, and
  :math:`\theta_{t+1}^i = \theta_t^i + \alpha_t (u_t^i - \lambda \theta_t^i)`
  (:math:`\alpha_t` ``learning_rate``, 1 by default; :math:`\lambda`
  ``weight_decay``, none by default). Five designs exist, told apart by the
  meta-parameters:

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
    ``l2l._rules.free``).
  - ``'compact'``: the free design's nominal rule, corrected by a
    per-parameter MLP (one hidden layer of 8 units, no per-coordinate
    recurrent state) whose per-tensor modulation (log step offset, output
    scales, hidden-unit mixing) comes from an LSTM run once per tensor on
    per-tensor statistics, a learned scheduler (see
    ``l2l._compact.compact``; Celo, Moudgil et al. 2025; VeLO, Metz et
    al. 2022). It reads the parameter values: ``update`` needs ``params``.
    The default: the shipped ``'default'`` is a fresh compact optimizer
    (zero read-outs), which takes exactly the free rule's steps with 24
    bytes of state per float32 parameter instead of 344.

  The read-out is multiplied by ``output_scale``. The rule is mapped over
  the leaves, all coordinates of a leaf as one batch, so each update and
  state entry keeps its parameter's shape and sharding (no gather across
  leaves). The LSTM and rule run in float32, or in float64 for float64
  params (under ``jax_enable_x64``; the meta-params stay float32); the
  state is stored in ``state_dtype`` and updates come out in the dtype of
  the params (or of the gradients when ``params`` is not given). Only real
  floating-point params are supported: ``init`` raises for complex and
  integer leaves (``optax.masked`` keeps integer leaves out). A non-finite gradient
  coordinate gives a non-finite update and state for that coordinate only
  (the hyper design's per-tensor step offset ignores it): wrap
  the optimizer in ``optax.apply_if_finite`` to skip such steps.

  Args:
    meta_params: the weights (a pytree from :func:`l2l.init_meta_params` or
      meta-training, traced or concrete); a path to a file written by
      :func:`l2l.save_meta_params`; the name of a configuration shipped with
      the package (``'default'``, ``'paper2016'``); or ``None`` for
      ``'default'``. The design and sizes are read off the meta-params.
    learning_rate: :math:`\alpha_t`, a multiplier on the learned update (a
      float, a scalar array, or an optax schedule of the step count, read
      before the count is incremented as in ``optax.scale_by_schedule``).
      The learned rules set their own step sizes; this scales them.
    weight_decay: decoupled weight decay :math:`\lambda` (Loshchilov and
      Hutter, 2019) per step, multiplied by :math:`\alpha_t`; ``None`` for
      none. ``update`` then needs ``params``. Note that
      ``optax.add_decayed_weights`` placed after this transform would grow
      the weights, since its updates are already negated.
    mask: where ``weight_decay`` applies: a tree of bools like the params,
      or a function from params to one, as in ``optax.add_decayed_weights``
      (``None`` for every leaf).
    preprocess_p: exponent ``p`` of the paper design's preprocessing;
      ``None`` takes the value stored with loaded meta-params, else 10.
    output_scale: factor on the read-out; ``None`` as for ``preprocess_p``,
      else 0.1.
    state_dtype: dtype of the stored LSTM state and moments; ``None`` for
      float32 (float64 for float64 params). ``None`` is left alone by
      ``optax.inject_hyperparams``, which injects ``learning_rate``,
      ``weight_decay``, ``output_scale`` and ``preprocess_p``.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs
    ``params`` for the compact design (the default) and with
    ``weight_decay``.

  Raises:
    CheckpointError: ``meta_params`` names no shipped configuration and no
      readable checkpoint file (the message lists the shipped names).
    ValueError: meta-params of no known design; at ``init``, a complex or
      integer parameter (named); at ``update``, a gradient tree or shape
      that differs from the params given to ``init``, or no ``params`` for
      the compact design.

  Example:
    >>> import jax.numpy as jnp, optax, l2l
    >>> opt = optax.chain(optax.clip_by_global_norm(1.0), l2l.lstm_optimizer())
    >>> params = {'w': jnp.ones(3)}
    >>> state = opt.init(params)
    >>> updates, state = opt.update({'w': jnp.ones(3)}, state, params)
    >>> # a step multiplier on a schedule, and decoupled weight decay
    >>> opt = l2l.lstm_optimizer(
    ...     learning_rate=optax.cosine_decay_schedule(1.0, 1000),
    ...     weight_decay=1e-4)

  References:
    - Andrychowicz et al., 2016, "Learning to learn by gradient descent by
      gradient descent", https://arxiv.org/abs/1606.04474.
    - Lv et al., 2017, "Learning gradient descent: better generalization
      and longer horizons", https://arxiv.org/abs/1703.03633.
    - Wichrowska et al., 2017, "Learned optimizers that scale and
      generalize", https://arxiv.org/abs/1703.04813.
    - Loshchilov and Hutter, 2019, "Decoupled weight decay regularization",
      https://arxiv.org/abs/1711.05101.
    - Harrison et al., 2022, "A closer look at learned optimization:
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
  rule = RULES[arch['design']]
  network = _network.CoordinatewiseLSTM(
      hidden_size=arch['hidden_size'], num_layers=arch['num_layers'],
      num_outputs=_network.DESIGNS[arch['design']][1],
      output_scale=config['output_scale'])
  tail = (arch['hidden_size'],)
  stored_dtype = lambda p: (jnp.dtype(state_dtype) if state_dtype is not None
                            else _compute_dtype(jnp.result_type(p)))

  def init_fn(params: Params) -> LSTMOptimizerState:
    _check_params(params)
    # zeros_like keeps each parameter's sharding in its state.
    zeros = lambda p: jnp.zeros_like(p, stored_dtype(p))
    lstm = lambda p: (jnp.zeros(tail, stored_dtype(p)) if rule.per_tensor_carry
                      else jnp.broadcast_to(zeros(p)[..., None],
                                            jnp.shape(p) + tail))
    tensor_state = lambda p: (
        jnp.zeros(rule.scale_shape, jnp.float32) if rule.init_scale is None
        else rule.init_scale(p, stored_dtype(p)))
    trees = lambda n, make: tuple(jax.tree.map(make, params) for _ in range(n))
    return LSTMOptimizerState(
        jnp.zeros([], jnp.int32), trees(arch['num_layers'], lstm),
        trees(arch['num_layers'], lstm), trees(rule.num_moments, zeros),
        jax.tree.map(tensor_state, params))

  def update_tensor(g, cell, hidden, moments, scale, param, count):
    """The rule on one tensor; states come back in their stored dtypes."""
    if not jnp.size(g):
      return jnp.zeros_like(g), cell, hidden, moments, scale
    dtype = _compute_dtype(g.dtype)
    cast = lambda xs: tuple(x.astype(dtype) for x in xs)
    extra = (param,) if rule.needs_params else ()
    step, carry, new_moments, new_scale = rule.apply(
        network, meta_params, g.astype(dtype),
        _network.LSTMCarry(cast(cell), cast(hidden)), cast(moments), count,
        scale, config['preprocess_p'], *extra)
    keep = lambda new, old: tuple(n.astype(o.dtype) for n, o in zip(new, old))
    return (step, keep(carry.cell, cell), keep(carry.hidden, hidden),
            keep(new_moments, moments),
            _like(new_scale, scale))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    _check_structure(updates, state)
    if rule.needs_params and params is None:
      raise ValueError(
          f'lstm_optimizer: the {arch["design"]!r} design reads the parameter '
          'values; call update(grads, state, params)')
    grads, treedef = jax.tree.flatten(updates)
    count = optax.safe_increment(state.count)
    per_leaf = lambda trees: list(zip(*[treedef.flatten_up_to(t)
                                        for t in trees])) or [()] * len(grads)
    leaves = (_param_leaves(params, grads) if rule.needs_params
              else [None] * len(grads))
    results = [update_tensor(*leaf, count) for leaf in zip(
        grads, per_leaf(state.cell), per_leaf(state.hidden),
        per_leaf(state.moments), treedef.flatten_up_to(state.scale), leaves)]
    steps = _scale_and_decay([r[0] for r in results], grads, params,
                             state.count)
    unzip = lambda i, n: tuple(treedef.unflatten([r[i][k] for r in results])
                               for k in range(n))
    return treedef.unflatten(steps), LSTMOptimizerState(
        count, unzip(1, arch['num_layers']), unzip(2, arch['num_layers']),
        unzip(3, rule.num_moments),
        treedef.unflatten([r[4] for r in results]))

  def _scale_and_decay(steps, grads, params, count):
    r""":math:`\alpha_t (u - \lambda \theta)` per leaf, in the params' dtypes
    (the gradients' when ``params`` is not given)."""
    rate = learning_rate(count) if callable(learning_rate) else learning_rate
    if weight_decay is not None and params is None:
      raise ValueError('lstm_optimizer: weight_decay needs the params; call '
                       'update(grads, state, params)')
    leaves = _param_leaves(params, grads) if params is not None else grads
    decay = (_decay_mask(mask, params) if weight_decay is not None
             else [False] * len(grads))
    return [(rate * (u - weight_decay * p if d else u)).astype(p.dtype)
            for u, p, d in zip(steps, leaves, decay)]

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _find_state(state) -> LSTMOptimizerState:
  """The one :class:`LSTMOptimizerState` inside an optax state tree."""
  is_ours = lambda x: isinstance(x, LSTMOptimizerState)
  found = [x for x in jax.tree.leaves(state, is_leaf=is_ours) if is_ours(x)]
  if len(found) != 1:
    raise ValueError(
        f'averaged_params needs the state of one lstm_optimizer; found '
        f'{len(found)} LSTMOptimizerState in the {type(state).__name__} '
        'given' + ('; pass the one you mean' if found else ''))
  return found[0]


def averaged_params(params: Params, state: Any,
                    meta_params: MetaParams | str | os.PathLike | None
                    ) -> Params:
  r"""The schedule-free average :math:`x` of a ``free`` (or ``compact``)
  design optimizer.

  The params of a ``free`` or ``compact`` optimizer are the interpolation
  :math:`y = (1 - \beta) z + \beta x`, where gradients are evaluated; the
  average :math:`x = y - (1 - \beta)(z - x)` is what schedule-free methods
  evaluate and export (compare ``optax.contrib.schedule_free_eval_params``).

  Args:
    params: the current params :math:`y`.
    state: the optimizer's state: an :class:`LSTMOptimizerState`, or any
      optax state holding exactly one (``optax.chain``, ``optax.masked``,
      ``optax.MultiSteps``, ``optax.inject_hyperparams``, ...). Leaves that
      ``optax.masked`` keeps from the optimizer are returned unchanged.
    meta_params: the optimizer's meta-params, path or name, as given to
      :func:`lstm_optimizer` (``None`` for ``'default'``). Required: the
      average depends on the meta-learned interpolation :math:`\beta`,
      which the state does not hold.

  Returns:
    :math:`x`, a tree like ``params`` in the params' dtypes.

  Raises:
    ValueError: if ``state`` holds no ``LSTMOptimizerState`` or several, or
      the meta-params or the state are not of the ``free`` or ``compact``
      design, or ``params`` is not the tree the state was built on (flax
      ``nnx.State`` with variables in it included: pass ``nnx.as_pure``).

  Example (flax nnx: pass plain arrays)::

    x = l2l.averaged_params(nnx.as_pure(nnx.state(model, nnx.Param)),
                            nnx.as_pure(optimizer.opt_state), 'default')
  """
  state = _find_state(state)
  meta_params, _ = _resolve(meta_params)
  design = architecture(meta_params)['design']
  if design not in ('free', 'compact'):
    raise ValueError('averaged_params applies to the free and compact '
                     f'designs only; these meta-params are of the {design!r} '
                     'design, whose params are already the iterate to use')
  if len(state.moments) != RULES[design].num_moments:
    raise ValueError(f'averaged_params: the state is not that of a {design}-'
                     'design optimizer; pass the meta_params it was built with')
  beta = _rules.interpolation(meta_params)
  masked = lambda x: isinstance(x, optax.MaskedNode)
  average = lambda gap, p: p if masked(gap) else (
      p - (1 - beta) * gap).astype(p.dtype)
  try:
    return jax.tree.map(average, state.moments[-1], params, is_leaf=masked)
  except ValueError as e:
    raise ValueError(
        'averaged_params: the params tree does not match the one the '
        'optimizer state was built on (with flax nnx, pass plain arrays: '
        'nnx.as_pure(nnx.state(model, nnx.Param)) and '
        f'nnx.as_pure(optimizer.opt_state)): {e}') from e
