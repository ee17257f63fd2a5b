"""A user's own task or family, named by a ``package.module:object`` spec.

``python -m meta_train --task mypackage.problems:MY_TASK`` and
``tasks.get_family("mypackage.problems:MY_TASK")`` import ``mypackage.problems``
(the current directory is importable under ``python -m``) and take its
``MY_TASK``: a :class:`~tasks.base.Task`, a :class:`~tasks.base.TaskFamily`,
or a class or function that returns one when called without arguments.
"""

import dataclasses
import importlib
from typing import Any

import numpy as np

from l2l._fit import traceable_task
from tasks.base import Task, TaskFamily

TASK_METHODS = ("init_params", "sample_problem", "loss", "full_loss")


def is_spec(name: str) -> bool:
  """Whether ``name`` is a ``module:object`` spec (else a registered name)."""
  return ":" in name


def is_task(obj: Any) -> bool:
  """Whether ``obj`` (not a class) has the methods of a Task."""
  return not isinstance(obj, type) and all(
      callable(getattr(obj, m, None)) for m in TASK_METHODS)


def is_family(obj: Any) -> bool:
  """Whether ``obj`` (not a class) has the ``sample_task`` of a TaskFamily."""
  return not isinstance(obj, type) and callable(
      getattr(obj, "sample_task", None))


@dataclasses.dataclass(frozen=True)
class SingleTaskFamily:
  """A family that always returns one task.

  Attributes:
    task: the task; one that is not a pytree is wrapped so that ``jit``
      takes it as a constant.
    name: the task's ``name``, or its class name if it has none.
  """

  task: Task
  name: str = ""

  def __post_init__(self):
    if not self.name:
      object.__setattr__(self, "name", getattr(self.task, "name", None)
                         or type(self.task).__name__)
    object.__setattr__(self, "task", traceable_task(self.task))

  def sample_task(self, rng: np.random.Generator) -> Task:
    """Returns the task; ``rng`` is unused."""
    del rng
    return self.task


def from_spec(spec: str, **kwargs) -> TaskFamily:
  """Imports the task or family that ``spec`` names.

  Args:
    spec: ``"package.module:object"``; ``object`` may be dotted
      (``"module:Class.attribute"``).
    **kwargs: passed to ``object`` when it is a class or function.

  Returns:
    The family, or a :class:`SingleTaskFamily` of the task.

  Raises:
    ValueError: naming ``spec``, if it is malformed, its module cannot be
      imported, the object is missing, or it is neither a Task nor a
      TaskFamily (nor returns one).
  """
  module_name, _, attribute = spec.partition(":")
  if not module_name or not attribute or ":" in attribute:
    raise ValueError(f"task spec {spec!r} is not of the form "
                     "'package.module:object'")
  try:
    obj = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f"task spec {spec!r}: cannot import module "
                     f"{module_name!r} ({e})") from e
  for part in attribute.split("."):
    if not hasattr(obj, part):
      raise ValueError(f"task spec {spec!r}: module {module_name!r} has no "
                       f"attribute {attribute!r}")
    obj = getattr(obj, part)
  if not (is_task(obj) or is_family(obj)) and callable(obj):
    try:
      obj = obj(**kwargs)
    except TypeError as e:
      raise ValueError(f"task spec {spec!r}: calling {attribute}() failed "
                       f"({e})") from e
  elif kwargs:
    raise ValueError(f"task spec {spec!r} names an object, which takes no "
                     f"keyword arguments (got {sorted(kwargs)})")
  if is_family(obj):
    return obj
  if is_task(obj):
    return SingleTaskFamily(obj)
  raise ValueError(
      f"task spec {spec!r}: {type(obj).__name__} object is neither a Task "
      f"(methods {', '.join(TASK_METHODS)}) nor a TaskFamily (sample_task)")
