"""The notebooks under notebooks/: stored without outputs, and they run.

Executing them takes minutes, so that test runs only with ``L2L_NOTEBOOKS=1``
(``L2L_NOTEBOOKS=1 python -m pytest -q tests/test_notebooks.py``) and needs
nbclient and ipykernel. ``python notebooks/strip.py`` strips outputs.
"""

import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))
CELL_TIMEOUT_S = 600


def test_the_documented_notebooks_exist():
  names = {path.name for path in NOTEBOOKS}
  assert {'quickstart.ipynb', 'meta_train_your_task.ipynb'} <= names


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stored_without_outputs(path):
  notebook = json.loads(path.read_text(encoding='utf-8'))
  assert notebook['nbformat'] == 4
  assert notebook['metadata']['kernelspec']['name'] == 'python3'
  assert 'widgets' not in notebook['metadata']
  code = [cell for cell in notebook['cells'] if cell['cell_type'] == 'code']
  assert code, f'{path.name} has no code cells'
  dirty = [i for i, cell in enumerate(notebook['cells'])
           if cell['cell_type'] == 'code'
           and (cell['outputs'] or cell['execution_count'] is not None)]
  assert not dirty, (f'{path.name}: cells {dirty} hold outputs or execution '
                     'counts; run python notebooks/strip.py')


@pytest.mark.skipif(os.environ.get('L2L_NOTEBOOKS') != '1',
                    reason='executing the notebooks takes minutes; set '
                    'L2L_NOTEBOOKS=1 to run them')
@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs(path, monkeypatch):
  nbclient = pytest.importorskip('nbclient')
  nbformat = pytest.importorskip('nbformat')
  notebook = nbformat.read(path, as_version=4)
  # The kernel compiles with XLA's usual optimisations, as a user's would,
  # not with the test run's fast-compile flag (conftest.py): the notebooks
  # run long enough for it to cost more than it saves.
  monkeypatch.setenv('XLA_FLAGS', ' '.join(
      flag for flag in os.environ.get('XLA_FLAGS', '').split()
      if not flag.startswith('--xla_backend_optimization_level')))
  # The kernel runs in the repository root, so it imports this checkout's
  # l2l, as the tests do; the notebooks write no files there.
  client = nbclient.NotebookClient(
      notebook, timeout=CELL_TIMEOUT_S, kernel_name='python3',
      resources={'metadata': {'path': str(ROOT)}})
  client.execute()  # raises CellExecutionError naming the failing cell
  code = [cell for cell in notebook.cells if cell.cell_type == 'code']
  assert all(cell.execution_count is not None for cell in code)
  errors = [output for cell in code for output in cell.outputs
            if output.output_type == 'error']
  assert not errors
