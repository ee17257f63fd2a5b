"""Data-parallel meta-training: the batch of problems laid over devices.

A meta-step is one SPMD program. The problems of ``state.inner`` (the
``num_tasks`` problems of BPTT and ES, the ``2 * num_pairs`` particles of PES)
are split along their leading axis over a one-dimensional mesh whose axis is
named ``'tasks'``; everything else (meta-parameters, the meta-optimizer's
state, the task's data, keys) is replicated. XLA partitions the ``vmap`` over
problems and turns the mean over problems into an all-reduce, so the
meta-gradient, and every meta-parameter after it, equals a single device's to
float rounding. The mesh may span the devices of several processes
(``jax.distributed.initialize``): each process then computes only its own
share of the problems.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from l2l._meta import MetaTrainState

TASK_AXIS = 'tasks'


def task_mesh(num_devices: int | None = None) -> Mesh:
  """A one-axis mesh (``'tasks'``) over the first ``num_devices`` devices.

  Args:
    num_devices: how many of ``jax.devices()`` (all processes' devices, in
      JAX's global order) to use; all of them when None. With several
      processes it must be all of them, so that every process holds a share.

  Returns:
    A ``jax.sharding.Mesh`` of shape ``[num_devices]``.

  Raises:
    ValueError: ``num_devices`` is below 1, above the number of devices, or
      leaves out the devices of some process.
  """
  devices = jax.devices()
  count = len(devices) if num_devices is None else num_devices
  if not isinstance(count, (int, np.integer)) or not 1 <= count <= len(devices):
    raise ValueError(f'the number of devices must be an int from 1 to the '
                     f'{len(devices)} that JAX sees, got {num_devices!r}')
  if jax.process_count() > 1 and count != len(devices):
    raise ValueError(
        f'with {jax.process_count()} processes, meta-training uses all '
        f'{len(devices)} devices (every process holds a share of the '
        f'problems); got {num_devices}')
  return Mesh(np.asarray(devices[:count]), (TASK_AXIS,))


def state_shardings(state: MetaTrainState, mesh: Mesh) -> MetaTrainState:
  """Shardings of a meta-training state: problems split, the rest replicated.

  Args:
    state: a :class:`l2l.MetaTrainState` (arrays or ``jax.ShapeDtypeStruct``).
    mesh: a mesh with a ``'tasks'`` axis (:func:`task_mesh`).

  Returns:
    A tree like ``state`` of ``NamedSharding``: ``P('tasks')`` on every leaf of
    ``state.inner`` (split along the problem axis), ``P()`` elsewhere.

  Raises:
    ValueError: the number of problems is not divisible by the mesh's size;
      the message names both.
  """
  for size in {np.shape(x)[0] for x in jax.tree.leaves(state.inner)}:
    check_divisible(size, mesh)
  whole = NamedSharding(mesh, PartitionSpec())
  shardings = jax.tree.map(lambda _: whole, state)
  return shardings._replace(
      inner=jax.tree.map(lambda _: split(mesh), state.inner))


def split(mesh: Mesh) -> NamedSharding:
  """Arrays split along their leading (problem) axis over ``mesh``."""
  return NamedSharding(mesh, PartitionSpec(TASK_AXIS))


def check_divisible(num_problems: int, mesh: Mesh) -> None:
  """Raises ValueError unless ``num_problems`` splits evenly over ``mesh``."""
  devices = mesh.shape[TASK_AXIS]
  if num_problems % devices:
    raise ValueError(
        f'the {num_problems} problems of a meta-step (num_tasks; 2 * '
        f'num_tasks particles for PES) must be divisible by the number of '
        f'devices, {devices}')


def constrain(state: MetaTrainState, mesh: Mesh) -> MetaTrainState:
  """``state`` under :func:`state_shardings`, inside a traced function."""
  return jax.lax.with_sharding_constraint(state, state_shardings(state, mesh))


def host_task(task: Any) -> Any:
  """``task`` with its arrays as NumPy arrays.

  A jitted meta-step over a mesh takes host data as replicated input on
  every process; device arrays committed to one device cannot cross into a
  mesh that spans other processes' devices.
  """
  def to_host(x):
    if isinstance(x, jax.Array) and not jax.dtypes.issubdtype(
        x.dtype, jax.dtypes.prng_key):
      return np.asarray(x)
    return x
  return jax.tree.map(to_host, task)
