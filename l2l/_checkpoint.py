"""Checkpoint format: a pytree of arrays plus a JSON manifest in one file.

A checkpoint is a single ``.npz`` (zip) file. Entry ``manifest.json`` holds
the manifest as UTF-8 bytes; every leaf of the tree is stored under its
key path (``jax.tree_util.keystr``), with dtypes that numpy cannot store
natively (bfloat16) saved as same-width unsigned integers and restored from
the dtype recorded in the manifest. Files are written to a temporary file in
the same directory and renamed into place, so a reader never sees half a
checkpoint.
"""

import datetime
import json
import os
import tempfile
import warnings
import zipfile
from typing import Any

import jax
import numpy as np

from l2l import _network

FORMAT = 'l2l-checkpoint'
FORMAT_VERSION = 1
_MANIFEST = 'manifest.json'


class CheckpointError(ValueError):
  """A checkpoint file is missing, corrupt, truncated or incompatible."""


_SHIPPED = os.path.join(os.path.dirname(__file__), 'default')
# Named configurations shipped inside the package.
NAMED = {'default': os.path.join(_SHIPPED, 'lstm_optimizer.npz'),
         'paper2016': os.path.join(_SHIPPED, 'paper2016.npz')}


def reject_loaded_tuple(meta_params: Any, caller: str) -> None:
  """Raises if ``meta_params`` is the ``(meta_params, manifest)`` tuple
  that :func:`load_meta_params` returns."""
  if isinstance(meta_params, tuple) and len(meta_params) == 2 and (
      isinstance(meta_params[1], dict)):
    raise ValueError(f'{caller}: got a (meta_params, manifest) tuple, as '
                     'l2l.load_meta_params returns; pass its first entry')


def resolve_path(name_or_path: str | os.PathLike | None) -> str:
  """The file of a shipped configuration's name (``None`` is
  ``'default'``), or ``name_or_path`` itself if it is an existing file.

  Raises:
    CheckpointError: neither a shipped name nor an existing file; the
      message lists the shipped names.
  """
  if name_or_path is None or name_or_path in NAMED:
    return NAMED[name_or_path or 'default']
  path = os.fspath(name_or_path)
  if not os.path.isfile(path):
    raise CheckpointError(
        f'{path}: no such checkpoint file, and not the name of a shipped '
        f'configuration (one of {", ".join(map(repr, NAMED))})')
  return path


# l2l 0.2.0 changed the free design's rule (second moment decay 0.99, not
# 0.999; average weighted by the largest step so far, not the current one).
FREE_RULE_VERSION = (0, 2, 0)
# l2l 0.8.0 added the compact design's fade-out of its learned corrections
# (a fourth LSTM output and this timescale).
COMPACT_FADE_ENTRY = "['mlp']['output']['log_fade']"
# Entries added by later l2l versions whose zero value reproduces the
# earlier behaviour: a checkpoint saved without them loads with zeros there.
# 0.3.0 added the free design's average growth rate (and with it its entries
# in a meta-training run's optimizer state); at 0 the rule is 0.2.0's. 0.4.0
# added its spike cut; at 0 the rule is 0.3.0's. 0.5.0 made the log rate of
# its second moment a meta-parameter; at 0 it decays at 0.99, as before.
# 0.6.0 added the second moment's warm-up; at 0 there is none, as before.
ADDED_ENTRIES = ("['nominal']['average_growth']", "['nominal']['spike_cut']",
                 "['nominal']['second_moment_rate']",
                 "['nominal']['second_moment_warmup']")


def _version(text) -> tuple[int, ...]:
  try:
    return tuple(int(part) for part in str(text).split('.')[:3])
  except ValueError:
    return ()


def _is_key(x) -> bool:
  return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_numpy(x) -> tuple[np.ndarray, str]:
  """Returns the stored array and the dtype name recorded for it."""
  if _is_key(x):
    return np.asarray(jax.random.key_data(x)), f'key:{jax.random.key_impl(x)}'
  array = np.asarray(x)
  if array.dtype.isbuiltin:
    return array, str(array.dtype)
  return array.view(np.dtype(f'u{array.dtype.itemsize}')), str(array.dtype)


def _from_numpy(array: np.ndarray, dtype_name: str):
  if dtype_name.startswith('key:'):
    return jax.random.wrap_key_data(array, impl=dtype_name[4:])
  dtype = np.dtype(dtype_name)
  return array if array.dtype == dtype else array.view(dtype)


