"""The Task protocol: what a learned optimizer is trained and judged on.

A *task* is a problem of fixed structure (widths, activation, batch size):
it is a pytree whose array fields (data sets already on the device) are
traced data and whose structural fields are static, so one jitted function
serves every task of the same structure. A *problem* is one random instance
of a task (for the quadratic, the matrix ``W`` and target ``y``; for a data
set task, nothing). A *task family* samples tasks in Python, since structure
decides shapes and so cannot be traced.

All methods below are pure and jit/vmap compatible; ``vmap`` over
``(params, problem, key)`` with the task itself broadcast.
"""

from typing import Any, Protocol

import jax
import numpy as np

Params = Any
Problem = Any


class Task(Protocol):
  """A problem of fixed structure that an optimizer trains."""

  name: str

  def init_params(self, key: jax.Array) -> Params:
    """Returns fresh optimizee parameters."""

  def sample_problem(self, key: jax.Array) -> Problem:
    """Returns one random instance (arrays; ``()`` when the data is the problem)."""

  def loss(self, params: Params, problem: Problem, key: jax.Array) -> jax.Array:
    """Returns the scalar minibatch loss; the batch is drawn with ``key`` inside jit."""

  def full_loss(self, params: Params, problem: Problem) -> jax.Array:
    """Returns the exact loss, or the loss on the whole training split."""


class TaskFamily(Protocol):
  """A distribution over tasks."""

  name: str

  def sample_task(self, rng: np.random.Generator) -> Task:
    """Draws a task; structural choices are made with ``rng`` in Python."""
