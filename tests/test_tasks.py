"""Tests for tasks/: the Task protocol, families, and offline data readers."""

import gzip
import os
import pickle

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import tasks
from tasks import _testing
from tasks import data


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("mnist_data")
  _testing.write_mnist(directory / "mnist", num_train=64, num_test=16, gz=True)
  return str(directory)


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("cifar_data")
  _testing.write_cifar10(directory, per_batch=8, binary=True)
  return str(directory)


def _sample(name, **kwargs):
  return tasks.get_family(name, **kwargs).sample_task(np.random.default_rng(0))


# name -> (task factory taking the data directories, SGD learning rate).
TASKS = {
    "quadratic": (lambda dirs: tasks.QuadraticTask(dim=10), 1e-2),
    "x_squared": (lambda dirs: tasks.XSquaredTask(), 1e-1),
    "mnist1d_mlp": (lambda dirs: _sample("mnist1d_mlp"), 1e-1),
    "digits_mlp": (lambda dirs: _sample("digits_mlp"), 1e-1),
    "mnist1d_conv": (lambda dirs: _sample("mnist1d_conv"), 1e-1),
    "digits_conv": (lambda dirs: _sample("digits_conv"), 1e-1),
    "mnist_mlp": (lambda dirs: _sample("mnist_mlp", data_dir=dirs[0],
                                       batch_sizes=(32,)), 1e-1),
    "cifar10_conv": (lambda dirs: _sample("cifar10_conv", data_dir=dirs[1],
                                          batch_sizes=(32,)), 1e-1),
}


@pytest.fixture(params=sorted(TASKS))
def task_and_lr(request, mnist_dir, cifar_dir):
  factory, learning_rate = TASKS[request.param]
  return factory((mnist_dir, cifar_dir)), learning_rate


# Jitted with the task as an argument: tasks of one structure share a trace.
_init = jax.jit(lambda task, key: task.init_params(key))
_problem = jax.jit(lambda task, key: task.sample_problem(key))
_loss = jax.jit(lambda task, params, problem, key: task.loss(params, problem,
                                                             key))
_full_loss = jax.jit(lambda task, params, problem: task.full_loss(params,
                                                                  problem))


def test_public_names_import():
  for name in tasks.__all__:
    assert getattr(tasks, name) is not None, name


def test_shapes_finite_and_vmap(task_and_lr):
  task, _ = task_and_lr
  keys = jax.random.split(jax.random.key(0), 3)
  params = _init(task, keys[0])
  problem = _problem(task, keys[1])
  for leaf in jax.tree.leaves(params):
    assert leaf.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(leaf)))
  loss = _loss(task, params, problem, keys[2])
  full_loss = _full_loss(task, params, problem)
  chex.assert_shape((loss, full_loss), ())
  chex.assert_tree_all_finite((loss, full_loss))
  batch_params = jax.jit(jax.vmap(task.init_params))(keys)
  batch_problems = jax.jit(jax.vmap(task.sample_problem))(keys)
  losses = jax.jit(jax.vmap(task.loss, in_axes=(0, 0, 0)))(
      batch_params, batch_problems, keys)
  chex.assert_shape(losses, (3,))
  second = jax.tree.map(lambda leaf: leaf[1], (batch_params, batch_problems))
  np.testing.assert_allclose(losses[1], _loss(task, *second, keys[1]),
                             rtol=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_loss_decreases_under_jit(task_and_lr, optimizer):
  task, sgd_learning_rate = task_and_lr
  opt = optax.sgd(sgd_learning_rate) if optimizer == "sgd" else optax.adam(1e-2)
  problem = _problem(task, jax.random.key(1))

  @jax.jit
  def train(task, params, key):
    def step(carry, key):
      params, state = carry
      grads = jax.grad(task.loss)(params, problem, key)
      updates, state = opt.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None
    keys = jax.random.split(key, 30)
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), keys)
    return params

  params = _init(task, jax.random.key(0))
  trained = train(task, params, jax.random.key(2))
  before = _full_loss(task, params, problem)
  after = _full_loss(task, trained, problem)
  assert bool(jnp.isfinite(after))
  assert after < before, (task.name, float(before), float(after))


