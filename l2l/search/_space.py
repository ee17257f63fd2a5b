"""Search spaces as data: a space is a sequence of named discrete choices.

A *configuration* is one option index per choice, an int32 vector of shape
``(num_choices,)``; its *config string* is the readable form
``"name=value name=value ..."`` (whitespace separated, in the space's order).
A *flat index* numbers every configuration of a space in mixed radix, which
is how a tabular benchmark stores one row per architecture.

Example:
  >>> space = Space('toy', (Choice('width', (16, 32)), Choice('act', ('relu', 'tanh'))))
  >>> space.parse('width=32 act=relu')
  array([1, 0], dtype=int32)
  >>> space.config_string([0, 1])
  'width=16 act=tanh'
"""

import dataclasses
import math
from typing import Any, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Choice:
  """One named discrete decision.

  Attributes:
    name: A name without whitespace or ``=``, unique in its space.
    options: The values it can take (ints or strings), at least one,
      distinct once written as strings.
  """
  name: str
  options: tuple[Any, ...]

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name or any(
        c.isspace() or c == '=' for c in self.name):
      raise ValueError(f'Choice name must be a non-empty string without '
                       f'whitespace or "=", got {self.name!r}.')
    object.__setattr__(self, 'options', tuple(self.options))
    texts = [str(option) for option in self.options]
    if not texts:
      raise ValueError(f'Choice {self.name!r} has no options.')
    if len(set(texts)) != len(texts) or any(
        not t or any(c.isspace() for c in t) for t in texts):
      raise ValueError(f'Choice {self.name!r}: options must be distinct, '
                       f'non-empty and without whitespace, got {texts}.')


@dataclasses.dataclass(frozen=True)
class Space:
  """A search space: a named sequence of :class:`Choice`.

  Attributes:
    name: The space's name; also the key of its parser in
      :data:`l2l.search.PARSERS` when it has one.
    choices: The decisions, in the order configurations list them.
    meta: Structural settings the parser reads (e.g. number of cells), as
      a tuple of ``(key, value)`` pairs so the space stays hashable.
  """
  name: str
  choices: tuple[Choice, ...]
  meta: tuple[tuple[str, Any], ...] = ()

  def __post_init__(self):
    object.__setattr__(self, 'choices', tuple(self.choices))
    if not self.choices:
      raise ValueError(f'Space {self.name!r} has no choices.')
    for choice in self.choices:
      if not isinstance(choice, Choice):
        raise TypeError(f'Space {self.name!r}: expected Choice, got '
                        f'{type(choice).__name__}.')
    names = [choice.name for choice in self.choices]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
      raise ValueError(f'Space {self.name!r}: duplicate choice names {duplicates}.')

  @property
  def num_options(self) -> tuple[int, ...]:
    """Number of options of each choice."""
    return tuple(len(choice.options) for choice in self.choices)

  @property
  def size(self) -> int:
    """Number of configurations, the product of :attr:`num_options`."""
    return math.prod(self.num_options)

  def settings(self) -> dict[str, Any]:
    """The structural settings :attr:`meta` as a dict."""
    return dict(self.meta)

  def validate(self, config: Sequence[int] | np.ndarray) -> np.ndarray:
    """Checks a configuration and returns it as an int32 numpy vector.

    Raises:
      ValueError: wrong length, non-integer entries or an index out of range
        (the message names the choice).
    """
    array = np.asarray(config)
    if array.shape != (len(self.choices),):
      raise ValueError(f'Space {self.name!r}: a config has shape '
                       f'({len(self.choices)},), got {array.shape}.')
    if array.dtype.kind not in 'iu':
      raise ValueError(f'Space {self.name!r}: config entries must be '
                       f'integers, got dtype {array.dtype}.')
    for index, choice in zip(array.tolist(), self.choices):
      if not 0 <= index < len(choice.options):
        raise ValueError(f'Space {self.name!r}: choice {choice.name!r} has '
                         f'{len(choice.options)} options, got index {index}.')
    return array.astype(np.int32)

  def values(self, config) -> dict[str, Any]:
    """Maps each choice's name to its chosen value."""
    config = self.validate(config)
    return {c.name: c.options[i] for c, i in zip(self.choices, config.tolist())}

  def config_string(self, config) -> str:
    """The readable string ``"name=value ..."`` of a configuration."""
    return ' '.join(f'{k}={v}' for k, v in self.values(config).items())

  def parse(self, text: str) -> np.ndarray:
    """Reads a config string back into option indices.

    Raises:
      TypeError: ``text`` is not a string.
      ValueError: a malformed token, an unknown, missing or repeated choice,
        or a value that is not one of the choice's options.
    """
    if not isinstance(text, str):
      raise TypeError(f'A config string must be str, got {type(text).__name__}.')
    given = {}
    for token in text.split():
      name, sep, value = token.partition('=')
      if not sep:
        raise ValueError(f'Space {self.name!r}: token {token!r} is not name=value.')
      if name in given:
        raise ValueError(f'Space {self.name!r}: choice {name!r} given twice.')
      given[name] = value
    known = {choice.name for choice in self.choices}
    unknown = sorted(set(given) - known)
    if unknown:
      raise ValueError(f'Space {self.name!r}: unknown choices {unknown}.')
    missing = [c.name for c in self.choices if c.name not in given]
    if missing:
      raise ValueError(f'Space {self.name!r}: missing choices {missing}.')
    config = []
    for choice in self.choices:
      texts = [str(option) for option in choice.options]
      if given[choice.name] not in texts:
        raise ValueError(f'Space {self.name!r}: choice {choice.name!r} must be '
                         f'one of {texts}, got {given[choice.name]!r}.')
      config.append(texts.index(given[choice.name]))
    return np.asarray(config, np.int32)

  def sample(self, rng: np.random.Generator) -> np.ndarray:
    """Draws a configuration uniformly with a numpy generator."""
    return np.asarray([rng.integers(n) for n in self.num_options], np.int32)

  def flat_index(self, config) -> int:
    """The configuration's number in ``[0, size)`` (mixed radix, first choice most significant)."""
    index = 0
    for value, n in zip(self.validate(config).tolist(), self.num_options):
      index = index * n + value  # Python ints: large spaces overflow int64.
    return index

  def from_flat_index(self, index: int) -> np.ndarray:
    """The configuration numbered ``index``; inverse of :meth:`flat_index`."""
    if not 0 <= int(index) < self.size:
      raise ValueError(f'Space {self.name!r}: flat index must lie in '
                       f'[0, {self.size}), got {index}.')
    index, config = int(index), []
    for n in reversed(self.num_options):
      index, value = divmod(index, n)
      config.append(value)
    return np.asarray(config[::-1], np.int32)

  def all_configs(self) -> np.ndarray:
    """Every configuration, ``(size, num_choices)`` int32, in flat-index order.

    Raises:
      ValueError: the space has more than a million configurations.
    """
    if self.size > 1_000_000:
      raise ValueError(f'Space {self.name!r} has {self.size} configurations; '
                       'too many to list.')
    grids = np.indices(self.num_options).reshape(len(self.choices), -1)
    return grids.T.astype(np.int32)


