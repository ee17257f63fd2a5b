"""Smoke test of the one-call GPU script, in its CPU mode (QUICK=1)."""

import importlib.util
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
  for phase in ('bench', 'bandwidth', 'devices', 'wide', 'validate'):
    assert f'== {phase}: rc 0' in done.stdout, done.stdout[-3000:]
  assert 'inner steps' in (tmp_path / 'bench.log').read_text()
  assert '| l2l default |' in (tmp_path / 'bandwidth.log').read_text()
  assert 'inner steps / s' in (tmp_path / 'devices.log').read_text()
  meta_params, manifest = l2l.load_meta_params(tmp_path / 'wide.npz')
  assert manifest['config']['design'] == 'compact' and 'mlp' in meta_params
  assert manifest['meta_steps'] == 2
  assert 'wide: training quadratic' in (tmp_path / 'validate.log').read_text()


def test_readme_quotes_the_checked_main_command_figures():
  """The figures that benchmarks/main_figure.py --check holds the main
  command to (in .ci/run) are the ones the README states."""
  spec = importlib.util.spec_from_file_location(
      'main_figure', ROOT / 'benchmarks' / 'main_figure.py')
  main_figure = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(main_figure)
  readme = (ROOT / 'README.md').read_text()
  intro = ' '.join(readme[:readme.index('## Quickstart')].split())
  for name, value in main_figure.EXPECTED.items():
    assert f'{value:.3g}' in intro, name
  assert f'more than {main_figure.TOLERANCE:.0%}' in intro
  assert 'python benchmarks/main_figure.py --check' in (
      ROOT / '.ci' / 'run').read_text()