def test_quadratic_problems_differ():
  task = tasks.get_family("quadratic").sample_task(np.random.default_rng(0))
  keys = jax.random.split(jax.random.key(0), 3)
  params = jnp.broadcast_to(task.init_params(jax.random.key(1)), (3, 10))
  problems = jax.vmap(task.sample_problem)(keys)
  chex.assert_shape((problems.w, problems.y), [(3, 10, 10), (3, 10)])
  losses = jax.vmap(task.loss, in_axes=(0, 0, 0))(params, problems, keys)
  assert len(set(np.asarray(losses).tolist())) == 3
  np.testing.assert_allclose(losses, jax.vmap(task.full_loss)(params, problems))


def test_weighted_quadratic_weights_the_paper_quadratics_rows():
  """quadratic_weighted draws the paper quadratic's (W, y) from the same key
  and weights row i of both by s_i, log-uniform in its range."""
  rng = np.random.default_rng(0)
  plain = tasks.get_family("quadratic").sample_task(rng)
  weighted = tasks.get_family("quadratic_weighted").sample_task(rng)
  assert (plain.name, weighted.name) == ("quadratic", "quadratic_weighted")
  key = jax.random.key(3)
  p, w = plain.sample_problem(key), weighted.sample_problem(key)
  scales = w.y / p.y
  np.testing.assert_allclose(w.w, p.w * scales[:, None], rtol=1e-5)
  assert 0.1 <= float(scales.min()) < float(scales.max()) <= 10.0
  hessian = np.asarray(w.w.T @ w.w)
  plain_hessian = np.asarray(p.w.T @ p.w)
  assert np.linalg.cond(hessian) > np.linalg.cond(plain_hessian)


@pytest.mark.parametrize("scales", [(0.0, 1.0), (2.0, 1.0)])
def test_quadratic_residual_scales_are_checked(scales):
  with pytest.raises(ValueError, match="residual_scales must be"):
    tasks.QuadraticFamily(residual_scales=scales)


def test_x_squared_is_x_squared():
  task = tasks.get_family("x_squared").sample_task(np.random.default_rng(0))
  params = task.init_params(jax.random.key(0))
  assert params.shape == () and float(params) == 1.0
  assert float(task.loss(jnp.asarray(3.0), (), jax.random.key(0))) == 9.0


def test_same_structure_does_not_retrace():
  family = tasks.get_family("mnist1d_mlp", hidden_sizes=((16,),),
                            activations=("relu",), batch_sizes=(32,))
  task_a = family.sample_task(np.random.default_rng(0))
  task_b = family.sample_task(np.random.default_rng(1))
  task_c = task_a.replace(x=task_a.x + 1.0)  # Same shapes, other data.
  traces = []

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(task, params, key):
    traces.append(task.name)
    return task.loss(params, (), key)

  params = task_a.init_params(jax.random.key(0))
  losses = [loss(task, params, jax.random.key(1))
            for task in (task_a, task_b, task_c)]
  assert len(traces) == 1
  assert losses[0] == losses[1] and losses[0] != losses[2]
  other = task_a.replace(batch_size=64)
  with pytest.raises(AssertionError):  # A new structure must retrace.
    loss(other, params, jax.random.key(1))


def test_mnist1d_leaves_global_random_state():
  tasks.mnist1d.cache_clear()
  np.random.seed(123)
  expected = np.random.rand()
  np.random.seed(123)
  x_train, y_train, x_test, y_test = tasks.mnist1d()
  assert np.random.rand() == expected
  chex.assert_shape((x_train, y_train, x_test, y_test),
                    [(4000, 40), (4000,), (1000, 40), (1000,)])


def test_split_selects_data():
  train = _sample("mnist1d_mlp", split="train")
  test = _sample("mnist1d_mlp", split="test")
  assert train.x.shape == (4000, 40) and test.x.shape == (1000, 40)
  assert train.y.dtype == jnp.int32


def test_family_sampling_is_deterministic_and_varied():
  family = tasks.get_family("mnist1d_mlp")
  names = [family.sample_task(np.random.default_rng(s)).name for s in range(20)]
  again = [family.sample_task(np.random.default_rng(s)).name for s in range(20)]
  assert names == again
  assert len(set(names)) > 5


