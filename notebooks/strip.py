"""Strips outputs: ``python notebooks/strip.py [--check] [FILE ...]``.

Clears every code cell's outputs and execution count, drops the per-cell
metadata that running a notebook adds (``execution``, ``collapsed``,
``scrolled``) and the notebook's widget state and interpreter details, so the
repository holds only what a person wrote. With no files, strips every
``*.ipynb`` beside this script; ``--check`` changes nothing and exits 1 if any
file would change.
"""

import pathlib
import sys

import nbformat

CELL_KEYS = ('execution', 'collapsed', 'scrolled')


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
  """Returns ``nb`` without outputs, execution counts or run metadata."""
  for cell in nb.cells:
    if cell.cell_type == 'code':
      cell.outputs = []
      cell.execution_count = None
    for key in CELL_KEYS:
      cell.metadata.pop(key, None)
  nb.metadata.pop('widgets', None)
  if 'language_info' in nb.metadata:
    name = nb.metadata.language_info.get('name', 'python')
    nb.metadata.language_info = {'name': name}
  return nb


def main(args: list[str]) -> int:
  check = '--check' in args
  paths = [pathlib.Path(a) for a in args if a != '--check']
  paths = paths or sorted(pathlib.Path(__file__).parent.glob('*.ipynb'))
  changed = []
  for path in paths:
    text = path.read_text(encoding='utf-8')
    stripped = nbformat.writes(strip(nbformat.reads(text, as_version=4))) + '\n'
    if stripped != text:
      changed.append(path)
      if not check:
        path.write_text(stripped, encoding='utf-8')
  for path in changed:
    print(('would strip ' if check else 'stripped ') + str(path))
  return 1 if check and changed else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
