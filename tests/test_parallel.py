"""Meta-training over several devices and processes (issue: beyond one
device). Each case runs in its own Python process: forced host devices and
jax.distributed must be set before JAX starts."""

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import l2l
from meta_train import __main__ as cli
from meta_train import config as config_lib
from meta_train import train as train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ['--family', 'x_squared', '--meta-steps', '4', '--num-tasks', '4',
         '--unroll-length', '5', '--episode-length', '10', '--hidden-size',
         '4', '--design', 'paper', '--num-layers', '1', '--checkpoint-every',
         '2', '--no-eval', '--no-progress', '--compilation-cache', '']

# Runs on 4 forced host devices; prints one JSON line of findings. The
# paper design: how the problems are split over devices does not depend on
# the design, and its meta-steps compile in a third of the free design's
# time (each device count compiles its own).
_DEVICES_SCRIPT = r'''
import dataclasses, json, sys, tempfile
import jax, numpy as np
from meta_train import config as config_lib, train as train_lib
import l2l
from meta_train import __main__ as cli
from meta_train import config as config_lib
from meta_train import train as train_lib

base = config_lib.TrainConfig(family='x_squared', meta_steps=4, num_tasks=4,
                              unroll_length=5, episode_length=10,
                              design='paper', hidden_size=4, num_layers=1,
                              checkpoint_every=2)
out = {'devices': len(jax.devices())}
def run(config, devices, **kwargs):
  directory = kwargs.pop('out', None) or tempfile.mkdtemp()
  path = train_lib.train(config, directory, progress=False, devices=devices,
                         **kwargs)
  return directory, path
def leaves(path):
  return [np.asarray(x).tolist() for x in
          jax.tree.leaves(l2l.load_meta_params(path)[0])]
config = dataclasses.replace(base, estimator='pes')
out['pes_1'] = leaves(run(config, 1)[1])
directory, _ = run(config, 4, stop_after=2)  # stopped on 4 devices,
out['pes_4'] = leaves(run(config, 2, out=directory, resume=True)[1])  # on 2
trainer = train_lib.Trainer(config, l2l.task_mesh(4))
out['pes_split'] = min(len(x.sharding.device_set)
                       for x in jax.tree.leaves(trainer.initial_state().inner))
import tasks
start = l2l.init_meta_params(jax.random.key(0), design='paper', hidden_size=4,
                             num_layers=1)
out['es_fresh'] = [np.asarray(x).tolist() for x in jax.tree.leaves(start)]
for devices in (1, 4):  # the library's entry point, with ES
  meta_params, _ = l2l.meta_train(
      tasks.get_family('x_squared'), meta_steps=3, num_tasks=4,
      unroll_length=5, es_pairs=2, devices=devices, meta_params=start)
  out[f'es_{devices}'] = [np.asarray(x).tolist()
                          for x in jax.tree.leaves(meta_params)]
try:
  run(dataclasses.replace(base, num_tasks=3), 4)
except ValueError as e:
  out['indivisible'] = str(e)
print('RESULT ' + json.dumps(out))
'''


def _python(args, env=None, **kwargs):
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu',
         **(env or {})}
  return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kwargs)


def _finish(process, timeout=300):
  output, _ = process.communicate(timeout=timeout)
  assert process.returncode == 0, output[-3000:]
  return output


@pytest.fixture(scope='module')
def four_devices():
  output = _finish(_python(
      ['-c', _DEVICES_SCRIPT],
      env={'XLA_FLAGS': os.environ.get('XLA_FLAGS', '')
           + ' --xla_force_host_platform_device_count=4'}))
  line = [l for l in output.splitlines() if l.startswith('RESULT ')][-1]
  return json.loads(line[len('RESULT '):])


def _close(a, b):
  for x, y in zip(a, b, strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5,
                               atol=1e-6)


