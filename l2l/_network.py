"""The coordinatewise LSTM optimizer network (flax linen)."""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2l import _compact
from l2l._base import Array, MetaParams



class LSTMCarry(NamedTuple):
  """Recurrent state of ``N`` independent LSTM stacks.

  Attributes:
    cell: one ``[..., hidden_size]`` array per layer.
    hidden: one ``[..., hidden_size]`` array per layer.
  """
  cell: tuple[Array, ...]
  hidden: tuple[Array, ...]


def _lift(row: Array, ndim: int) -> Array:
  """``row`` of shape ``[K]`` reshaped to rank ``ndim`` (``[1, ..., 1, K]``)
  so that it broadcasts against ``[..., K]`` without rank promotion."""
  return jnp.reshape(row, (1,) * (ndim - 1) + row.shape)


def _project(inputs: Array, kernel: Array) -> Array:
  """``inputs @ kernel`` for a few input features, as fused multiply-adds.

  A ``[..., 2] @ [2, 4H]`` matmul would write its own ``[..., 4H]`` output;
  as broadcast products XLA fuses it into the gate arithmetic instead.
  """
  return sum(inputs[..., i:i + 1] * _lift(kernel[i], inputs.ndim)
             for i in range(inputs.shape[-1]))


class CoordinatewiseLSTM(nn.Module):
  r"""A stack of LSTM layers applied independently to every coordinate.

  For layer :math:`l` with input :math:`x` (the preprocessed gradient, or the
  layer below's hidden state):

  .. math::
    (i, f, g, o) = x W_x + h W_h + b, \quad
    c' = \sigma(f + 1) c + \sigma(i) \tanh g, \quad h' = \sigma(o) \tanh c'

  and the outputs are ``output_scale * (h' W_out + b_out)`` of the top
  layer.
  The weights are shared by all coordinates; each coordinate has its own
  ``(c, h)``. All coordinates of a tensor are one batch. The input projection of
  the first layer is computed as fused multiply-adds and the gates stay in
  one fused loop, which keeps memory traffic per coordinate low.

  Attributes:
    hidden_size: units per layer (20 in the paper).
    num_layers: stacked LSTM layers (2 in the paper).
    num_outputs: read-out values per coordinate.
    output_scale: factor on the linear read-out (0.1 in the paper).
    output_init: initializer of the read-out kernel; zeros make a fresh
      network output exactly zero.
  """
  hidden_size: int = 20
  num_layers: int = 2
  num_outputs: int = 1
  output_scale: float = 0.1
  output_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, inputs: Array, carry: LSTMCarry) -> tuple[Array, LSTMCarry]:
    """Maps ``[..., F]`` inputs to ``[..., num_outputs]`` and a new carry."""
    init = nn.initializers.lecun_normal()
    hidden_4 = 4 * self.hidden_size
    x, cells, hiddens = inputs, [], []
    for layer in range(self.num_layers):
      # float32 weights whatever jax_enable_x64 says.
      kernel_x = self.param(f'lstm_{layer}_x', init, (x.shape[-1], hidden_4),
                            jnp.float32)
      kernel_h = self.param(f'lstm_{layer}_h', init,
                            (self.hidden_size, hidden_4), jnp.float32)
      bias = self.param(f'lstm_{layer}_b', nn.initializers.zeros, (hidden_4,),
                        jnp.float32)
      projected = (_project(x, kernel_x) if layer == 0 else x @ kernel_x)
      gates = (projected + carry.hidden[layer] @ kernel_h
               + _lift(bias, projected.ndim))
      i, f, g, o = jnp.split(gates, 4, axis=-1)
      # The +1 forget bias makes a fresh cell remember, as is standard.
      cell = jax.nn.sigmoid(f + 1.0) * carry.cell[layer] + (
          jax.nn.sigmoid(i) * jnp.tanh(g))
      x = jax.nn.sigmoid(o) * jnp.tanh(cell)
      cells.append(cell)
      hiddens.append(x)
    output = nn.Dense(self.num_outputs, kernel_init=self.output_init,
                      name='output')(x) * self.output_scale
    return output, LSTMCarry(tuple(cells), tuple(hiddens))