def test_get_family_unknown_name():
  with pytest.raises(ValueError, match="quadratic"):
    tasks.get_family("no_such_family")


@pytest.mark.parametrize("kwargs", [dict(dataset="imagenet"),
                                    dict(activations=("swoosh",)),
                                    dict(split="valid"), dict(batch_sizes=())])
def test_family_rejects_bad_options(kwargs):
  with pytest.raises(ValueError):
    tasks.MLPFamily(**kwargs)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["u1", ">i2", ">f4"])
def test_idx_round_trip(tmp_path, suffix, dtype):
  array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(dtype)
  path = _testing.write_bytes(tmp_path / f"a-idx3{suffix}",
                              _testing.idx_bytes(array))
  read = tasks.read_idx(path)
  assert read.shape == (2, 3, 4)
  np.testing.assert_array_equal(read, array)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reader(tmp_path, monkeypatch, gz):
  written = _testing.write_mnist(tmp_path, num_train=20, num_test=6, gz=gz)
  monkeypatch.setenv(tasks.DATA_DIR_ENV, str(tmp_path))
  x_train, y_train, x_test, y_test = tasks.mnist()
  chex.assert_shape((x_train, x_test), [(20, 28, 28, 1), (6, 28, 28, 1)])
  assert x_train.dtype == np.float32 and y_train.dtype == np.int32
  np.testing.assert_array_equal(y_test, written["t10k-labels-idx1-ubyte"])
  np.testing.assert_allclose([x_train.mean(), x_train.std()], [0, 1], atol=1e-4)
  raw = written["train-images-idx3-ubyte"].astype(np.float64)
  np.testing.assert_allclose(x_train[..., 0], (raw - raw.mean()) / raw.std(),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("binary", [True, False])
def test_cifar10_reader(tmp_path, binary):
  batches = _testing.write_cifar10(tmp_path / "cifar10", per_batch=4,
                                   binary=binary)
  x_train, y_train, x_test, y_test = tasks.cifar10(tmp_path)
  chex.assert_shape((x_train, x_test), [(20, 32, 32, 3), (4, 32, 32, 3)])
  np.testing.assert_array_equal(y_test, batches[-1][1])
  np.testing.assert_array_equal(y_train[4:8], batches[1][1])
  raw = np.concatenate([images for images, _ in batches[:-1]]).astype(float)
  mean, std = raw.mean((0, 1, 2)), raw.std((0, 1, 2))
  np.testing.assert_allclose(x_train, (raw - mean) / std, rtol=1e-4, atol=1e-4)
  reader = tasks.read_cifar10_bin if binary else tasks.read_cifar10_py
  subdir = data.CIFAR10_BIN_DIR if binary else data.CIFAR10_PY_DIR
  name = data.CIFAR10_BIN_FILES[0] if binary else data.CIFAR10_PY_FILES[0]
  images, labels = reader(tmp_path / "cifar10" / subdir / name)
  np.testing.assert_array_equal(images, batches[0][0])


def test_cifar10_prefers_binary(tmp_path):
  binary = _testing.write_cifar10(tmp_path, per_batch=4, binary=True, seed=1)
  _testing.write_cifar10(tmp_path, per_batch=4, binary=False, seed=2)
  np.testing.assert_array_equal(tasks.cifar10(tmp_path)[3], binary[-1][1])


def test_missing_data_dir(monkeypatch):
  monkeypatch.delenv(tasks.DATA_DIR_ENV, raising=False)
  for loader in (tasks.mnist, tasks.cifar10):
    with pytest.raises(FileNotFoundError, match=tasks.DATA_DIR_ENV):
      loader()


def test_missing_mnist_file_is_named(tmp_path):
  _testing.write_mnist(tmp_path)
  os.remove(tmp_path / "t10k-labels-idx1-ubyte")
  with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte") as info:
    tasks.mnist(tmp_path)
  assert "train-images-idx3-ubyte.gz" in str(info.value)  # How to get them.
  assert tasks.DATA_DIR_ENV in str(info.value)


def test_missing_cifar_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=data.CIFAR10_BIN_DIR):
    tasks.cifar10(tmp_path)
  _testing.write_cifar10(tmp_path, per_batch=2)
  os.remove(tmp_path / data.CIFAR10_BIN_DIR / "data_batch_3.bin")
  with pytest.raises(FileNotFoundError, match="data_batch_3.bin"):
    tasks.cifar10(tmp_path)


