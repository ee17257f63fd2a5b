"""Online hyperparameter tuning by forward-mode hypergradients.

Every ``every`` steps the hyperparameters move along the gradient of the
validation loss ``window`` steps ahead with respect to them, the
hyperparameters held over the window (hypergradient descent, Baydin et al.,
2018, for ``window=1``; truncated forward mode, Franceschi et al., 2017, and
Im et al., 2021, for longer windows). An optimizer-side hyperparameter
(weight decay, a learning-rate multiplier) is differentiated through the
update; a loss-side one (dropout, label smoothing, input noise) through the
training gradient. The tangent ``d (params, optimizer state) / d unit`` is
carried in forward mode (one Jacobian-vector product per hyperparameter per
window step), so its memory is one copy of params and optimizer state per
hyperparameter.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2l._base import Array, OptState, Params
from l2l.hparams._space import HParams, HyperparameterSpace

#: ``make_optimizer(hparams) -> optax.GradientTransformation``.
OptimizerFactory = Callable[[HParams], optax.GradientTransformation]
#: ``train_loss(params, hparams, key) -> scalar``: a minibatch drawn with
#: ``key``, the loss-side hyperparameters applied.
TrainLoss = Callable[[Params, HParams, Array], Array]
#: ``val_loss(params, key) -> scalar``: a held-out validation batch.
ValLoss = Callable[[Params, Array], Array]


class OnlineTunerState(NamedTuple):
  """State of :func:`online_tuner`.

  Attributes:
    count: int32 training steps taken.
    unit: the hyperparameters in unit coordinates, ``{name: float32 ()}``.
    inner_state: the wrapped optimizer's state.
    mu: first moment of the unit-coordinate hypergradient.
    nu: second moment of the unit-coordinate hypergradient.
    hyper_count: int32 hyperparameter updates taken.
    tangent: :class:`HyperTangent`, ``d (params, inner_state) / d unit``
      since the start of the current window.
  """
  count: Array
  unit: HParams
  inner_state: OptState
  mu: HParams
  nu: HParams
  hyper_count: Array
  tangent: 'HyperTangent'


class OnlineTuner(NamedTuple):
  """The pure functions of :func:`online_tuner`.

  Attributes:
    init: ``init(params, unit=None) -> OnlineTunerState``; ``unit``
      defaults to the declared initial values.
    step: ``step(params, state, key) -> (params, state, metrics)``, one
      training step (and, at the end of each window, one hyperparameter
      step); ``metrics`` holds ``train_loss`` and the hyperparameter
      ``values``.
    phases: ``{'plain', 'carry', 'tuned'}``, each ``fn(params, state, key)
      -> (params, state, train_loss)`` without counting the step: a step
      outside a window, a step that carries the tangent, and the window's
      last step with the hyperparameter update. ``step`` chooses among them
      by ``count``; cost accounting and nested scans use them directly.
  """
  init: Callable[..., OnlineTunerState]
  step: Callable[[Params, OnlineTunerState, Array],
                 tuple[Params, OnlineTunerState, dict]]
  phases: dict


def train_step(params: Params, inner_state: OptState, unit: HParams,
               key: Array, *, space: HyperparameterSpace,
               make_optimizer: OptimizerFactory, train_loss: TrainLoss):
  """One step of the wrapped optimizer at fixed hyperparameters.

  Returns:
    ``(new_params, new_inner_state, train_loss)``.
  """
  values = space.from_unit(unit)
  loss, grads = jax.value_and_grad(train_loss)(params, values, key)
  updates, inner_state = make_optimizer(values).update(
      grads, inner_state, params)
  return optax.apply_updates(params, updates), inner_state, loss


def lookahead_loss(unit: HParams, params: Params, inner_state: OptState,
                   key: Array, *, space: HyperparameterSpace,
                   make_optimizer: OptimizerFactory, train_loss: TrainLoss,
                   val_loss: ValLoss):
  """Validation loss after one training step, as a function of ``unit``.

  Returns:
    ``(val_loss, (new_params, new_inner_state, train_loss))``.
  """
  train_key, val_key = jax.random.split(key)
  new_params, new_inner, loss = train_step(
      params, inner_state, unit, train_key, space=space,
      make_optimizer=make_optimizer, train_loss=train_loss)
  return val_loss(new_params, val_key), (new_params, new_inner, loss)


def hypergradient(unit: HParams, params: Params, inner_state: OptState,
                  key: Array, **kwargs) -> tuple[HParams, Any]:
  r"""The one-step-lookahead hypergradient in unit coordinates.

  :math:`\partial_u L_\mathrm{val}(\theta - \Delta(\theta, u))`, where
  :math:`\Delta` is the wrapped optimizer's update at hyperparameters
  :math:`u`, by forward-mode differentiation (one JVP per hyperparameter).

  Args:
    unit: hyperparameters in unit coordinates, ``{name: ()}``.
    params: the model parameters before the step.
    inner_state: the wrapped optimizer's state before the step.
    key: PRNG key, split into the training and validation batches' keys.
    **kwargs: ``space``, ``make_optimizer``, ``train_loss``, ``val_loss``.

  Returns:
    ``(hypergradient, (new_params, new_inner_state, train_loss))``; the
    step is the one :func:`lookahead_loss` takes, so a tuner can keep it.
  """
  fn = lambda u: lookahead_loss(u, params, inner_state, key, **kwargs)
  return jax.jacfwd(fn, has_aux=True)(unit)


class HyperTangent(NamedTuple):
  """Forward-mode tangents ``d (params, optimizer state) / d unit``.

  Attributes:
    params: like the params, each leaf with a leading ``[num_hparams]`` axis
      (hyperparameters in sorted name order).
    inner: the tangents of the optimizer state's floating-point leaves, a
      tuple in ``jax.tree.leaves`` order, each ``[num_hparams, ...]``.
  """
  params: Params
  inner: tuple


def _float_leaves(tree) -> tuple[list, list[bool]]:
  leaves = jax.tree.leaves(tree)
  return leaves, [jnp.issubdtype(jnp.result_type(x), jnp.inexact)
                  for x in leaves]


def init_tangent(params: Params, inner_state: OptState,
                 num_hparams: int) -> HyperTangent:
  """Zero tangents: params and optimizer state do not yet depend on the
  hyperparameters (the start of a window).

  Returns:
    A :class:`HyperTangent` of zeros, float32 like the leaves.
  """
  zeros = lambda x: jnp.zeros((num_hparams,) + jnp.shape(x), jnp.result_type(x))
  leaves, floats = _float_leaves(inner_state)
  return HyperTangent(jax.tree.map(zeros, params),
                      tuple(zeros(x) for x, f in zip(leaves, floats) if f))


def tangent_step(params: Params, inner_state: OptState, tangent: HyperTangent,
                 unit: HParams, key: Array, *, space: HyperparameterSpace,
                 make_optimizer: OptimizerFactory, train_loss: TrainLoss):
  r"""One training step and its forward-mode tangent (real-time recurrent
  learning of the hyperparameters' effect).

  With :math:`s = (\theta, \text{optimizer state})` and the step
  :math:`s' = \Phi(s, u)`, the tangent :math:`Z = ds/du` follows
  :math:`Z' = \partial_s \Phi\, Z + \partial_u \Phi` (Franceschi et al.,
  2017, forward mode): one Jacobian-vector product per hyperparameter
  (``vmap`` over them; the step itself is computed once).

  Args:
    params, inner_state: model parameters and optimizer state.
    tangent: :class:`HyperTangent` of ``params`` and ``inner_state``.
    unit: hyperparameters in unit coordinates, held fixed over a window.
    key: the training minibatch's PRNG key.
    space, make_optimizer, train_loss: as :func:`online_tuner`.

  Returns:
    ``(new_params, new_inner_state, new_tangent, train_loss)``.
  """
  leaves, floats = _float_leaves(inner_state)
  treedef = jax.tree.structure(inner_state)
  names = sorted(unit)

  def rebuild(float_leaves):
    it = iter(float_leaves)
    return jax.tree.unflatten(
        treedef, [next(it) if f else x for x, f in zip(leaves, floats)])

  def fn(p, float_leaves, u):
    new_p, new_inner, loss = train_step(
        p, rebuild(float_leaves), u, key, space=space,
        make_optimizer=make_optimizer, train_loss=train_loss)
    new_leaves = jax.tree.leaves(new_inner)
    return ((new_p, tuple(x for x, f in zip(new_leaves, floats) if f)),
            (new_leaves, loss))

  primal_floats = tuple(x for x, f in zip(leaves, floats) if f)
  directions = {n: jnp.eye(len(names), dtype=jnp.float32)[i]
                for i, n in enumerate(names)}
  jvp = lambda tp, ti, tu: jax.jvp(fn, (params, primal_floats, unit),
                                   (tp, ti, tu), has_aux=True)
  (new_p, _), (dp, di), (new_leaves, loss) = jax.vmap(
      jvp, out_axes=(None, 0, None))(tangent.params, tangent.inner, directions)
  return (new_p, jax.tree.unflatten(treedef, new_leaves),
          HyperTangent(dp, di), loss)


def tangent_hypergradient(params: Params, tangent: HyperTangent,
                          val_loss: ValLoss, key: Array,
                          names) -> tuple[HParams, Array]:
  r"""The hypergradient :math:`\nabla_\theta L_\mathrm{val} \cdot Z` from
  the tangent of the params, by forward mode.

  Returns:
    ``(hypergradient {name: ()}, val_loss)``.
  """
  jvp = lambda t: jax.jvp(lambda p: val_loss(p, key), (params,), (t,))
  val, grads = jax.vmap(jvp, out_axes=(None, 0))(tangent.params)
  return {n: grads[i] for i, n in enumerate(sorted(names))}, val


def normalised_step(unit: HParams, grads: HParams, mu: HParams, nu: HParams,
                    count: Array, *, learning_rate: float, b1: float = 0.9,
                    b2: float = 0.99, eps: float = 1e-12):
  r"""An Adam step on unit coordinates, clipped to ``[0, 1]``.

  :math:`u \leftarrow \mathrm{clip}(u - \eta\,\hat m / (\sqrt{\hat v} +
  \epsilon), 0, 1)`; with a steady sign each step moves about
  :math:`\eta` of the declared range, whatever the hypergradient's scale,
  which is why the tuner needs no tuning of its own.

  A non-finite hypergradient entry is taken as zero.

  Returns:
    ``(unit, mu, nu, count)`` after the step; ``count`` is incremented.
  """
  # A non-finite hypergradient (a diverged lookahead) counts as zero.
  grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grads)
  count = count + 1
  mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, mu, grads)
  nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, nu, grads)
  t = count.astype(jnp.float32)
  step = lambda m, v: (m / (1 - b1 ** t)) / (jnp.sqrt(v / (1 - b2 ** t)) + eps)
  unit = jax.tree.map(
      lambda u, m, v: jnp.clip(u - learning_rate * step(m, v), 0.0, 1.0),
      unit, mu, nu)
  return unit, mu, nu, count


def online_tuner(make_optimizer: OptimizerFactory, space: HyperparameterSpace,
                 *, train_loss: TrainLoss, val_loss: ValLoss, every: int = 10,
                 window: int = 1, tangent_decay: float = 0.0,
                 learning_rate: float = 0.05) -> OnlineTuner:
  r"""Wraps an optax optimizer so that it tunes hyperparameters as it trains.

  Each call of ``step`` takes one step of ``make_optimizer(values)`` on a
  training minibatch. Steps ``0 .. window - 1`` of every ``every`` also
  carry the forward-mode tangent of params and optimizer state with respect
  to the unit coordinates (:func:`tangent_step`, which starts from zero at
  the window's first step); after the window's last step the validation
  loss's hypergradient :math:`\nabla_\theta L_\mathrm{val} \cdot Z`
  (:func:`tangent_hypergradient`) is the derivative of the validation loss
  ``window`` steps later with respect to the hyperparameters held over the
  window, and :func:`normalised_step` moves them. ``window=1`` is the
  one-step lookahead of hypergradient descent; a longer window is a
  truncated forward-mode hypergradient (Franceschi et al., 2017), which sees
  more of a regulariser's delayed effect. Everything is pure and
  jit/vmap/scan compatible, with no host synchronisation; use it under one
  ``jax.jit`` or inside ``lax.scan`` (:func:`l2l.hparams.run`).

  Cost: a window step computes the step and one Jacobian-vector product per
  hyperparameter through it (about 4.5 steps' flops for two
  hyperparameters on the ``tasks.regularisation`` problems), so the tuner
  costs about ``1 + 3.5 window / every`` training runs plus the validation
  batches.

  Args:
    make_optimizer: builds the optimizer from hyperparameter values, e.g.
      ``lambda h: optax.adamw(1e-3, weight_decay=h['weight_decay'])`` or
      ``lambda h: optax.chain(optax.add_decayed_weights(h['wd']),
      l2l.lstm_optimizer())``. The state's structure must not depend on
      the values. Give Adam-like optimizers ``eps_root > 0``
      (``optax.adam(..., eps_root=1e-16)``): the derivative of
      :math:`\sqrt{v}` at an exactly zero gradient entry is infinite, and
      the hypergradient would be NaN (such steps leave the
      hyperparameters unchanged).
    space: the declared hyperparameters (:func:`l2l.hparams.declare`).
    train_loss: ``train_loss(params, values, key)``, the training minibatch
      loss with the loss-side hyperparameters applied.
    val_loss: ``val_loss(params, key)``, a held-out validation batch loss
      (a minibatch drawn with ``key`` keeps the tuner cheap).
    every: steps between hyperparameter updates (``k``), at least 1.
    window: steps the hypergradient looks ahead, ``1 <= window <= every``.
    tangent_decay: the share of the tangent a window starts from, in
      ``[0, 1]``: 0 (the default) truncates it to the window; 1 with
      ``window == every`` carries it over the whole run, real-time recurrent
      learning as in Im et al. (2021), at the cost of a tangent every step.
    learning_rate: unit-coordinate step size of the hyperparameters.

  Returns:
    An :class:`OnlineTuner` of pure ``init``, ``step`` and ``phases``.

  Raises:
    ValueError: ``every < 1``, ``window`` outside ``[1, every]``,
      ``tangent_decay`` outside ``[0, 1]`` or ``learning_rate <= 0``.
    TypeError: ``space`` is not a :class:`HyperparameterSpace`.

  References:
    Baydin et al., 2018, "Online learning rate adaptation with hypergradient
    descent"; Franceschi et al., 2017, "Forward and reverse gradient-based
    hyperparameter optimization"; Im, Savin and Cho, 2021, "Online
    hyperparameter optimization by real-time recurrent learning".
  """
  if not isinstance(space, HyperparameterSpace):
    raise TypeError(f'online_tuner: space must come from declare(), got '
                    f'{type(space).__name__}')
  if not learning_rate > 0:
    raise ValueError(f'online_tuner: learning_rate must be positive, got '
                     f'{learning_rate}')

  def update(state, grads, val, loss):
    del val, loss
    unit, mu, nu, hyper_count = normalised_step(
        state.unit, grads, state.mu, state.nu, state.hyper_count,
        learning_rate=learning_rate)
    return state._replace(unit=unit, mu=mu, nu=nu, hyper_count=hyper_count)

  phases = tuner_phases(make_optimizer, space, train_loss=train_loss,
                        val_loss=val_loss, every=every, window=window,
                        tangent_decay=tangent_decay, update=update)

  def init(params, unit=None):
    unit = space.init() if unit is None else unit
    inner = make_optimizer(space.from_unit(unit)).init(params)
    zeros = jax.tree.map(jnp.zeros_like, unit)
    return OnlineTunerState(
        count=jnp.zeros([], jnp.int32), unit=unit, inner_state=inner,
        mu=zeros, nu=zeros, hyper_count=jnp.zeros([], jnp.int32),
        tangent=init_tangent(params, inner, len(space.names)))

  return OnlineTuner(init, switch_step(phases, space, every, window), phases)


def _check_window(every: int, window: int) -> None:
  if int(every) < 1:
    raise ValueError(f'online_tuner: every must be at least 1, got {every}')
  if not 1 <= int(window) <= int(every):
    raise ValueError(f'online_tuner: window must be in [1, every={every}], '
                     f'got {window}')


def tuner_phases(make_optimizer: OptimizerFactory, space: HyperparameterSpace,
                 *, train_loss: TrainLoss, val_loss: ValLoss, every: int,
                 window: int, update: Callable,
                 tangent_decay: float = 0.0) -> dict:
  """The three kinds of step of a windowed hypergradient tuner.

  Args:
    make_optimizer, space, train_loss, val_loss, every, window,
      tangent_decay: as :func:`online_tuner`.
    update: ``update(state, hypergradient, val_loss, train_loss) -> state``,
      the hyperparameter update at the end of a window; ``state`` has
      ``count``, ``unit``, ``inner_state`` and ``tangent`` fields.

  Returns:
    ``{'plain', 'carry', 'tuned'}`` as :class:`OnlineTuner`'s ``phases``.

  Raises:
    ValueError: ``every < 1``, ``window`` outside ``[1, every]`` or
      ``tangent_decay`` outside ``[0, 1]``.
  """
  _check_window(every, window)
  if not 0.0 <= tangent_decay <= 1.0:
    raise ValueError(f'online_tuner: tangent_decay must be in [0, 1], got '
                     f'{tangent_decay}')
  fns = dict(space=space, make_optimizer=make_optimizer, train_loss=train_loss)

  def plain(params, state, key):
    params, inner, loss = train_step(params, state.inner_state, state.unit,
                                     jax.random.split(key)[0], **fns)
    return params, state._replace(inner_state=inner), loss

  def carry(params, state, key):
    # A window starts from a decayed (by default zero) tangent: earlier
    # steps are held fixed.
    start = state.count % every == 0
    tangent = jax.tree.map(
        lambda z: jnp.where(start, tangent_decay * z if tangent_decay
                            else jnp.zeros_like(z), z), state.tangent)
    params, inner, tangent, loss = tangent_step(
        params, state.inner_state, tangent, state.unit,
        jax.random.split(key)[0], **fns)
    return params, state._replace(inner_state=inner, tangent=tangent), loss

  def tuned(params, state, key):
    params, state, loss = carry(params, state, key)
    grads, val = tangent_hypergradient(params, state.tangent, val_loss,
                                       jax.random.split(key)[1], space.names)
    return params, update(state, grads, val, loss), loss

  return {'plain': plain, 'carry': carry, 'tuned': tuned}


def switch_step(phases: dict, space: HyperparameterSpace, every: int,
                window: int) -> Callable:
  """``step(params, state, key)`` choosing the phase of ``state.count``."""
  # Without a carry phase (window 1) it is not compiled.
  branches = ((phases['plain'], phases['tuned']) if window == 1 else
              (phases['plain'], phases['tuned'], phases['carry']))

  def step(params, state, key):
    phase = state.count % every
    branch = jnp.where(phase >= window, 0, jnp.where(phase == window - 1,
                                                     1, 2))
    params, state, loss = jax.lax.switch(branch, branches, params, state, key)
    state = state._replace(count=state.count + 1)
    return params, state, {'train_loss': loss,
                           'values': space.from_unit(state.unit)}
  return step


def run(step: Callable, params: Params, state: Any, key: Array,
        num_steps: int):
  """Runs ``step(params, state, key) -> (params, state, metrics)`` for
  ``num_steps`` steps in one ``lax.scan``.

  Returns:
    ``(params, state, metrics)``, the metrics stacked along a leading
    ``[num_steps]`` axis.
  """
  def body(carry, k):
    params, state = carry
    params, state, metrics = step(params, state, k)
    return (params, state), metrics
  (params, state), metrics = jax.lax.scan(
      body, (params, state), jax.random.split(key, num_steps))
  return params, state, metrics
