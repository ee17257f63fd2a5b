"""DARTS: differentiable architecture search (Liu et al., 2019), and the
DARTS+ early stop against its collapse to parameter-free cells."""

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2l.search._oneshot import (OneShot, PARAMETER_FREE_OPS, SupernetApply,
                                 cross_entropy, discretise, parameter_free_share)
from l2l.search._space import Space

Array = jax.Array


class DartsState(NamedTuple):
  """State of :func:`darts`.

  Attributes:
    params: The supernet's weights.
    opt_state: Their optimizer's state.
    alpha: float32 ``(num_edges, num_ops)`` architecture logits.
    alpha_opt_state: The architecture optimizer's state.
    count: int32 search steps taken.
  """
  params: Any
  opt_state: Any
  alpha: Array
  alpha_opt_state: Any
  count: Array


def mixed_op_weights(alpha: Array) -> Array:
  """The mixed operation's weights ``softmax(alpha)`` over the last axis.

  Edge ``e`` of the supernet outputs ``sum_k softmax(alpha[e])_k op_k(h)``,
  the continuous relaxation of the choice of operation (Liu et al. 2019,
  eq. 1). float32 ``(..., num_edges, num_ops)``.
  """
  return jax.nn.softmax(jnp.asarray(alpha, jnp.float32), axis=-1)


def darts(apply_fn: SupernetApply, num_edges: int, num_ops: int, order: int = 1,
          learning_rate: float = 3e-3, alpha_learning_rate: float = 3e-3,
          alpha_weight_decay: float = 1e-3, alpha_init_scale: float = 1e-3) -> OneShot:
  """Differentiable architecture search (Liu et al., 2019).

  Each step first moves the architecture logits ``alpha`` on a validation
  batch, then the weights ``w`` on a training batch (Adam, as the children
  of the tabular benchmark are trained):

  * first order: ``alpha -= Adam(grad_alpha L_val(w, alpha))``;
  * second order (one-step unrolled): ``grad_alpha L_val(w', alpha)`` with
    ``w' = w + u(grad_w L_train(w, alpha))`` where ``u`` is the weights'
    own optimizer step, differentiated exactly with ``jax.grad`` through
    that step (the paper's ``w' = w - xi grad_w L_train`` with ``xi`` the
    SGD learning rate is this with ``u`` plain SGD; its finite-difference
    Hessian-vector product approximates the same derivative).

  ``alpha``'s optimizer is the paper's: Adam with ``b1 = 0.5`` and an L2
  penalty ``alpha_weight_decay`` added to the gradient. The paper's step
  size, 3e-4, serves ~20,000 steps; the default 3e-3 suits the few hundred
  steps that fit in a budget of a few child trainings.

  Args:
    apply_fn: The supernet, ``apply_fn(params, x, op_weights) -> logits``.
    num_edges: Edges of the cell (``alpha``'s rows).
    num_ops: Operations per edge.
    order: 1 or 2.
    learning_rate: Adam step size of the weights.
    alpha_learning_rate: Adam step size of ``alpha``.
    alpha_weight_decay: L2 coefficient on ``alpha``.
    alpha_init_scale: ``alpha`` starts as this times a standard normal.

  Returns:
    The :class:`OneShot`; state :class:`DartsState`; metrics per step
    ``train_loss``, ``val_loss`` (float32) and ``op_weights`` float32
    ``(num_edges, num_ops)`` (``softmax(alpha)`` after the step).

  Raises:
    ValueError: ``order`` is not 1 or 2, or a size is not positive.

  References:
    Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search",
    ICLR 2019.
  """
  if order not in (1, 2):
    raise ValueError(f'order must be 1 or 2, got {order!r}.')
  if int(num_edges) < 1 or int(num_ops) < 1:
    raise ValueError(f'num_edges and num_ops must be positive, got {num_edges}, {num_ops}.')
  # eps_root keeps the derivative through Adam's square root finite where a
  # gradient entry is zero (second order differentiates the step).
  optimizer = optax.adam(learning_rate, eps_root=1e-8)
  alpha_optimizer = optax.chain(optax.add_decayed_weights(alpha_weight_decay),
                                optax.adam(alpha_learning_rate, b1=0.5, b2=0.999))
  loss = lambda params, alpha, batch: cross_entropy(apply_fn, params,
                                                    mixed_op_weights(alpha), batch)

  def init(key, params):
    alpha = alpha_init_scale * jax.random.normal(key, (int(num_edges), int(num_ops)))
    return DartsState(params, optimizer.init(params), alpha,
                      alpha_optimizer.init(alpha), jnp.zeros((), jnp.int32))

  def step(state, key, train, val):
    del key
    def objective(alpha):
      params = state.params
      if order == 2:
        grads = jax.grad(loss)(params, alpha, train)
        updates, _ = optimizer.update(grads, state.opt_state, params)
        params = optax.apply_updates(params, updates)
      return loss(params, alpha, val)

    v_loss, alpha_grad = jax.value_and_grad(objective)(state.alpha)
    updates, alpha_opt_state = alpha_optimizer.update(alpha_grad, state.alpha_opt_state,
                                                      state.alpha)
    alpha = optax.apply_updates(state.alpha, updates)
    t_loss, grads = jax.value_and_grad(loss)(state.params, alpha, train)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'train_loss': t_loss, 'val_loss': v_loss, 'op_weights': mixed_op_weights(alpha)}
    return DartsState(params, opt_state, alpha, alpha_opt_state, state.count + 1), metrics

  return OneShot('darts', init, step)


def darts_plus_stop(space: Space, op_weights: Array, max_parameter_free: int = 2,
                    exclude: Sequence[str] = ('none',),
                    parameter_free: Sequence[str] = PARAMETER_FREE_OPS) -> tuple[Array, Array]:
  """DARTS+ early stopping on the collapse to parameter-free operations.

  DARTS+ stops the search at the first checkpoint (the paper: the end of
  an epoch) whose discretised cell holds ``max_parameter_free`` or more
  parameter-free operations (the paper: two skip connections in a normal
  cell) and returns that cell; a search that never reaches the threshold
  returns its last cell. Applying the rule to a recorded trajectory is
  the same as stopping, since later steps do not change earlier ones; the
  cost saved is the steps after the stop. jit-able.

  Args:
    space: The edge space.
    op_weights: float ``(checkpoints, num_edges, num_ops)``, e.g.
      ``softmax(alpha)`` at each checkpoint.
    max_parameter_free: The threshold, a count of edges (>= 1).
    exclude: Passed to :func:`discretise`.
    parameter_free: Option names that own no parameters.

  Returns:
    ``(config, stop)``: int32 ``(num_edges,)`` and the int32 index of the
    checkpoint stopped at.

  Raises:
    ValueError: ``max_parameter_free`` is not positive or ``op_weights``
      is not 3-D.

  References:
    Liang et al., "DARTS+: Improved Differentiable Architecture Search
    with Early Stopping", arXiv:1909.06035, 2019.
  """
  if int(max_parameter_free) < 1:
    raise ValueError(f'max_parameter_free must be >= 1, got {max_parameter_free}.')
  if np.ndim(op_weights) != 3:
    raise ValueError(f'op_weights must be (checkpoints, edges, ops), got {np.shape(op_weights)}.')
  configs = discretise(space, op_weights, exclude)
  counts = jnp.round(parameter_free_share(space, configs, parameter_free) * configs.shape[-1])
  fired = counts >= max_parameter_free
  stop = jnp.where(fired.any(), jnp.argmax(fired), configs.shape[0] - 1).astype(jnp.int32)
  return configs[stop], stop
