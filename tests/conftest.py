"""Test configuration: strict rank promotion, as in optax and equinox; the
library's own tests carry the ``core`` marker (``pytest -m core -n 2`` runs
them alone, 306 of 755, in about four minutes on 2 CPU cores)."""

import os
import shutil
import tempfile

import jax
import pytest

# Tests of l2l/ itself; the others exercise tasks/, meta_train/, benchmarks/.
CORE = {'test_api.py', 'test_checkpoint.py', 'test_compact.py', 'test_faults.py',
        'test_flax.py', 'test_meta.py', 'test_pes.py', 'test_preprocess.py',
        'test_remat.py', 'test_transform.py'}


_CACHE_ENV = 'L2L_TEST_XLA_CACHE'

# XLA's CPU backend without LLVM's optimisation passes: the tests' programs
# are small and run briefly, so compiling is most of their time, and this
# cuts it by about a third. Set before any backend starts; subprocesses that
# tests start inherit it.
_FAST_COMPILE = '--xla_backend_optimization_level=0'
if _FAST_COMPILE not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '') + ' ' + _FAST_COMPILE).strip()


def pytest_configure(config):
  """A compilation cache for this test run only: tests that build the same
  program in a new ``jit`` (each meta-training run, each resume) read it
  back instead of compiling again. It starts empty, so nothing stale is
  read. The run's pytest-xdist workers share it (they inherit the
  controller's environment; JAX's cache is safe across processes), so a
  program compiled by one is read by the other."""
  if 'workerinput' not in config.__dict__:  # the controller, or no xdist
    config.l2l_xla_cache = tempfile.mkdtemp(prefix='l2l-test-xla-')
    os.environ[_CACHE_ENV] = config.l2l_xla_cache
    # ... which the command-line tests' programs use too, instead of the
    # user's ~/.cache/l2l/xla (python -m meta_train's default).
    os.environ['L2L_COMPILATION_CACHE'] = config.l2l_xla_cache
  jax.config.update('jax_compilation_cache_dir', os.environ[_CACHE_ENV])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


def pytest_unconfigure(config):
  shutil.rmtree(getattr(config, 'l2l_xla_cache', ''), ignore_errors=True)


def pytest_collection_modifyitems(items):
  for item in items:
    if os.path.basename(str(item.fspath)) in CORE:
      item.add_marker(pytest.mark.core)


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
  with jax.numpy_rank_promotion('raise'):
    yield
