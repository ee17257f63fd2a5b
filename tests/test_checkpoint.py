"""Checkpoint format: round trips, atomic writes, clear errors."""

import io
import json
import os
import warnings
import zipfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2l

TREE = {
    'f32': jnp.arange(6.0).reshape(2, 3),
    'bf16': jnp.array([1.5, -2.0], jnp.bfloat16),
    'int': jnp.array(7, jnp.int32),
    'nested': [jnp.zeros((0, 2)), (jnp.ones(1, jnp.float16),)],
    'key': jax.random.split(jax.random.key(3), 2),
    'none': None,
}


def _like(tree):
  return jax.eval_shape(lambda: tree)


def test_round_trip_keeps_values_and_dtypes(tmp_path):
  path = tmp_path / 'c.npz'
  l2l.save_checkpoint(path, TREE, {'note': 'hi'})
  tree, manifest = l2l.load_checkpoint(path, _like(TREE))
  assert manifest['note'] == 'hi' and manifest['format_version'] == 1
  keys = lambda t: jax.random.key_data(t['key'])
  np.testing.assert_array_equal(keys(tree), keys(TREE))
  strip = lambda t: {k: v for k, v in t.items() if k != 'key'}
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b) or None,
               strip(tree), strip(TREE))
  assert jax.tree.map(lambda x: x.dtype, strip(tree)) == jax.tree.map(
      lambda x: x.dtype, strip(TREE))


def test_meta_params_round_trip_with_manifest(tmp_path):
  meta_params = l2l.init_meta_params(jax.random.key(0), hidden_size=5,
                                     num_layers=3)
  path = tmp_path / 'm.npz'
  l2l.save_meta_params(path, meta_params, config={'hidden_size': 5,
                                                  'num_layers': 3},
                       task_family='quadratic', seed=4, meta_steps=10)
  loaded, manifest = l2l.load_meta_params(path)
  jax.tree.map(np.testing.assert_array_equal, loaded, meta_params)
  for field in ('task_family', 'seed', 'meta_steps', 'date', 'l2l_version',
                'config'):
    assert field in manifest
  assert l2l.architecture(loaded) == {'design': 'paper', 'hidden_size': 5,
                                      'num_layers': 3}


def test_write_is_atomic_and_leaves_no_temporary(tmp_path, monkeypatch):
  path = tmp_path / 'c.npz'
  l2l.save_checkpoint(path, {'a': jnp.ones(2)}, {})
  before = path.read_bytes()

  def fail(*args, **kwargs):
    raise OSError('disk full')

  monkeypatch.setattr(np, 'savez', fail)
  with pytest.raises(OSError, match='disk full'):
    l2l.save_checkpoint(path, {'a': jnp.zeros(2)}, {})
  assert path.read_bytes() == before
  assert os.listdir(tmp_path) == ['c.npz']


def _truncated(path):
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])


def _garbage(path):
  path.write_bytes(b'not a zip file at all')


def _json(path):
  path.write_text('{"meta_params": [1, 2]}')


def _foreign_npz(path):
  np.savez(path, a=np.ones(2))


def _wrong_version(path):
  with zipfile.ZipFile(path) as z:
    entries = {n: z.read(n) for n in z.namelist()}
  manifest = json.loads(np.lib.format.read_array(
      io.BytesIO(entries['manifest.json.npy'])).tobytes())
  manifest['format_version'] = 99
  arrays = {n[:-4]: np.lib.format.read_array(io.BytesIO(v))
            for n, v in entries.items() if n != 'manifest.json.npy'}
  arrays['manifest.json'] = np.frombuffer(json.dumps(manifest).encode(),
                                          np.uint8)
  np.savez(path, **arrays)


@pytest.mark.parametrize('corrupt, message', [
    (_truncated, 'corrupt or truncated'),
    (_garbage, 'not an l2l checkpoint .*a .npz zip archive'),
    (_json, 'not an l2l checkpoint .*a .npz zip archive'),
    (_foreign_npz, 'not an l2l checkpoint'),
    (_wrong_version, 'format version 99'),
])
def test_corrupt_files_raise_naming_file(tmp_path, corrupt, message):
  path = tmp_path / 'bad.npz'
  l2l.save_checkpoint(path, {'a': jnp.ones(2)}, {})
  corrupt(path)
  with pytest.raises(l2l.CheckpointError, match=message) as info:
    l2l.load_checkpoint(path, {'a': jax.ShapeDtypeStruct((2,), jnp.float32)})
  assert str(path) in str(info.value)
  assert 'pickle' not in str(info.value)  # never suggest unsafe loading


@pytest.mark.parametrize('like, message', [
    ({'a': jax.ShapeDtypeStruct((3,), jnp.float32)}, 'incompatible entry'),
    ({'a': jax.ShapeDtypeStruct((2,), jnp.int32)}, 'incompatible entry'),
    ({'b': jax.ShapeDtypeStruct((2,), jnp.float32)}, 'missing entries'),
])
def test_incompatible_structure_raises(tmp_path, like, message):
  path = tmp_path / 'c.npz'
  l2l.save_checkpoint(path, {'a': jnp.ones(2)}, {})
  with pytest.raises(l2l.CheckpointError, match=message):
    l2l.load_checkpoint(path, like)


