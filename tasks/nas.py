"""Child networks for architecture search and the tabular benchmark.

``train_child`` trains any flax child at a fixed budget and returns its
validation and test accuracy; ``tabular_train_fn`` trains thousands of
children of :func:`l2l.search.tabular_cell_space` in one compiled function,
the architecture entering as traced one-hot operation weights of the masked
supernet (:class:`l2l.search.TabularCellNet`), vmapped over architectures
and seeds. ``TabularBenchmark`` reads the stored table and looks trials up.

Build the table (resumable; chunks are written atomically)::

  python -m tasks.nas --out tasks/nas_data
"""

import dataclasses
import json
import os
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2l import search
from tasks import data

TABLE_DIR = pathlib.Path(__file__).resolve().parent / "nas_data"
TABLE_NAME = "tabular_cell"


@dataclasses.dataclass(frozen=True)
class Budget:
  """The fixed training budget of a child.

  Attributes:
    steps: Optimizer steps.
    batch_size: Examples per step.
    learning_rate: Adam step size (ignored when an optimizer is given).
    val_size: Training examples held out for validation accuracy.
  """
  steps: int = 300
  batch_size: int = 64
  learning_rate: float = 3e-3
  val_size: int = 500


def splits(dataset: str, val_size: int, data_dir=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Train, validation (the last ``val_size`` training examples) and test splits.

  Args:
    dataset: ``'mnist1d'``, ``'digits'``, ``'mnist'`` or ``'cifar10'``.
    val_size: Held-out training examples, in ``[1, N_train)``.
    data_dir: Directory of MNIST/CIFAR-10 files (see :mod:`tasks.data`).

  Returns:
    ``{'train': (x, y), 'val': (x, y), 'test': (x, y)}`` numpy arrays.
  """
  if dataset == "mnist1d":
    x, y, x_test, y_test = data.mnist1d()
  elif dataset == "digits":
    x, y, x_test, y_test = data.digits()
  elif dataset in ("mnist", "cifar10"):
    x, y, x_test, y_test = getattr(data, dataset)(data_dir=data_dir)
  else:
    raise ValueError(f"Unknown dataset {dataset!r}; valid: {data.DATASETS}.")
  if not 1 <= val_size < len(y):
    raise ValueError(f"val_size must lie in [1, {len(y)}), got {val_size}.")
  return {"train": (x[:-val_size], y[:-val_size]), "val": (x[-val_size:], y[-val_size:]),
          "test": (x_test, y_test)}


def _accuracy(apply_fn, params, x, y, chunk=1000):
  correct = 0
  for start in range(0, len(y), chunk):
    logits = apply_fn(params, x[start:start + chunk])
    correct = correct + jnp.sum(jnp.argmax(logits, -1) == y[start:start + chunk])
  return correct / len(y)


def train_child(apply_fn: Callable, params: Any, split: dict, budget: Budget,
                key: jax.Array, optimizer: optax.GradientTransformation | None = None
                ) -> dict[str, jax.Array]:
  """Trains a child with softmax cross-entropy; pure, jit- and vmap-able.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits (batch, classes)``.
    params: Initial parameters.
    split: The output of :func:`splits`, as (device) arrays.
    budget: Steps, batch size, learning rate.
    key: Draws the minibatches.
    optimizer: Any optax transformation (e.g. ``l2l.lstm_optimizer()``);
      Adam at ``budget.learning_rate`` by default.

  Returns:
    ``{'train_loss', 'val_accuracy', 'test_accuracy'}`` float32 scalars;
    the loss is the mean over the last tenth of the steps.
  """
  optimizer = optimizer or optax.adam(budget.learning_rate)
  x, y = split["train"]

  def loss_fn(params, key):
    index = jax.random.randint(key, (budget.batch_size,), 0, y.shape[0])
    logits = apply_fn(params, x[index])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y[index]).mean()

  def step(carry, key):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)),
                                     jax.random.split(key, budget.steps))
  tail = max(1, budget.steps // 10)
  return {"train_loss": losses[-tail:].mean(),
          "val_accuracy": _accuracy(apply_fn, params, *split["val"]),
          "test_accuracy": _accuracy(apply_fn, params, *split["test"])}


def child_params(supernet_params: Any, space: search.Space, config) -> Any:
  """The parameters of the discrete child ``config`` inside supernet params.

  The child :class:`l2l.search.TabularCellNet` names its layers as the
  supernet does, so its parameters are the supernet's minus the operations
  it did not choose.
  """
  chosen = space.values(config)
  names = {"stem", "head"} | {f"{edge}_{op}" for edge, op in chosen.items()}
  return {"params": {k: v for k, v in supernet_params["params"].items() if k in names}}


def one_hot_ops(space: search.Space, configs) -> jax.Array:
  """One-hot operation weights ``(..., num_edges, num_ops)`` float32."""
  return jax.nn.one_hot(jnp.asarray(configs), max(space.num_options), dtype=jnp.float32)


def tabular_train_fn(space: search.Space, split: dict, budget: Budget,
                     pairs: bool = False,
                     ) -> Callable[[jax.Array, jax.Array], dict[str, jax.Array]]:
  """One jitted function training a batch of architectures over seeds.

  Args:
    space: A ``tabular_cell`` space.
    split: The output of :func:`splits`.
    budget: The training budget.
    pairs: Train ``configs[i]`` with ``seeds[i]`` instead of every pair.

  Returns:
    ``fn(configs, seeds)``: ``configs`` int32 ``(A, num_edges)``, ``seeds``
    int32 ``(S,)``; returns ``train_loss``, ``val_accuracy``,
    ``test_accuracy`` float32 ``(A, S)`` (``(A,)`` with ``pairs``). A seed
    fixes both the initialisation (shared by all architectures) and the
    minibatches.
  """
  net = search.TabularCellNet(space)
  sample_x = jnp.zeros((1,) + split["train"][0].shape[1:], jnp.float32)
  split = jax.tree.map(jnp.asarray, split)

  def one(config, seed):
    key_init, key_train = jax.random.split(jax.random.key(seed))
    weights = one_hot_ops(space, config)
    params = net.init(key_init, sample_x, weights)
    apply_fn = lambda p, x: net.apply(p, x, weights)
    return train_child(apply_fn, params, split, budget, key_train)

  if pairs:
    return jax.jit(jax.vmap(one))
  over_seeds = jax.vmap(one, in_axes=(None, 0))
  return jax.jit(jax.vmap(over_seeds, in_axes=(0, None)))


def _save_npz(path: pathlib.Path, **arrays):
  """Writes a compressed .npz atomically (temp file, then ``os.replace``)."""
  tmp = path.with_name(path.name + ".tmp.npz")
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)


def _save_json(path: pathlib.Path, obj):
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
  os.replace(tmp, path)


def _versions() -> dict[str, str]:
  import flax
  import platform
  import l2l
  return {"python": platform.python_version(), "jax": jax.__version__,
          "flax": flax.__version__, "optax": optax.__version__,
          "numpy": np.__version__, "l2l": l2l.__version__}


def space_record(space: search.Space) -> dict:
  """A JSON description of a space (name, settings, choices and options)."""
  return {"name": space.name, "meta": dict(space.meta),
          "choices": [[c.name, list(c.options)] for c in space.choices]}


def build_table(out_dir, space: search.Space | None = None, budget: Budget = Budget(),
                seeds=(0, 1), chunk_size: int = 256, dataset: str = "mnist1d",
                command: str = "", progress: bool = True) -> pathlib.Path:
  """Trains every architecture of a tabular cell space and stores the table.

  Resumable: each chunk of ``chunk_size`` architectures is written
  atomically under ``out_dir/chunks``, and chunks already there are kept.
  The result is ``out_dir/tabular_cell.npz`` (``train_loss``,
  ``val_accuracy``, ``test_accuracy``, float32 ``(size, len(seeds))``, rows in
  the space's flat-index order) and ``out_dir/tabular_cell.json``, its
  manifest (command, space, budget, seeds, data, wall time, versions).

  Returns:
    The path of the .npz table.
  """
  import time
  import tqdm
  space = space or search.tabular_cell_space()
  out_dir = pathlib.Path(out_dir)
  chunk_dir = out_dir / "chunks"
  chunk_dir.mkdir(parents=True, exist_ok=True)
  configs = space.all_configs()
  num_chunks = -(-len(configs) // chunk_size)
  fn = tabular_train_fn(space, splits(dataset, budget.val_size), budget)
  seeds_array = jnp.asarray(seeds, jnp.int32)
  wall_path = chunk_dir / "wall_seconds.json"
  wall = json.loads(wall_path.read_text())["seconds"] if wall_path.exists() else 0.0
  for chunk in tqdm.trange(num_chunks, desc="tabular chunks", disable=not progress):
    path = chunk_dir / f"chunk_{chunk:05d}.npz"
    if path.exists():
      continue
    start = time.time()
    part = configs[chunk * chunk_size:(chunk + 1) * chunk_size]
    padded = np.concatenate([part, np.repeat(part[-1:], chunk_size - len(part), 0)])
    metrics = jax.device_get(fn(padded, seeds_array))
    _save_npz(path, **{k: np.asarray(v[:len(part)], np.float32) for k, v in metrics.items()})
    wall += time.time() - start
    _save_json(wall_path, {"seconds": wall})
  parts = [np.load(chunk_dir / f"chunk_{c:05d}.npz") for c in range(num_chunks)]
  table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0].files}
  manifest = {"command": command, "budget": dataclasses.asdict(budget), "optimizer": "adam",
              "seeds": list(map(int, seeds)), "dataset": dataset,
              "splits": "train minus the last val_size examples / those val_size / test",
              "wall_seconds": round(wall, 1), "versions": _versions()}
  table_path = write_table(out_dir, space, table, manifest)
  return table_path


def write_table(out_dir, space: search.Space, table: dict[str, np.ndarray],
                manifest: dict) -> pathlib.Path:
  """Stores a table (``val_accuracy``, ``test_accuracy``, ... float32
  ``(space.size, num_seeds)``, rows in flat-index order) as
  ``out_dir/<space.name>.npz`` with its manifest ``<space.name>.json``,
  both written atomically; the manifest gains the space and the best test
  accuracy.

  Raises:
    ValueError: a table lacks a column or has the wrong number of rows.
  """
  for column in ("val_accuracy", "test_accuracy"):
    if column not in table or np.shape(table[column])[0] != space.size:
      raise ValueError(f"{column} must have {space.size} rows (one per architecture).")
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  table_path = out_dir / f"{space.name}.npz"
  _save_npz(table_path, **{k: np.asarray(v, np.float32) for k, v in table.items()})
  manifest = dict(manifest, space=space_record(space),
                  rows="flat index of the space (mixed radix, first choice most significant)",
                  best_test_accuracy=float(np.mean(table["test_accuracy"], 1).max()))
  _save_json(out_dir / f"{space.name}.json", manifest)
  return table_path


@dataclasses.dataclass(frozen=True)
class TabularBenchmark:
  """A stored table of every architecture's accuracies, used as a lookup task.

  Attributes:
    space: The space whose flat indices number the rows.
    val_accuracy: float32 ``(size, num_seeds)``, what a search observes.
    test_accuracy: float32 ``(size, num_seeds)``, what regret is scored on.
    manifest: The table's manifest.
  """
  space: search.Space
  val_accuracy: np.ndarray
  test_accuracy: np.ndarray
  manifest: dict

  @classmethod
  def load(cls, directory=TABLE_DIR, name: str = TABLE_NAME) -> "TabularBenchmark":
    """Reads ``directory/name.npz`` and its manifest.

    Raises:
      FileNotFoundError: the table is missing (the message gives the build
        command).
      ValueError: the table does not match its manifest's space.
    """
    directory = pathlib.Path(directory)
    path, manifest_path = directory / f"{name}.npz", directory / f"{name}.json"
    if not path.exists() or not manifest_path.exists():
      raise FileNotFoundError(f"No tabular benchmark at {path}; build it with "
                              f"`python -m tasks.nas --out {directory}`.")
    manifest = json.loads(manifest_path.read_text())
    record = manifest["space"]
    space = search.Space(record["name"], tuple(search.Choice(n, tuple(o))
                                               for n, o in record["choices"]),
                         tuple(sorted(record["meta"].items())))
    with np.load(path) as table:
      val, test = table["val_accuracy"], table["test_accuracy"]
    if val.shape[0] != space.size or test.shape != val.shape:
      raise ValueError(f"{path}: {val.shape[0]} rows for a space of {space.size}.")
    return cls(space, val, test, manifest)

  @property
  def best_test_accuracy(self) -> float:
    """The space's best test accuracy (mean over seeds)."""
    return float(self.test_accuracy.mean(1).max())

  def flat_indices(self, configs) -> jax.Array:
    """Row numbers of int configs ``(..., num_choices)``, as int32 (jit-able)."""
    strides = np.cumprod((1,) + self.space.num_options[:0:-1])[::-1]
    configs = jnp.asarray(configs)
    return jnp.sum(configs * jnp.asarray(strides, jnp.int32).reshape(
        (1,) * (configs.ndim - 1) + (-1,)), -1)

  def lookup(self, configs, key: jax.Array) -> jax.Array:
    """Validation accuracy of one random seed per config, float32 ``(...)``; jit-able."""
    rows = self.flat_indices(configs)
    seed = jax.random.randint(key, rows.shape, 0, self.val_accuracy.shape[1])
    return jnp.asarray(self.val_accuracy)[rows, seed]

  def test_of(self, configs) -> jax.Array:
    """Mean test accuracy over seeds of configs ``(..., num_choices)``."""
    return jnp.asarray(self.test_accuracy.mean(1))[self.flat_indices(configs)]


def main(argv=None):
  """``python -m tasks.nas --out DIR``: builds the tabular benchmark."""
  import argparse
  import sys
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument("--out", default=str(TABLE_DIR))
  parser.add_argument("--steps", type=int, default=Budget.steps)
  parser.add_argument("--chunk-size", type=int, default=256)
  parser.add_argument("--seeds", type=int, default=2)
  args = parser.parse_args(argv)
  budget = Budget(steps=args.steps)
  command = "python -m tasks.nas " + " ".join(sys.argv[1:] if argv is None else argv)
  path = build_table(args.out, budget=budget, seeds=tuple(range(args.seeds)),
                     chunk_size=args.chunk_size, command=command)
  print(json.dumps(json.loads(path.with_suffix(".json").read_text()), indent=1))


if __name__ == "__main__":
  main()
