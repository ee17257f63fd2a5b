"""Smoke test of the one-call GPU script, in its CPU mode (QUICK=1)."""

import os
import pathlib
import subprocess

import l2l

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_device_checks_runs_every_phase_and_exports_the_run(tmp_path):
  env = {**os.environ, 'QUICK': '1', 'OUT': str(tmp_path)}
  done = subprocess.run(['bash', 'benchmarks/device_checks.sh'], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300,
                        check=True)
  for phase in ('bench', 'wide', 'validate'):
    assert f'== {phase}: rc 0' in done.stdout, done.stdout[-3000:]
  assert 'inner steps' in (tmp_path / 'bench.log').read_text()
  meta_params, manifest = l2l.load_meta_params(tmp_path / 'wide.npz')
  assert manifest['config']['design'] == 'free' and 'params' in meta_params
  assert manifest['meta_steps'] == 2
  assert 'wide: training quadratic' in (tmp_path / 'validate.log').read_text()