def save_checkpoint(path: str | os.PathLike, tree: Any, manifest: dict) -> None:
  """Writes ``tree`` and ``manifest`` to ``path`` atomically.

  Args:
    path: destination file (conventionally ``*.npz``).
    tree: a pytree of arrays.
    manifest: JSON-serialisable metadata; ``format``, ``format_version``,
      ``date`` and the leaf dtypes and shapes are added.
  """
  path = os.fspath(path)
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  stored = {jax.tree_util.keystr(k): _to_numpy(v) for k, v in leaves}
  full_manifest = dict(manifest)
  full_manifest.update(
      format=FORMAT, format_version=FORMAT_VERSION,
      date=full_manifest.get('date') or datetime.datetime.now(
          datetime.timezone.utc).isoformat(timespec='seconds'),
      leaves={k: [d, list(v.shape)] for k, (v, d) in stored.items()})
  entries = {k: v for k, (v, _) in stored.items()}
  entries[_MANIFEST] = np.frombuffer(
      json.dumps(full_manifest, indent=1).encode(), np.uint8)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix='.npz')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **entries)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def read_manifest(path: str | os.PathLike) -> dict:
  """Returns the manifest of the checkpoint at ``path``."""
  return _read(path, arrays=False)[1]


def _read(path, arrays: bool) -> tuple[dict, dict]:
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise CheckpointError(f'{path}: no such checkpoint file')
  with open(path, 'rb') as f:
    is_zip = f.read(4) == b'PK\x03\x04'
  if not is_zip:  # numpy would suggest unsafe pickle loading
    raise CheckpointError(
        f'{path}: not an l2l checkpoint (an l2l checkpoint is a .npz zip '
        'archive written by l2l.save_checkpoint or l2l.save_meta_params)')
  try:
    with np.load(path, allow_pickle=False) as npz:
      if _MANIFEST not in npz.files:
        raise CheckpointError(f'{path}: not an l2l checkpoint (no manifest)')
      manifest = json.loads(npz[_MANIFEST].tobytes().decode())
      data = {k: npz[k] for k in npz.files if k != _MANIFEST} if arrays else {}
  except CheckpointError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
    raise CheckpointError(
        f'{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})'
    ) from e
  if manifest.get('format') != FORMAT:
    raise CheckpointError(f'{path}: not an l2l checkpoint')
  if manifest.get('format_version') != FORMAT_VERSION:
    raise CheckpointError(
        f'{path}: checkpoint format version {manifest.get("format_version")}'
        f' is not supported (this l2l reads version {FORMAT_VERSION})')
  return data, manifest


def load_checkpoint(path: str | os.PathLike, like: Any) -> tuple[Any, dict]:
  """Reads a checkpoint into the structure of ``like``.

  Entries of ``like`` that a later l2l added (``ADDED_ENTRIES``, matched by
  the end of their key path) and the file lacks load as zeros, which
  reproduces the behaviour the file was saved under.

  Args:
    path: a file written by :func:`save_checkpoint`.
    like: a pytree (arrays or ``jax.ShapeDtypeStruct``) giving the expected
      structure, shapes and dtypes.

  Returns:
    ``(tree, manifest)`` where ``tree`` has the structure of ``like`` and
    numpy array leaves (JAX key arrays for PRNG key leaves).

  Raises:
    CheckpointError: the file is missing, corrupt or does not match ``like``;
      the message names the file and the problem.
  """
  data, manifest = _read(path, arrays=True)
  return entries_to_tree(path, data, manifest.get('leaves', {}), like), manifest


def entries_to_tree(path: str, data: dict, dtypes: dict, like: Any) -> Any:
  """The tree ``like`` from its leaves stored by key path (``data``), with
  ``dtypes`` the manifest's ``{key path: [dtype name, shape]}``; entries
  in ``ADDED_ENTRIES`` that ``data`` lacks are zeros.

  Raises:
    CheckpointError: naming ``path``, entries missing, unexpected or of
      another shape or dtype.
  """
  expected, treedef = jax.tree_util.tree_flatten_with_path(like)
  wanted = {jax.tree_util.keystr(k) for k, _ in expected}
  added = {k for k in wanted - set(data) if k.endswith(ADDED_ENTRIES)}
  if set(data) != wanted - added:
    missing = sorted(wanted - added - set(data))
    extra = sorted(set(data) - wanted)
    raise CheckpointError(
        f'{path}: incompatible checkpoint: missing entries {missing[:5]},'
        f' unexpected entries {extra[:5]}')
  leaves = []
  for key_path, spec in expected:
    name = jax.tree_util.keystr(key_path)
    if name in added:
      leaves.append(np.zeros(spec.shape, spec.dtype))
      continue
    try:
      array = _from_numpy(data[name], dtypes.get(name, [str(data[name].dtype)])[0])
    except (TypeError, ValueError) as e:
      raise CheckpointError(f'{path}: unreadable entry {name}: {e}') from e
    if array.shape != tuple(spec.shape) or array.dtype != spec.dtype:
      raise CheckpointError(
          f'{path}: incompatible entry {name}: stored {array.dtype}'
          f'{list(array.shape)}, expected {spec.dtype}{list(spec.shape)}')
    leaves.append(array)
  return jax.tree_util.tree_unflatten(treedef, leaves)


