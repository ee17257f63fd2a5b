"""Run checkpoints of ``python -m meta_train``, written with orbax-checkpoint.

A run keeps its latest checkpoints in ``OUT/checkpoints/<step>/``: the
meta-training state (``l2l.MetaTrainState``, whose problems may be split over
the devices of several processes) and a JSON manifest (step, elapsed time,
config, and the key path, dtype and shape of every leaf). Orbax writes each
process's shards in parallel and in the background, and makes a step visible
only once every process has finished it, so a killed run leaves its previous
checkpoint intact. Leaves are stored under numbered entries named in the
manifest by their key path, as in ``l2l.save_checkpoint``: a run saved
before a later l2l added a meta-parameter resumes with it at zero, and a
run resumes on any number of devices or processes (the restored arrays take
the shardings of the state they are restored into).

Runs of l2l 0.7 and earlier wrote one file, ``OUT/checkpoint.npz``; they
resume from it.
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from l2l import _checkpoint

DIRECTORY = 'checkpoints'
LEGACY = 'checkpoint.npz'  # l2l <= 0.7


def manager(out_dir: str) -> ocp.CheckpointManager:
  """The checkpoint manager of a run directory (keeps the last two)."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(out_dir, DIRECTORY)),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def _entries(tree) -> tuple[dict[str, jax.Array], dict[str, list]]:
  """Numbered arrays to store and the ``{key path: [entry, dtype name,
  shape]}`` that names them; PRNG keys are stored as their key data."""
  arrays, leaves = {}, {}
  for i, (path, x) in enumerate(jax.tree_util.tree_flatten_with_path(tree)[0]):
    entry = f'{i:05d}'
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      arrays[entry] = jax.random.key_data(x)
      dtype = f'key:{jax.random.key_impl(x)}'
    else:
      arrays[entry], dtype = x, str(x.dtype)
    leaves[jax.tree_util.keystr(path)] = [entry, dtype, list(x.shape)]
  return arrays, leaves


def save(checkpoints: ocp.CheckpointManager, step: int, state: Any,
         manifest: dict) -> None:
  """Starts writing ``state`` and ``manifest`` as checkpoint ``step``.

  Every process must call it (orbax writes each process's shards). It
  returns once the arrays are copied off the devices; the files are written
  in the background (``checkpoints.wait_until_finished()`` waits).
  """
  arrays, leaves = _entries(state)
  checkpoints.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(arrays),
      manifest=ocp.args.JsonSave({**manifest, 'leaves': leaves})))


def latest(out_dir: str) -> tuple[ocp.CheckpointManager | None, int | None]:
  """``(manager, step)`` of the run's latest checkpoint; ``(None, None)``
  when there is none."""
  if not os.path.isdir(os.path.join(out_dir, DIRECTORY)):
    return None, None
  checkpoints = manager(out_dir)
  step = checkpoints.latest_step()
  return (checkpoints, step) if step is not None else (None, None)


def read_manifest(checkpoints: ocp.CheckpointManager, step: int) -> dict:
  """The manifest of checkpoint ``step``."""
  return checkpoints.restore(step, args=ocp.args.Composite(
      manifest=ocp.args.JsonRestore()))['manifest']


def restore(checkpoints: ocp.CheckpointManager, step: int, like: Any,
            shardings: Any) -> Any:
  """Checkpoint ``step`` as a tree like ``like`` placed by ``shardings``.

  Args:
    checkpoints: the run's manager (:func:`latest`).
    step: a step it holds.
    like: the expected tree of ``jax.ShapeDtypeStruct``.
    shardings: a tree like ``like`` of ``jax.sharding.Sharding``.

  Raises:
    l2l.CheckpointError: the checkpoint does not hold a tree like ``like``.
  """
  path = os.path.join(str(checkpoints.directory), str(step))
  stored = read_manifest(checkpoints, step)['leaves']
  placement = {jax.tree_util.keystr(k): s for k, s in
               jax.tree_util.tree_flatten_with_path(shardings)[0]}
  expected = {jax.tree_util.keystr(k) for k, _ in
              jax.tree_util.tree_flatten_with_path(like)[0]}
  abstract = {}
  for name, (entry, dtype, shape) in stored.items():
    if name not in expected:
      continue  # entries_to_tree names it
    if dtype.startswith('key:'):
      shape, dtype = [*shape, *_key_data_shape(dtype)], 'uint32'
    abstract[entry] = jax.ShapeDtypeStruct(tuple(shape), dtype,
                                           sharding=placement[name])
  arrays = checkpoints.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract)))['state']
  data = {name: arrays[entry] for name, (entry, _, _) in stored.items()
          if entry in arrays}
  data.update({name: None for name in stored if name not in expected})
  dtypes = {name: [dtype, shape] for name, (_, dtype, shape) in stored.items()}
  return _checkpoint.entries_to_tree(path, data, dtypes, like)


def _key_data_shape(dtype: str) -> tuple[int, ...]:
  """Trailing shape of the key data of one key of implementation ``dtype``."""
  impl = dtype[len('key:'):]
  return jax.random.key_data(jax.random.key(0, impl=impl)).shape