@pytest.mark.parametrize("raw", [b"\x01\x00\x08\x01" + b"\x00" * 8,  # Magic.
                                 b"\x00\x00\x08\x02\x00\x00",  # Header.
                                 _testing.idx_bytes(np.zeros(5, "u1"))[:-1],
                                 b"\x00\x00\x42\x01\x00\x00\x00\x00"])
def test_corrupt_idx_names_file(tmp_path, raw):
  path = _testing.write_bytes(tmp_path / "bad-idx1-ubyte", raw)
  with pytest.raises(ValueError, match="bad-idx1-ubyte"):
    tasks.read_idx(path)


def test_corrupt_gzip_names_file(tmp_path):
  path = tmp_path / "bad-idx1-ubyte.gz"
  path.write_bytes(gzip.compress(b"\x00" * 100)[:20])
  with pytest.raises(ValueError, match="bad-idx1-ubyte.gz"):
    tasks.read_idx(path)


def test_corrupt_mnist_counts(tmp_path):
  _testing.write_mnist(tmp_path, num_train=8, num_test=4)
  _testing.write_bytes(tmp_path / "train-labels-idx1-ubyte",
                       _testing.idx_bytes(np.zeros(7, "u1")))
  with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
    tasks.mnist(tmp_path)


def test_corrupt_cifar_names_file(tmp_path):
  path = _testing.write_bytes(tmp_path / "data_batch_1.bin", b"\x00" * 3000)
  with pytest.raises(ValueError, match="data_batch_1.bin"):
    tasks.read_cifar10_bin(path)
  path = _testing.write_bytes(tmp_path / "data_batch_1", b"not a pickle")
  with pytest.raises(ValueError, match="data_batch_1"):
    tasks.read_cifar10_py(path)
  path = _testing.write_bytes(tmp_path / "test_batch", pickle.dumps([1, 2]))
  with pytest.raises(ValueError, match="test_batch"):
    tasks.read_cifar10_py(path)


def test_family_data_first_loaded_inside_a_trace_is_not_leaked():
  from tasks import _common
  _common._device_split.cache_clear()
  shapes = jax.eval_shape(lambda: tasks.get_family("digits_mlp").sample_task(
      np.random.default_rng(0)).init_params(jax.random.key(0)))
  assert jax.tree.leaves(shapes)
  task = tasks.get_family("digits_mlp").sample_task(np.random.default_rng(0))
  assert isinstance(task.x, jax.Array) and not isinstance(task.x, jax.core.Tracer)
  assert np.isfinite(float(task.full_loss(task.init_params(jax.random.key(0)), ())))


@pytest.mark.parametrize("name, structure", [
    ("mnist1d_mlp_paper", "mnist1d_mlp_20_sigmoid_b128"),
    ("digits_mlp_48_relu", "digits_mlp_48_relu_b64"),
    ("mnist1d_mlp_24x24_tanh", "mnist1d_mlp_24x24_tanh_b32"),
])
def test_fixed_structure_families_draw_one_structure(name, structure):
  family = tasks.get_family(name)
  names = {family.sample_task(np.random.default_rng(i)).name for i in range(5)}
  assert names == {structure}


@pytest.mark.parametrize('shape, kernel', [((5, 8, 8, 3), (3, 3)),
                                           ((5, 40, 1), (3,)),
                                           ((2, 7, 5, 2), (5, 5))])
def test_conv_as_patches_equals_lax_conv(shape, kernel):
  from tasks import conv
  spatial = 'HW'[-len(kernel):]
  numbers = ('N' + spatial + 'C', spatial + 'IO', 'N' + spatial + 'C')
  h = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), kernel + (shape[-1], 7))
  strides = (2,) * len(kernel)
  want = jax.lax.conv_general_dilated(h, w, strides, 'SAME',
                                      dimension_numbers=numbers)
  got = conv._conv(h, w, strides, numbers)
  assert got.shape == want.shape and got.dtype == want.dtype
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