def init_meta_params(
    key: jax.Array, *, design: str = 'paper', hidden_size: int = 20,
    num_layers: int = 2, nominal_lr: float | None = None
) -> MetaParams:
  """Returns fresh meta-parameters of a learned optimizer.

  Args:
    key: PRNG key.
    design: ``'paper'`` (Andrychowicz et al. 2016), ``'adaptive'``,
      ``'hyper'``, ``'free'`` or ``'compact'`` (see
      :func:`l2l.lstm_optimizer`); a fresh ``'adaptive'`` optimizer is Adam,
      a fresh ``'hyper'`` one is NAdam with hypergradient-adapted
      per-tensor steps, a fresh ``'free'`` or ``'compact'`` one is
      schedule-free Adam with such steps.
    hidden_size: units per LSTM layer (per coordinate; per tensor for the
      compact design).
    num_layers: number of stacked LSTM layers.
    nominal_lr: the initial nominal learning rate of the adaptive, hyper
      and free designs; ``None`` for 0.03 (hyper), 0.2 (free) or 0.1
      (adaptive).

  Returns:
    A pytree of float32 arrays: ``{'params': <LSTM weights>}``, plus
    ``{'nominal': {'log_lr': ...}}`` for the adaptive design and
    ``{'nominal': {'log_lr', 'log_kappa', 'offset'}}`` for the hyper one
    (hypergradient rate 0.05, offset -0.03) and those plus
    ``'interpolation'`` (0.93), ``'average_growth'`` (1), ``'spike_cut'``
    (1/2), ``'second_moment_rate'`` (0: the second moment decays at
    1 - 0.01 e^0 = 0.99) and ``'second_moment_warmup'`` (40: it decays at
    0.8 for the first 40 steps) for the free one; the compact one has the
    free one's ``'nominal'`` entries, its per-tensor LSTM (zero read-out)
    in ``'params'`` and its per-parameter MLP (zero read-out, and the log
    of its corrections' fade-out timescale, 100 steps) in
    ``{'mlp': {'hidden', 'output': {'kernel', 'bias', 'log_fade'}}}``.

  Raises:
    ValueError: an unknown ``design``.
  """
  if design not in DESIGNS:
    raise ValueError(f'unknown design {design!r}; choose from {sorted(DESIGNS)}')
  num_inputs, num_outputs = DESIGNS[design]
  network = CoordinatewiseLSTM(
      hidden_size=hidden_size, num_layers=num_layers, num_outputs=num_outputs,
      output_init=(nn.initializers.lecun_normal() if design == 'paper'
                   else nn.initializers.zeros))
  zeros = (jnp.zeros((1, hidden_size), jnp.float32),) * num_layers
  meta_params = dict(network.init(
      key, jnp.zeros((1, num_inputs), jnp.float32), LSTMCarry(zeros, zeros)))
  if nominal_lr is None:
    nominal_lr = {'hyper': 0.03, 'free': 0.2, 'compact': 0.2}.get(design, 0.1)
  if design != 'paper':
    meta_params['nominal'] = {'log_lr': jnp.log(jnp.float32(nominal_lr))}
  if design in ('hyper', 'free', 'compact'):
    meta_params['nominal'].update(log_kappa=jnp.log(jnp.float32(0.05)),
                                  offset=jnp.float32(-0.03))
  if design == 'compact':
    meta_params['mlp'] = _compact.init_mlp(jax.random.fold_in(key, 1))
  if design in ('free', 'compact'):
    meta_params['nominal'].update(
        interpolation=jnp.float32(0.93), average_growth=jnp.float32(1.0),
        spike_cut=jnp.float32(0.5), second_moment_rate=jnp.float32(0.0),
        second_moment_warmup=jnp.float32(40.0))
  return meta_params


#: The designs of learned optimizer, by name: ``design -> (num_inputs,
#: num_outputs)``, the input features and read-out values of the LSTM, per
#: coordinate (per tensor for ``'compact'``; see :func:`l2l.lstm_optimizer`).
DESIGNS = {'paper': (2, 1), 'adaptive': (4, 2), 'hyper': (6, 2),
           'free': (6, 2),
           'compact': (_compact.NUM_STATISTICS, _compact.NUM_MODULATIONS)}


def architecture(meta_params: MetaParams) -> dict[str, Any]:
  """Returns ``{'design', 'hidden_size', 'num_layers'}`` of the meta-params.

  Raises:
    ValueError: if ``meta_params`` is not a tree made by
      :func:`init_meta_params` (of any design and size).
  """
  try:
    nominal = meta_params.get('nominal', {})
    design = ('paper' if not nominal else
              'compact' if 'mlp' in meta_params else
              'free' if 'interpolation' in nominal else
              'hyper' if 'log_kappa' in nominal else 'adaptive')
    num_inputs, num_outputs = DESIGNS[design]
    layers = meta_params['params']
    num_layers = sum(1 for k in layers if k.endswith('_h'))
    hidden_size = layers['output']['kernel'].shape[0]
    if num_layers < 1:
      raise ValueError('no LSTM layers (lstm_0_h, lstm_1_h, ...)')
    for i in range(num_layers):
      fan_in = num_inputs if i == 0 else hidden_size
      shapes = [layers[f'lstm_{i}_{k}'].shape for k in 'xhb']
      if shapes != [(fan_in, 4 * hidden_size), (hidden_size, 4 * hidden_size),
                    (4 * hidden_size,)]:
        raise ValueError(f'layer {i} has weight shapes {shapes}')
    if layers['output']['kernel'].shape != (hidden_size, num_outputs):
      raise ValueError('the read-out does not match the design')
    if design == 'compact':
      _compact.check_mlp(meta_params['mlp'])
  except (KeyError, TypeError, AttributeError, ValueError) as e:
    raise ValueError(
        'meta_params do not describe a coordinatewise LSTM made by '
        f'l2l.init_meta_params: {e!r}') from e
  return {'design': design, 'hidden_size': int(hidden_size),
          'num_layers': num_layers}
