"""Pieces shared by the one-shot searches (ENAS, DARTS): the supernet's
loss and accuracy, the minibatch loop in one ``lax.scan``, discretisation
and the share of parameter-free operations in a cell.

A one-shot search trains one set of weights shared by every child of a
space: the masked supernet ``apply_fn(params, x, op_weights)`` (for the
tabular cell space, :class:`l2l.search.TabularCellNet`), whose
``op_weights`` ``(num_edges, num_ops)`` are one-hot for a child (ENAS) or a
softmax over operations (DARTS).
"""

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2l.search._space import Space

Array = jax.Array
# apply_fn(params, x (batch, ...), op_weights (num_edges, num_ops)) -> logits (batch, classes)
SupernetApply = Callable[[Any, Array, Array], Array]
Batch = tuple[Array, Array]

#: Operations of the tabular cell space that own no parameters.
PARAMETER_FREE_OPS = ('none', 'skip')


class OneShot(NamedTuple):
  """A one-shot architecture search: pure functions over a pytree state.

  Attributes:
    name: ``'enas'`` or ``'darts'``.
    init: ``init(key, params) -> state``; ``params`` are the supernet's
      initial weights.
    step: ``step(state, key, train_batch, val_batch) -> (state, metrics)``,
      one search step; batches are ``(x, y)`` pairs; metrics are a dict of
      arrays of fixed shapes (stacked by :func:`run_oneshot`).
  """
  name: str
  init: Callable[[Array, Any], Any]
  step: Callable[[Any, Array, Batch, Batch], tuple[Any, dict[str, Array]]]


def cross_entropy(apply_fn: SupernetApply, params, op_weights: Array, batch: Batch) -> Array:
  """Mean softmax cross-entropy of the supernet on a batch, float32 scalar."""
  x, y = batch
  logits = apply_fn(params, x, op_weights)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def accuracy(apply_fn: SupernetApply, params, op_weights: Array, batch: Batch) -> Array:
  """Accuracy of the supernet on a batch, float32 scalar in ``[0, 1]``."""
  x, y = batch
  return jnp.mean(jnp.argmax(apply_fn(params, x, op_weights), -1) == y).astype(jnp.float32)


def _minibatch(key: Array, data: Batch, batch_size: int) -> Batch:
  x, y = data
  index = jax.random.randint(key, (batch_size,), 0, y.shape[0])
  return x[index], y[index]


def run_oneshot(oneshot: OneShot, state: Any, key: Array, train: Batch, val: Batch,
                num_steps: int, batch_size: int = 64) -> tuple[Any, dict[str, Array]]:
  """Runs ``num_steps`` search steps in one ``lax.scan`` (jit- and vmap-able).

  Each step draws a training and a validation minibatch of ``batch_size``
  examples (with replacement) and calls ``oneshot.step``.

  Args:
    oneshot: The search (:func:`l2l.search.enas` or :func:`l2l.search.darts`).
    state: Its state, from ``oneshot.init``.
    key: Draws the minibatches and the search's own randomness.
    train: ``(x (N, ...), y (N,) int)``, trains the shared weights.
    val: ``(x (M, ...), y (M,) int)``, trains the architecture.
    num_steps: Search steps, a Python int.
    batch_size: Examples per minibatch.

  Returns:
    ``(state, metrics)``; every metric gains a leading ``(num_steps,)`` axis.
  """
  def step(state, key):
    key_train, key_val, key_step = jax.random.split(key, 3)
    return oneshot.step(state, key_step, _minibatch(key_train, train, batch_size),
                        _minibatch(key_val, val, batch_size))

  return jax.lax.scan(step, state, jax.random.split(key, int(num_steps)))


def discretise(space: Space, alpha: Array, exclude: Sequence[str] = ('none',)) -> Array:
  """The strongest operation of each edge: int32 config ``(..., num_edges)``.

  As in DARTS, the zero operation is excluded by default: its weight
  only scales the edge, so it says little about which operation is best
  (Liu et al. 2019, section 2.4). Works on logits, probabilities or
  counts (the argmax is the same); jit-able.

  Args:
    space: A space whose choices all have the same options (the edges).
    alpha: float ``(..., num_edges, num_ops)``.
    exclude: Option names never picked; at least one option must remain.

  Raises:
    ValueError: the edges' options differ, ``alpha`` has the wrong shape,
      or every option is excluded.
  """
  ops = _edge_ops(space)
  if tuple(np.shape(alpha)[-2:]) != (len(space.choices), len(ops)):
    raise ValueError(f'alpha must end in shape {(len(space.choices), len(ops))}, '
                     f'got {np.shape(alpha)}.')
  keep = np.asarray([op not in exclude for op in ops])
  if not keep.any():
    raise ValueError(f'exclude={list(exclude)} leaves no operation of {list(ops)}.')
  masked = jnp.where(jnp.asarray(keep), jnp.asarray(alpha), -jnp.inf)
  return jnp.argmax(masked, -1).astype(jnp.int32)


def parameter_free_share(space: Space, configs: Array,
                         parameter_free: Sequence[str] = PARAMETER_FREE_OPS) -> Array:
  """Share of a cell's edges whose operation owns no parameters.

  The symptom of DARTS' collapse (Zela et al. 2020; Liang et al. 2019):
  the found cell fills up with skip connections.

  Args:
    space: The edge space.
    configs: int ``(..., num_edges)``.
    parameter_free: Option names that own no parameters.

  Returns:
    float32 ``(...)`` in ``[0, 1]``.
  """
  free = jnp.asarray([op in parameter_free for op in _edge_ops(space)])
  return jnp.mean(free[jnp.asarray(configs)], -1).astype(jnp.float32)


def _edge_ops(space: Space) -> tuple:
  ops = space.choices[0].options
  if any(c.options != ops for c in space.choices):
    raise ValueError(f'Space {space.name!r}: one-shot search needs every choice to '
                     'have the same options (one operation per edge).')
  return ops