def test_four_devices_reach_one_devices_meta_params(four_devices):
  """One test for every finding of the 4-device process, so that xdist runs
  its module fixture (a subprocess) once, not once per worker."""
  assert four_devices['devices'] == 4
  assert four_devices['pes_split'] == 4  # problems on every device
  fresh = {'pes': jax.tree.leaves(l2l.init_meta_params(
               jax.random.split(jax.random.key(0), 3)[0], design='paper',
               hidden_size=4, num_layers=1)),
           'es': four_devices['es_fresh']}
  # 'pes': python -m meta_train's loop, stopped after 2 meta-steps on 4
  # devices and resumed on 2; 'es': l2l.meta_train(devices=...).
  for estimator in ('pes', 'es'):
    _close(four_devices[estimator + '_4'], four_devices[estimator + '_1'])
    # and the meta-params moved: the comparison is not of two fresh inits
    assert any(not np.allclose(np.asarray(x), np.asarray(y)) for x, y in
               zip(four_devices[estimator + '_1'], fresh[estimator])), estimator
  # an indivisible problem count is named
  assert 'must be divisible by the number of devices, 4' in (
      four_devices['indivisible'])
  assert 'the 3 problems' in four_devices['indivisible']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_reach_one_process_meta_params(tmp_path):
  """Two local CPU processes (jax.distributed, gloo collectives) meta-train
  as one process with the same total batch; only process 0 writes; this
  single process extends their run from its checkpoint."""
  port = _free_port()
  multi = [_python(['-m', 'meta_train', *FLAGS, '--out', str(tmp_path / 'two'),
                    '--coordinator-address', f'127.0.0.1:{port}',
                    '--num-processes', '2', '--process-id', str(i)])
           for i in range(2)]
  outputs = [_finish(process) for process in multi]
  assert 'wrote' in outputs[0] and 'wrote' not in outputs[1]
  config = config_lib.from_arguments(_parser().parse_args(FLAGS))
  one = train_lib.train(config, tmp_path / 'one', progress=False)
  _close(_meta_params(tmp_path / 'two' / 'meta_params.npz'), _meta_params(one))
  with open(tmp_path / 'two' / 'metrics.jsonl') as f:
    assert [json.loads(l)['step'] for l in f] == [0, 1, 2, 3]
  longer = dataclasses.replace(config, meta_steps=6)
  extended = train_lib.train(longer, tmp_path / 'two', resume=True,
                             progress=False)
  whole = train_lib.train(longer, tmp_path / 'long', progress=False)
  _close(_meta_params(extended), _meta_params(whole))
  assert l2l.read_manifest(extended)['meta_steps'] == 6


def _parser():
  parser = argparse.ArgumentParser()
  cli.add_device_arguments(parser)
  config_lib.add_arguments(parser)
  for flag in ('--no-eval', '--no-progress'):
    parser.add_argument(flag, action='store_true')
  parser.add_argument('--compilation-cache')
  return parser


def _meta_params(path):
  return jax.tree.leaves(l2l.load_meta_params(path)[0])


@pytest.mark.parametrize('num_devices', [0, len(jax.devices()) + 1, 1.5, '1'])
def test_a_bad_device_count_is_named(num_devices):
  with pytest.raises(ValueError, match='number of devices must be an int'):
    l2l.task_mesh(num_devices)


def test_state_shardings_split_the_problems_only():
  mesh = l2l.task_mesh(1)
  inner = l2l.InnerState({'w': np.zeros((2, 3))}, (), (), np.zeros((2,)),
                         np.zeros((2,), np.int32))
  state = l2l.MetaTrainState({'m': np.zeros(4)}, (), inner, np.int32(0))
  shardings = l2l.state_shardings(state, mesh)
  assert shardings.inner.params['w'].spec == P('tasks')
  assert shardings.inner.key.spec == P('tasks')
  assert shardings.meta_params['m'].spec == P()
  assert shardings.num_skipped.spec == P()


@pytest.mark.parametrize('argv, message', [
    (['--devices', '0'], 'number of devices must be an int from 1'),
    (['--devices', str(len(jax.devices()) + 1)], 'that JAX sees'),
])
def test_command_line_names_a_bad_device_count(tmp_path, capsys, argv,
                                               message):
  with pytest.raises(SystemExit):
    cli.main(argv + ['--meta-steps', '0', '--no-eval', '--out',
                     str(tmp_path / 'run')])
  assert message in capsys.readouterr().err
  assert not (tmp_path / 'run').exists()  # refused before any file
