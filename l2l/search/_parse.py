"""Parsers: a configuration of a space becomes a flax module.

Each module takes the space and the configuration (option indices) as
static attributes and reads the chosen values with ``space.values``; so one
class serves every configuration of its space and a configuration that does
not fit raises the space's ``ValueError`` when the module is applied.
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2l.search._space import Space

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'tanh': jnp.tanh, 'relu': nn.relu, 'sigmoid': nn.sigmoid,
    'identity': lambda x: x}


def _check_space(space: Space, name: str):
  if not isinstance(space, Space) or space.name != name:
    raise ValueError(f'This parser reads the {name!r} space, got '
                     f'{getattr(space, "name", space)!r}.')


def _pad_to(x: jax.Array, height: int, width: int) -> jax.Array:
  """Zero-pads NHWC ``x`` at the bottom and right to ``height`` x ``width``."""
  return jnp.pad(x, ((0, 0), (0, height - x.shape[1]), (0, width - x.shape[2]), (0, 0)))


def _concat_padded(xs: Sequence[jax.Array]) -> jax.Array:
  height = max(x.shape[1] for x in xs)
  width = max(x.shape[2] for x in xs)
  return jnp.concatenate([_pad_to(x, height, width) for x in xs], axis=-1)


class NASLayerNet(nn.Module):
  """A child network of :func:`l2l.search.nas_layer_space` (Zoph & Le, 2017).

  Layer ``i`` concatenates the previous layer's output with those of its
  chosen anchors (zero-padded to the largest height and width, as in the
  paper), then applies a ``'SAME'`` convolution and a ReLU. Outputs that no
  layer reads are average-pooled, concatenated and classified.

  Attributes:
    space: A ``nas_layer`` space.
    config: Option indices, a tuple of ints.
    num_classes: Number of logits.

  Call: images ``(batch, height, width, channels)`` float; returns logits
  ``(batch, num_classes)``.
  """
  space: Space
  config: tuple[int, ...]
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _check_space(self.space, 'nas_layer')
    value = self.space.values(self.config)
    outputs, used = [], set()
    for i in range(self.space.settings()['num_layers']):
      sources = [] if i == 0 else [i - 1] + [
          j for j in range(i - 1) if value[f'skip{i}_{j}']]
      used.update(sources)
      h = x if i == 0 else _concat_padded([outputs[j] for j in sources])
      stride = value[f'stride{i}']
      h = nn.Conv(value[f'filters{i}'],
                  (value[f'filter_height{i}'], value[f'filter_width{i}']),
                  strides=(stride, stride), padding='SAME', name=f'conv{i}')(h)
      outputs.append(nn.relu(h))
    loose = [h.mean(axis=(1, 2)) for i, h in enumerate(outputs) if i not in used]
    return nn.Dense(self.num_classes, name='head')(jnp.concatenate(loose, -1))


class _NASNetOp(nn.Module):
  """One operation of a NASNet block on NHWC input, ``stride`` 1 or 2."""
  op: str
  filters: int
  stride: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s, c = self.stride, self.filters
    if self.op == 'identity':
      return x if s == 1 else nn.Conv(c, (1, 1), strides=(s, s))(nn.relu(x))
    if self.op in ('avg3x3', 'max3x3'):
      pool = nn.avg_pool if self.op == 'avg3x3' else nn.max_pool
      return pool(x, (3, 3), strides=(s, s), padding='SAME')
    x = nn.relu(x)
    if self.op in ('sep3x3', 'sep5x5'):
      k = 3 if self.op == 'sep3x3' else 5
      x = nn.Conv(x.shape[-1], (k, k), strides=(s, s), padding='SAME',
                  feature_group_count=x.shape[-1], use_bias=False)(x)
      return nn.Conv(c, (1, 1))(x)
    if self.op == 'conv1x7_7x1':
      x = nn.Conv(c, (1, 7), strides=(1, s), padding='SAME')(x)
      return nn.Conv(c, (7, 1), strides=(s, 1), padding='SAME')(x)
    if self.op == 'dil3x3':
      return nn.Conv(c, (3, 3), strides=(s, s), padding='SAME',
                     kernel_dilation=(2, 2))(x)
    raise ValueError(f'Unknown NASNet op {self.op!r}.')


class _NASNetCell(nn.Module):
  """A normal or reduction cell: blocks add two operated inputs."""
  space: Space
  config: tuple[int, ...]
  kind: str
  filters: int

  @nn.compact
  def __call__(self, prev: jax.Array, cur: jax.Array) -> jax.Array:
    value = self.space.values(self.config)
    c = self.filters
    reduce = self.kind == 'reduce'
    prev_stride = 2 if prev.shape[1] > cur.shape[1] else 1
    states = [nn.Conv(c, (1, 1), strides=(prev_stride,) * 2)(nn.relu(prev)),
              nn.Conv(c, (1, 1))(nn.relu(cur))]
    used = set()
    for b in range(self.space.settings()['num_blocks']):
      total = 0.0
      for side in ('a', 'b'):
        index = value[f'{self.kind}{b}.in_{side}']
        used.add(index)
        stride = 2 if reduce and index < 2 else 1
        total = total + _NASNetOp(value[f'{self.kind}{b}.op_{side}'], c,
                                  stride)(states[index])
      states.append(total)
    loose = [h for i, h in enumerate(states) if i >= 2 and i not in used]
    return nn.Conv(c, (1, 1))(jnp.concatenate(loose, -1))


class NASNetCellNet(nn.Module):
  """A child network of :func:`l2l.search.nasnet_space` (Zoph et al., 2018).

  A 3x3 stem, then three stages of ``num_repeats`` normal cells separated
  by two reduction cells (stride 2, filters doubled), global average
  pooling and a dense classifier. Batch normalisation is left out so that
  children are pure functions of their parameters.

  Attributes:
    space: A ``nasnet`` space.
    config: Option indices, a tuple of ints.
    num_classes: Number of logits.

  Call: images ``(batch, height, width, channels)`` float; returns logits
  ``(batch, num_classes)``.
  """
  space: Space
  config: tuple[int, ...]
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _check_space(self.space, 'nasnet')
    settings = self.space.settings()
    filters = settings['filters']
    prev = cur = nn.Conv(filters, (3, 3), padding='SAME', name='stem')(x)
    for stage in range(3):
      for _ in range(settings['num_repeats']):
        prev, cur = cur, _NASNetCell(self.space, self.config, 'normal', filters)(prev, cur)
      if stage < 2:
        filters *= 2
        prev, cur = cur, _NASNetCell(self.space, self.config, 'reduce', filters)(prev, cur)
    return nn.Dense(self.num_classes, name='head')(nn.relu(cur).mean(axis=(1, 2)))


class _RecurrentCell(nn.Module):
  space: Space
  config: tuple[int, ...]

  @nn.compact
  def __call__(self, hidden: jax.Array, x: jax.Array):
    value = self.space.values(self.config)
    settings = self.space.settings()
    size = settings['hidden_size']
    act = ACTIVATIONS[value['node0.activation']]
    nodes = [act(nn.Dense(size, name='w_x')(x)
                 + nn.Dense(size, use_bias=False, name='w_h')(hidden))]
    used = set()
    for i in range(1, settings['num_nodes']):
      j = value[f'node{i}.input']
      used.add(j)
      act = ACTIVATIONS[value[f'node{i}.activation']]
      nodes.append(act(nn.Dense(size, name=f'node{i}')(nodes[j])))
    loose = [h for i, h in enumerate(nodes) if i not in used]
    hidden = sum(loose) / len(loose)
    return hidden, hidden


class RecurrentCellNet(nn.Module):
  """A sequence classifier around a cell of :func:`l2l.search.recurrent_space`.

  Attributes:
    space: A ``recurrent`` space.
    config: Option indices, a tuple of ints.
    num_classes: Number of logits.

  Call: sequences ``(batch, time)`` or ``(batch, time, features)`` float;
  the last hidden state is classified into logits ``(batch, num_classes)``.
  """
  space: Space
  config: tuple[int, ...]
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _check_space(self.space, 'recurrent')
    x = x[..., None] if x.ndim == 2 else x
    scan = nn.scan(_RecurrentCell, variable_broadcast='params',
                   split_rngs={'params': False}, in_axes=1, out_axes=1)
    hidden = jnp.zeros((x.shape[0], self.space.settings()['hidden_size']), x.dtype)
    hidden, _ = scan(self.space, self.config, name='cell')(hidden, x)
    return nn.Dense(self.num_classes, name='head')(hidden)


def _tabular_op(op: str, h: jax.Array, width: int, name: str) -> jax.Array:
  if op == 'none':
    return jnp.zeros_like(h)
  if op == 'skip':
    return h
  act = nn.relu if op == 'dense_relu' else jnp.tanh
  return act(nn.Dense(width, name=f'{name}_{op}')(h))


class TabularCellNet(nn.Module):
  """A child of :func:`l2l.search.tabular_cell_space`, or the supernet.

  Inputs are flattened, embedded by a dense ``stem`` with a ReLU (node 0),
  passed through the cell DAG and classified by a dense ``head``. Without
  ``op_weights`` the module is the discrete child of ``config`` and creates
  only the chosen operations' parameters; given ``op_weights`` it is the
  masked supernet: every operation of every edge exists, and edge ``e``
  outputs ``sum_k op_weights[e, k] * op_k(h)``. With one-hot weights the
  supernet equals the child whose parameters are its subset (same names),
  which is how the tabular benchmark trains thousands of children in one
  compiled function, and how a relaxed search (DARTS) would train weights.

  Attributes:
    space: A ``tabular_cell`` space.
    config: Option indices, a tuple of ints; ignored by the supernet.
    num_classes: Number of logits.

  Call: ``x`` of shape ``(batch, ...)`` float, optional ``op_weights`` of
  shape ``(num_edges, num_ops)`` (the space's choices and options); returns
  logits ``(batch, num_classes)``.
  """
  space: Space
  config: tuple[int, ...] = ()
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, op_weights: jax.Array | None = None) -> jax.Array:
    _check_space(self.space, 'tabular_cell')
    settings = self.space.settings()
    width, num_nodes = settings['width'], settings['num_nodes']
    ops = self.space.choices[0].options
    if op_weights is None:
      chosen = self.space.values(self.config)
    elif op_weights.shape != (len(self.space.choices), len(ops)):
      raise ValueError(f'op_weights must have shape {(len(self.space.choices), len(ops))},'
                       f' got {op_weights.shape}.')
    nodes = [nn.relu(nn.Dense(width, name='stem')(x.reshape(x.shape[0], -1)))]
    edge = 0
    for j in range(1, num_nodes):
      total = 0.0
      for i in range(j):
        name = f'edge{i}{j}'
        if op_weights is None:
          total = total + _tabular_op(chosen[name], nodes[i], width, name)
        else:
          total = total + sum(op_weights[edge, k] * _tabular_op(op, nodes[i], width, name)
                              for k, op in enumerate(ops))
        edge += 1
      nodes.append(total)
    return nn.Dense(self.num_classes, name='head')(nodes[-1])


#: Parser (flax module class) of each space, by the space's name.
PARSERS: dict[str, Any] = {'nas_layer': NASLayerNet, 'nasnet': NASNetCellNet,
                           'recurrent': RecurrentCellNet,
                           'tabular_cell': TabularCellNet}


def build(space: Space, config, num_classes: int = 10) -> nn.Module:
  """Parses a configuration (indices or config string) into a flax module.

  Args:
    space: A space whose name is a key of :data:`PARSERS`.
    config: Option indices ``(num_choices,)`` or a config string.
    num_classes: Number of logits of the classifier.

  Returns:
    The child network, an unbound ``flax.linen.Module``.

  Raises:
    ValueError: the space has no parser or the configuration is invalid.
  """
  if space.name not in PARSERS:
    raise ValueError(f'No parser for space {space.name!r}; known: {sorted(PARSERS)}.')
  config = space.parse(config) if isinstance(config, str) else space.validate(config)
  return PARSERS[space.name](space, tuple(config.tolist()), num_classes)