#: The operations of a NASNet cell (Zoph et al., 2018): separable,
#: factorised and dilated convolutions, pooling and the identity.
NASNET_OPS = ('identity', 'sep3x3', 'sep5x5', 'avg3x3', 'max3x3',
              'conv1x7_7x1', 'dil3x3')
#: Activations of a recurrent cell node.
RECURRENT_ACTIVATIONS = ('tanh', 'relu', 'sigmoid', 'identity')
#: Edge operations of the tabular cell space.
TABULAR_OPS = ('none', 'skip', 'dense_relu', 'dense_tanh')


def nas_layer_space(num_layers: int = 6,
                    filter_sizes: Sequence[int] = (1, 3, 5, 7),
                    strides: Sequence[int] = (1, 2, 3),
                    num_filters: Sequence[int] = (24, 36, 48, 64)) -> Space:
  """The convolutional layer space of Zoph & Le (2017).

  Per layer ``i``: ``filter_height{i}``, ``filter_width{i}``, ``stride{i}``,
  ``filters{i}``, and for every earlier layer ``j`` an anchor-point skip
  ``skip{i}_{j}`` in ``{0, 1}`` (layer ``j``'s output joins layer ``i``'s
  input; the previous layer always does).

  Args:
    num_layers: Number of convolutional layers, at least 1.
    filter_sizes: Options of filter height and width.
    strides: Options of the stride (both axes).
    num_filters: Options of the number of output channels.

  Returns:
    The space; its parser is :class:`l2l.search.NASLayerNet`.

  References:
    Zoph & Le, "Neural Architecture Search with Reinforcement Learning",
    ICLR 2017.
  """
  if int(num_layers) < 1:
    raise ValueError(f'num_layers must be >= 1, got {num_layers}.')
  choices = []
  for i in range(int(num_layers)):
    choices += [Choice(f'filter_height{i}', filter_sizes),
                Choice(f'filter_width{i}', filter_sizes),
                Choice(f'stride{i}', strides), Choice(f'filters{i}', num_filters)]
    choices += [Choice(f'skip{i}_{j}', (0, 1)) for j in range(i - 1)]
  return Space('nas_layer', tuple(choices), (('num_layers', int(num_layers)),))


