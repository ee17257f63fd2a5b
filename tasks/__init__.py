"""Problems that learned optimizers are meta-trained and judged on.

See :mod:`tasks.base` for the Task and TaskFamily protocols. Families are
built by name with :func:`get_family`:

  >>> family = get_family("mnist1d_mlp", batch_sizes=(64,))
  >>> task = family.sample_task(np.random.default_rng(0))
"""

from typing import Any, Callable


from tasks.augment import (AugmentedFamily, AugmentedTask, SubsetFamily,
                           SubsetTask, augment_task, on_subsets)
from tasks.base import Params, Problem, Task, TaskFamily
from tasks.conv import ConvFamily, ConvTask
from tasks.data import (DATA_DIR_ENV, DATASETS, cifar10, digits, mnist,
                        mnist1d, read_cifar10_bin, read_cifar10_py, read_idx)
from tasks.mixture import MixtureFamily
from tasks.heldout import (AutoencoderFamily, AutoencoderTask,
                           IllConditionedQuadraticFamily,
                           IllConditionedQuadraticProblem,
                           IllConditionedQuadraticTask, LinearRegressionFamily,
                           LinearRegressionProblem, LinearRegressionTask,
                           LogisticRegressionFamily, RosenbrockFamily,
                           RosenbrockTask)
from tasks.mlp import MLPFamily, MLPTask
from tasks.quadratic import (QuadraticFamily, QuadraticProblem, QuadraticTask,
                             XSquaredFamily, XSquaredTask)
from tasks.unseen import (NormalisedMLPFamily, NormalisedMLPTask,
                          SequenceFamily, SequenceTask)
from tasks import user
from tasks.user import SingleTaskFamily

__all__ = (
    "AugmentedFamily",
    "AugmentedTask",
    "AutoencoderFamily",
    "AutoencoderTask",
    "ConvFamily",
    "ConvTask",
    "DATASETS",
    "DATA_DIR_ENV",
    "FAMILIES",
    "IllConditionedQuadraticFamily",
    "IllConditionedQuadraticProblem",
    "IllConditionedQuadraticTask",
    "LinearRegressionFamily",
    "LinearRegressionProblem",
    "LinearRegressionTask",
    "LogisticRegressionFamily",
    "MLPFamily",
    "MixtureFamily",
    "MLPTask",
    "NormalisedMLPFamily",
    "NormalisedMLPTask",
    "Params",
    "Problem",
    "QuadraticFamily",
    "QuadraticProblem",
    "QuadraticTask",
    "RosenbrockFamily",
    "RosenbrockTask",
    "SequenceFamily",
    "SequenceTask",
    "SingleTaskFamily",
    "SubsetFamily",
    "SubsetTask",
    "Task",
    "TaskFamily",
    "XSquaredFamily",
    "XSquaredTask",
    "augment_task",
    "on_subsets",
    "cifar10",
    "digits",
    "get_family",
    "mnist",
    "mnist1d",
    "read_cifar10_bin",
    "read_cifar10_py",
    "read_idx",
)

# Depth 1 or 2 with equal widths: depth and width are each uniform.
_SAMPLED_MLP = dict(
    hidden_sizes=tuple((w,) * depth for depth in (1, 2)
                       for w in (16, 20, 32, 64)),
    activations=("sigmoid", "relu", "tanh"),
    batch_sizes=(32, 64, 128),
)
_SAMPLED_CONV = dict(
    channels=((8, 8), (8, 16), (16, 16)),
    activations=("relu", "tanh"),
    batch_sizes=(32, 64, 128),
)

# name -> (constructor, default keyword arguments).
FAMILIES: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "quadratic": (QuadraticFamily, {}),
    # The paper's quadratic with log-uniform residual weights over two
    # decades: rotated ill-conditioning for meta-training mixtures, unlike
    # the held-out ill-conditioned quadratic's fixed log-spaced spectrum.
    "quadratic_weighted": (QuadraticFamily, dict(residual_scales=(0.1, 10.0))),
    "x_squared": (XSquaredFamily, {}),
    **{f"{dataset}_mlp": (MLPFamily, dict(dataset=dataset, **_SAMPLED_MLP))
       for dataset in DATASETS},
    **{f"{dataset}_conv": (ConvFamily, dict(dataset=dataset, **_SAMPLED_CONV))
       for dataset in DATASETS},
    # The paper's training MLP: one hidden layer of 20 sigmoid units, batch
    # 128 (Andrychowicz et al. 2016, section 3.2), on MNIST-1D.
    "mnist1d_mlp_paper": (MLPFamily, dict(dataset="mnist1d")),
    # Two more fixed structures for meta-training mixtures (one compiled
    # program each), unlike any evaluation or development case.
    "digits_mlp_48_relu": (MLPFamily, dict(
        dataset="digits", hidden_sizes=((48,),), activations=("relu",),
        batch_sizes=(64,))),
    "mnist1d_mlp_24x24_tanh": (MLPFamily, dict(
        dataset="mnist1d", hidden_sizes=((24, 24),), activations=("tanh",),
        batch_sizes=(32,))),
    # Held out: never drawn in meta-training (tasks/heldout.py).
    "autoencoder": (AutoencoderFamily, {}),
    "linear_regression": (LinearRegressionFamily, {}),
    "logistic_regression": (LogisticRegressionFamily, {}),
    "rosenbrock": (RosenbrockFamily, {}),
    "ill_conditioned_quadratic": (IllConditionedQuadraticFamily, {}),
    # Held out, kinds of network no design round saw (tasks/unseen.py).
    "mnist1d_attention": (SequenceFamily, dict(model="attention")),
    "mnist1d_gru": (SequenceFamily, dict(model="gru", widths=(32,))),
    "digits_mlp_layernorm": (NormalisedMLPFamily, dict(norm="layer")),
    "digits_mlp_batchnorm": (NormalisedMLPFamily, dict(norm="batch")),
}


def get_family(name: str, **kwargs) -> TaskFamily:
  """Builds the registered task family ``name``, or a user's.

  Args:
    name: A key of :data:`FAMILIES`, e.g. ``"quadratic"``, ``"x_squared"``,
      ``"mnist1d_mlp"``, ``"digits_conv"``; a ``"package.module:object"``
      spec of a user's Task or TaskFamily, or of a class or function
      returning one (see :mod:`tasks.user`; a Task becomes a
      :class:`SingleTaskFamily`); or several joined by ``+`` for a
      :class:`MixtureFamily` (``"quadratic+mnist1d_mlp"``).
    **kwargs: Override the registered defaults (e.g. ``split="test"``,
      ``data_dir=...``, ``dim=20``); for a spec, arguments of its class or
      function.

  Returns:
    The family.

  Raises:
    ValueError: if ``name`` is not registered (the message lists valid
      names) or a spec cannot be resolved (the message names it).
  """
  if "+" in name:
    if kwargs:
      raise ValueError(f"mixture {name!r} takes no keyword arguments")
    return MixtureFamily(tuple(get_family(part) for part in name.split("+")))
  if user.is_spec(name):
    return user.from_spec(name, **kwargs)
  if name not in FAMILIES:
    raise ValueError(f"Unknown task family {name!r}; valid names:"
                     f" {', '.join(sorted(FAMILIES))}.")
  constructor, defaults = FAMILIES[name]
  return constructor(**{**defaults, **kwargs})
