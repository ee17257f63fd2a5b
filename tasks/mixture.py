"""A task family that draws from several families."""

import dataclasses

import numpy as np

from tasks.base import Task, TaskFamily


@dataclasses.dataclass(frozen=True)
class MixtureFamily:
  """Draws a family uniformly, then a task from it.

  Attributes:
    families: the families to mix.
  """
  families: tuple[TaskFamily, ...]

  def __post_init__(self):
    if not self.families:
      raise ValueError('MixtureFamily needs at least one family')

  @property
  def name(self) -> str:
    return '+'.join(f.name for f in self.families)

  def sample_task(self, rng: np.random.Generator) -> Task:
    """Returns a task of a uniformly drawn family."""
    return self.families[rng.integers(len(self.families))].sample_task(rng)
