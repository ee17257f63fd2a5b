"""Sphinx configuration of the l2l API reference.

Build with warnings as errors (as CI does)::

  sphinx-build -W --keep-going -b html docs/api docs/_build/html

Besides Sphinx's own checks (``nitpicky``: every cross-reference must
resolve), the build fails if a name in ``l2l.__all__`` has no docstring or
is not documented on some page, so a new public name needs a docstring and
a page entry before CI passes.
"""

import inspect
import os
import re
import sys

from sphinx.errors import ExtensionError
from sphinx.pycode import ModuleAnalyzer

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                '..', '..')))
import l2l  # pylint: disable=g-import-not-at-top,wrong-import-position

project = 'l2l'
author = 'l2l authors'
copyright = 'l2l authors'  # pylint: disable=redefined-builtin
release = version = l2l.__version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
]
exclude_patterns = []
html_theme = 'alabaster'
html_static_path = []

# Every cross-reference must resolve; only types of other libraries (no
# intersphinx: the build has no network) are exempt, by module below.
nitpicky = True
nitpick_ignore_regex = [
    (r'py:.*', r'(jax|jaxlib|optax|flax|numpy|os|collections\.abc)\..*'),
]

autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_typehints_description_target = 'documented_params'
autodoc_typehints_format = 'short'  # Array, not jax.jaxlib._jax.Array
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False


def _public_objects():
  return {name: getattr(l2l, name) for name in l2l.__all__}


def _data_comment(name):
  """The ``#:`` comment above ``name``'s assignment in an l2l module."""
  for module_name, module in list(sys.modules.items()):
    if not module_name.startswith('l2l.') or getattr(
        module, name, None) is not getattr(l2l, name):
      continue
    docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
    if ('', name) in docs:
      return list(docs[('', name)])
  return []


def _own_docstring(obj):
  """The object's own docstring: not its type's, not a NamedTuple's
  generated ``Name(field, ...)``."""
  if not (inspect.isclass(obj) or inspect.isroutine(obj)):
    return ''
  doc = obj.__dict__.get('__doc__') if inspect.isclass(obj) else obj.__doc__
  if inspect.isclass(obj) and doc and doc.startswith(f'{obj.__name__}('):
    return ''
  return (doc or '').strip()


def _check_docstrings(app):
  """Fails the build if a public name has no docstring of its own."""
  del app
  missing = [name for name, obj in _public_objects().items()
             if not _own_docstring(obj) and not _data_comment(name)]
  if missing:
    raise ExtensionError(
        'l2l.__all__ names without a docstring (a ``#:`` comment above the '
        f'assignment, for a constant): {", ".join(missing)}')


def _data_docstring(app, what, name, obj, options, lines):
  """Constants take the ``#:`` comment at their definition in l2l."""
  del app, obj, options
  if what == 'data' and name.startswith('l2l.'):
    comment = _data_comment(name[len('l2l.'):])
    if comment:  # rather than the docstring of the value's type
      lines[:] = comment


def _public_type_names(app, what, name, obj, options, lines):
  """Attribute types (napoleon writes them fully qualified) by the names
  users import: ``jax.Array``, ``l2l.InnerState``."""
  del app, what, name, obj, options
  for i, line in enumerate(lines):
    if line.lstrip().startswith(':type:'):
      line = re.sub(r'\bjax\.jaxlib\._jax\.', 'jax.', line)
      lines[i] = re.sub(r'\bl2l\._\w+\.', 'l2l.', line)


def _check_coverage(app, env):
  """Fails the build if a public name is documented on no page."""
  del app
  documented = set(env.get_domain('py').objects)
  missing = [name for name in l2l.__all__ if f'l2l.{name}' not in documented]
  if missing:
    raise ExtensionError(
        'l2l.__all__ names documented on no page of docs/api (add an '
        f'autodoc directive for each): {", ".join(missing)}')


def setup(app):
  app.connect('builder-inited', _check_docstrings)
  app.connect('autodoc-process-docstring', _data_docstring)
  # After napoleon's handler (priority 500), which writes the ``:type:``s.
  app.connect('autodoc-process-docstring', _public_type_names, priority=600)
  app.connect('env-updated', _check_coverage)
