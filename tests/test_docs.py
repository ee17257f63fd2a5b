"""The API reference in docs/api covers every public name and builds with
warnings as errors (the build needs Sphinx: pip install sphinx)."""

import pathlib
import re
import subprocess
import sys

import l2l
import pytest

API_DOCS = pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'api'
DIRECTIVE = re.compile(
    r'^\.\.\s+auto(?:function|class|exception|data|attribute|method)::'
    r'\s+(?:l2l\.)?([\w.]+)', re.MULTILINE)


def documented_names():
  return {name for page in API_DOCS.glob('*.rst')
          for name in DIRECTIVE.findall(page.read_text())}


def test_every_public_name_has_an_autodoc_directive():
  missing = sorted(set(l2l.__all__) - documented_names())
  assert not missing, f'add to a page of docs/api: {missing}'


def test_sphinx_build_has_no_warnings(tmp_path):
  pytest.importorskip('sphinx')
  result = subprocess.run(
      [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b',
       'html', str(API_DOCS), str(tmp_path / 'html')],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  assert (tmp_path / 'html' / 'index.html').is_file()