def test_missing_file_and_wrong_kind(tmp_path):
  with pytest.raises(l2l.CheckpointError, match='no such checkpoint'):
    l2l.load_meta_params(tmp_path / 'nope.npz')
  path = tmp_path / 'c.npz'
  l2l.save_checkpoint(path, {'a': jnp.ones(2)}, {})
  with pytest.raises(l2l.CheckpointError, match='not a meta-parameter'):
    l2l.load_meta_params(path)
  with pytest.raises(l2l.CheckpointError, match='not a meta-parameter'):
    l2l.lstm_optimizer(str(path))


def test_compact_meta_params_without_the_fade_out_name_the_version(tmp_path):
  """A compact file of l2l 0.7 (no fade-out timescale, 11 LSTM outputs)."""
  path = tmp_path / 'm.npz'
  meta_params = l2l.init_meta_params(jax.random.key(0), design='compact',
                                     hidden_size=4, num_layers=1)
  del meta_params['mlp']['output']['log_fade']
  l2l.save_checkpoint(path, meta_params, {
      'kind': 'meta_params', 'l2l_version': '0.7.0',
      'config': {'design': 'compact', 'hidden_size': 4, 'num_layers': 1}})
  with pytest.raises(l2l.CheckpointError, match='saved by l2l 0.7.0, before'):
    l2l.load_meta_params(path)


def test_incompatible_architecture_raises(tmp_path):
  path = tmp_path / 'm.npz'
  meta_params = l2l.init_meta_params(jax.random.key(0), hidden_size=5)
  with pytest.raises(ValueError, match="config {'hidden_size': 6} differs"):
    l2l.save_meta_params(path, meta_params, config={'hidden_size': 6})
  # a file whose manifest disagrees with its arrays
  l2l.save_checkpoint(path, meta_params, {
      'kind': 'meta_params', 'config': {'design': 'paper', 'hidden_size': 6,
                                        'num_layers': 2}})
  with pytest.raises(l2l.CheckpointError, match='incompatible entry'):
    l2l.load_meta_params(path)


@pytest.mark.parametrize('name', ['lstm_optimizer.npz', 'paper2016.npz'])
def test_shipped_configurations_load_with_manifest(name):
  meta_params, manifest = l2l.load_meta_params(
      os.path.join(os.path.dirname(l2l.__file__), 'default', name))
  arch = l2l.architecture(meta_params)
  assert arch == {'design': manifest['config'].get('design', 'paper'),
                  'hidden_size': manifest['config']['hidden_size'],
                  'num_layers': manifest['config']['num_layers']}
  for field in ('command', 'seed', 'meta_steps', 'task_family', 'wall_time_s'):
    assert field in manifest


@pytest.mark.parametrize('design, saved_by, warns', [
    ('free', '0.1.0', True),  # the free rule changed in 0.2.0
    ('free', 'unknown', True),
    ('free', l2l.__version__, False),
    ('free', '0.10.0', False),
    ('hyper', '0.1.0', False),
])
def test_free_meta_params_of_an_older_rule_warn_on_load(
    tmp_path, monkeypatch, design, saved_by, warns):
  path = tmp_path / 'm.npz'
  monkeypatch.setattr(l2l, '__version__', saved_by)
  l2l.save_meta_params(path, l2l.init_meta_params(jax.random.key(0),
                                                  design=design),
                       config={'design': design})
  monkeypatch.undo()
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    l2l.load_meta_params(path)
  messages = [str(w.message) for w in caught]
  assert any(f'saved by l2l {saved_by}' in m for m in messages) == warns


@pytest.mark.parametrize('missing', [
    ('average_growth', 'spike_cut', 'second_moment_rate',
     'second_moment_warmup'),  # before 0.3.0
    ('spike_cut', 'second_moment_rate', 'second_moment_warmup'),  # 0.3.x
    ('second_moment_rate', 'second_moment_warmup'),  # saved by 0.4.x
    ('second_moment_warmup',),  # saved by 0.5.x
])
def test_free_meta_params_saved_without_later_entries_run_their_rule(
    tmp_path, missing):
  """Entries a later l2l added load as 0, which is the rule they ran."""
  meta_params = l2l.init_meta_params(jax.random.key(0), design='free')
  old = {**meta_params, 'nominal': {k: v for k, v in
                                    meta_params['nominal'].items()
                                    if k not in missing}}
  path = tmp_path / 'old.npz'
  l2l.save_meta_params(path, old, config={'design': 'free'})
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # saved by this version: no warning
    loaded, _ = l2l.load_meta_params(path)
  for entry, value in meta_params['nominal'].items():
    want = 0.0 if entry in missing else float(value)
    assert float(loaded['nominal'][entry]) == want
  new_path = tmp_path / 'new.npz'
  l2l.save_meta_params(new_path, meta_params, config={'design': 'free'})
  chex.assert_trees_all_equal(l2l.load_meta_params(new_path)[0], meta_params)