def nasnet_space(num_blocks: int = 5, ops: Sequence[str] = NASNET_OPS,
                 num_repeats: int = 2, filters: int = 16) -> Space:
  """The NASNet cell space (Zoph et al., 2018): a normal and a reduction cell.

  Each cell has ``num_blocks`` blocks; block ``b`` of cell ``c`` (``normal``
  or ``reduce``) picks two inputs ``{c}{b}.in_a``, ``{c}{b}.in_b`` among the
  cell's two inputs (0: the cell before the previous, 1: the previous) and
  the outputs of blocks ``0..b-1`` (``2..b+1``), and two operations
  ``{c}{b}.op_a``, ``{c}{b}.op_b`` from ``ops``; it adds the two results.
  The cell's output concatenates the hidden states no block used.

  Args:
    num_blocks: Blocks per cell, at least 1.
    ops: Operation names, a subset of :data:`l2l.search.NASNET_OPS`.
    num_repeats: Normal cells stacked between reductions (``N``).
    filters: Channels of the first stage; doubled at each reduction.

  Returns:
    The space; its parser is :class:`l2l.search.NASNetCellNet`.

  References:
    Zoph, Vasudevan, Shlens & Le, "Learning Transferable Architectures for
    Scalable Image Recognition", CVPR 2018.
  """
  unknown = sorted(set(ops) - set(NASNET_OPS))
  if unknown:
    raise ValueError(f'Unknown NASNet ops {unknown}; known: {list(NASNET_OPS)}.')
  if int(num_blocks) < 1 or int(num_repeats) < 1:
    raise ValueError('num_blocks and num_repeats must be >= 1, got '
                     f'{num_blocks}, {num_repeats}.')
  choices = []
  for cell in ('normal', 'reduce'):
    for b in range(int(num_blocks)):
      inputs = tuple(range(b + 2))
      choices += [Choice(f'{cell}{b}.in_a', inputs), Choice(f'{cell}{b}.in_b', inputs),
                  Choice(f'{cell}{b}.op_a', tuple(ops)),
                  Choice(f'{cell}{b}.op_b', tuple(ops))]
  meta = (('num_blocks', int(num_blocks)), ('num_repeats', int(num_repeats)),
          ('filters', int(filters)))
  return Space('nasnet', tuple(choices), meta)


def recurrent_space(num_nodes: int = 8,
                    activations: Sequence[str] = RECURRENT_ACTIVATIONS,
                    hidden_size: int = 32) -> Space:
  """A NASCell-like recurrent cell space.

  Node 0 computes ``act0(W x_t + U h_{t-1})``; node ``i >= 1`` picks an
  earlier node ``node{i}.input`` and an activation ``node{i}.activation`` and
  computes ``act(W_i node_j)``. The new hidden state averages the nodes no
  other node reads (the loose ends).

  Args:
    num_nodes: Nodes in the cell, at least 1.
    activations: Options among :data:`l2l.search.RECURRENT_ACTIVATIONS`.
    hidden_size: Width of the hidden state.

  Returns:
    The space; its parser is :class:`l2l.search.RecurrentCellNet`.

  References:
    Zoph & Le, 2017 (the NASCell); Pham et al., "Efficient Neural
    Architecture Search via Parameter Sharing", ICML 2018 (this DAG form).
  """
  unknown = sorted(set(activations) - set(RECURRENT_ACTIVATIONS))
  if unknown:
    raise ValueError(f'Unknown activations {unknown}; known: '
                     f'{list(RECURRENT_ACTIVATIONS)}.')
  if int(num_nodes) < 1:
    raise ValueError(f'num_nodes must be >= 1, got {num_nodes}.')
  choices = [Choice('node0.activation', tuple(activations))]
  for i in range(1, int(num_nodes)):
    choices += [Choice(f'node{i}.input', tuple(range(i))),
                Choice(f'node{i}.activation', tuple(activations))]
  meta = (('num_nodes', int(num_nodes)), ('hidden_size', int(hidden_size)))
  return Space('recurrent', tuple(choices), meta)


def tabular_cell_space(num_nodes: int = 4, ops: Sequence[str] = TABULAR_OPS,
                       width: int = 32) -> Space:
  """The reduced cell space of the tabular benchmark (NAS-Bench-201 style).

  A cell is a DAG on ``num_nodes`` nodes; node 0 is the cell's input and
  every edge ``i -> j`` (``i < j``) carries one operation ``edge{i}{j}``
  among ``ops``; node ``j`` sums its incoming edges and the cell's output
  is the last node. With 4 nodes and 4 ops there are ``4 ** 6 = 4096`` cells.

  Args:
    num_nodes: Nodes of the DAG, at least 2.
    ops: Operation names among :data:`l2l.search.TABULAR_OPS`.
    width: Width of every node's hidden vector.

  Returns:
    The space; its parser is :class:`l2l.search.TabularCellNet`.

  References:
    Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural
    Architecture Search", ICLR 2020.
  """
  unknown = sorted(set(ops) - set(TABULAR_OPS))
  if unknown:
    raise ValueError(f'Unknown tabular ops {unknown}; known: {list(TABULAR_OPS)}.')
  if int(num_nodes) < 2:
    raise ValueError(f'num_nodes must be >= 2, got {num_nodes}.')
  choices = tuple(Choice(f'edge{i}{j}', tuple(ops))
                  for j in range(1, int(num_nodes)) for i in range(j))
  meta = (('num_nodes', int(num_nodes)), ('width', int(width)))
  return Space('tabular_cell', choices, meta)


#: Space factories by name (the ``--space`` of ``python -m meta_train.search``).
SPACES = {'nas_layer': nas_layer_space, 'nasnet': nasnet_space,
          'recurrent': recurrent_space, 'tabular_cell': tabular_cell_space}