def save_meta_params(
    path: str | os.PathLike, meta_params: Any, *, config: dict | None = None,
    **metadata
) -> None:
  """Saves learned-optimizer meta-parameters with their architecture.

  Args:
    path: destination ``.npz`` file, written atomically.
    meta_params: the pytree made by :func:`l2l.init_meta_params` or training.
    config: options stored beside the architecture: ``preprocess_p`` and
      ``output_scale`` of :func:`l2l.lstm_optimizer`, which a loaded file
      then uses by default. The architecture (``design``, ``hidden_size``,
      ``num_layers``) is read off ``meta_params`` (:func:`l2l.architecture`).
    **metadata: recorded in the manifest (task family, meta-steps, seed,
      command, wall time, ...).

  Raises:
    ValueError: ``meta_params`` is not a learned optimizer's, or ``config``
      names an architecture that differs from it.
  """
  from l2l import __version__  # pylint: disable=g-import-not-at-top
  reject_loaded_tuple(meta_params, 'save_meta_params')
  arch = _network.architecture(meta_params)
  config = dict(config or {})
  clash = {k: v for k, v in config.items() if k in arch and v != arch[k]}
  if clash:
    raise ValueError(f'save_meta_params: config {clash} differs from the '
                     f'architecture of meta_params {arch}')
  manifest = dict(metadata, kind='meta_params', config={**config, **arch},
                  l2l_version=__version__)
  save_checkpoint(path, meta_params, manifest)


def load_meta_params(path: str | os.PathLike) -> tuple[Any, dict]:
  """Loads meta-parameters saved by :func:`save_meta_params`.

  Args:
    path: a file, or the name of a configuration shipped with l2l
      (``'default'``, ``'paper2016'``).

  Returns:
    ``(meta_params, manifest)``: float32 arrays (also under
    ``jax_enable_x64``); ``manifest['config']`` holds the architecture and
    the stored options of :func:`l2l.lstm_optimizer`.

  Raises:
    CheckpointError: missing (naming the shipped configurations), corrupt,
      not an l2l checkpoint, or incompatible with this l2l.
  """
  path = resolve_path(path)
  manifest = read_manifest(path)
  config = manifest.get('config')
  if manifest.get('kind') != 'meta_params' or not isinstance(config, dict):
    raise CheckpointError(f'{os.fspath(path)}: not a meta-parameter checkpoint')
  shape_kwargs = {k: config[k] for k in ('design', 'hidden_size', 'num_layers')
                  if k in config}
  if (config.get('design') == 'compact'
      and COMPACT_FADE_ENTRY not in manifest.get('leaves', {})):
    raise CheckpointError(
        f'{os.fspath(path)}: compact-design meta-params saved by l2l '
        f'{manifest.get("l2l_version")}, before the compact design had its '
        'fade-out of the learned corrections (l2l 0.8.0); meta-train them '
        'again with this l2l, or load them with l2l 0.7')
  try:
    like = jax.eval_shape(lambda: _network.init_meta_params(
        jax.random.key(0), **shape_kwargs))
  except (TypeError, ValueError) as e:
    raise CheckpointError(
        f'{os.fspath(path)}: incompatible architecture {config}: {e}') from e
  meta_params, manifest = load_checkpoint(path, like)
  saved_by = manifest.get('l2l_version')
  if (config.get('design') == 'free'
      and _version(saved_by) < FREE_RULE_VERSION):
    warnings.warn(
        f'{os.fspath(path)}: free-design meta-params saved by l2l '
        f'{saved_by}, whose free rule differs from this one (since 0.2.0 the '
        'second moment decays at 0.99 and the schedule-free average weighs '
        'iterates by the largest step so far); they will run under the new '
        'rule', stacklevel=2)
  return jax.tree.map(jax.numpy.asarray, meta_params), manifest
