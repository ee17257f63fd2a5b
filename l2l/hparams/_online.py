"""Online hyperparameter tuning by one-step-lookahead hypergradients.

Every ``every`` steps the hyperparameters move along the gradient of the
validation loss after the current update with respect to them (hypergradient
descent, Baydin et al., 2018; the one-step case of Franceschi et al., 2017
and of Im et al., 2021). An optimizer-side hyperparameter (weight decay, a
learning-rate multiplier) is differentiated through the update; a loss-side
one (dropout, label smoothing, input noise) through the training gradient.
The derivative is taken in forward mode (``jax.jacfwd``: one
Jacobian-vector product per hyperparameter through the gradient and the
update), so its memory is one extra gradient copy.
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
  """
  count: Array
  unit: HParams
  inner_state: OptState
  mu: HParams
  nu: HParams
  hyper_count: Array


class OnlineTuner(NamedTuple):
  """The pure functions of :func:`online_tuner`.

  Attributes:
    init: ``init(params, unit=None) -> OnlineTunerState``; ``unit``
      defaults to the declared initial values.
    step: ``step(params, state, key) -> (params, state, metrics)``, one
      training step (and, every ``every`` steps, one hyperparameter step);
      ``metrics`` holds ``train_loss`` and the hyperparameter ``values``.
  """
  init: Callable[..., OnlineTunerState]
  step: Callable[[Params, OnlineTunerState, Array],
                 tuple[Params, OnlineTunerState, dict]]


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
                 learning_rate: float = 0.05) -> OnlineTuner:
  r"""Wraps an optax optimizer so that it tunes hyperparameters as it trains.

  Each call of ``step`` takes one step of ``make_optimizer(values)`` on a
  training minibatch. On steps ``0, every, 2 every, ...`` that step is taken
  inside :func:`hypergradient`, which also returns the derivative of the
  validation loss after it with respect to the unit coordinates, and
  :func:`normalised_step` moves the hyperparameters. Everything is pure and
  jit/vmap/scan compatible, with no host synchronisation; use it under one
  ``jax.jit`` or inside ``lax.scan`` (:func:`l2l.hparams.run`).

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
    val_loss: ``val_loss(params, key)``, a held-out validation batch loss.
    every: steps between hyperparameter updates (``k``), at least 1.
    learning_rate: unit-coordinate step size of the hyperparameters.

  Returns:
    An :class:`OnlineTuner` of pure ``init`` and ``step`` functions.

  Raises:
    ValueError: ``every < 1`` or ``learning_rate <= 0``.
    TypeError: ``space`` is not a :class:`HyperparameterSpace`.

  References:
    Baydin et al., 2018, "Online learning rate adaptation with hypergradient
    descent"; Im, Savin and Cho, 2021, "Online hyperparameter optimization
    by real-time recurrent learning".
  """
  if not isinstance(space, HyperparameterSpace):
    raise TypeError(f'online_tuner: space must come from declare(), got '
                    f'{type(space).__name__}')
  if int(every) < 1:
    raise ValueError(f'online_tuner: every must be at least 1, got {every}')
  if not learning_rate > 0:
    raise ValueError(f'online_tuner: learning_rate must be positive, got '
                     f'{learning_rate}')
  fns = dict(space=space, make_optimizer=make_optimizer, train_loss=train_loss)

  def init(params, unit=None):
    unit = space.init() if unit is None else unit
    values = space.from_unit(unit)
    zeros = jax.tree.map(jnp.zeros_like, unit)
    return OnlineTunerState(
        count=jnp.zeros([], jnp.int32), unit=unit,
        inner_state=make_optimizer(values).init(params), mu=zeros, nu=zeros,
        hyper_count=jnp.zeros([], jnp.int32))

  def plain(params, state, key):
    params, inner, loss = train_step(params, state.inner_state, state.unit,
                                     jax.random.split(key)[0], **fns)
    return params, state._replace(inner_state=inner), loss

  def tuned(params, state, key):
    grads, (params, inner, loss) = hypergradient(
        state.unit, params, state.inner_state, key, val_loss=val_loss, **fns)
    unit, mu, nu, hyper_count = normalised_step(
        state.unit, grads, state.mu, state.nu, state.hyper_count,
        learning_rate=learning_rate)
    return params, state._replace(inner_state=inner, unit=unit, mu=mu, nu=nu,
                                  hyper_count=hyper_count), loss

  def step(params, state, key):
    params, state, loss = jax.lax.cond(
        state.count % every == 0, tuned, plain, params, state, key)
    state = state._replace(count=state.count + 1)
    return params, state, {'train_loss': loss,
                           'values': space.from_unit(state.unit)}

  return OnlineTuner(init, step)


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
