"""The coordinatewise LSTM optimizer network (flax linen)."""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2l._base import Array, MetaParams

NUM_INPUTS = 2  # (log-magnitude, sign) of the preprocessed gradient.


class LSTMCarry(NamedTuple):
  """Recurrent state of ``num_coordinates`` independent LSTM stacks."""
  cell: Array    # [num_coordinates, num_layers, hidden_size]
  hidden: Array  # [num_coordinates, num_layers, hidden_size]


class CoordinatewiseLSTM(nn.Module):
  """A stack of LSTM layers applied independently to every coordinate.

  The weights are shared by all coordinates; each coordinate has its own
  cell and hidden state. All coordinates are one batch of rows, so a million
  parameters cost a handful of ``[N, k] @ [k, 4 * hidden_size]`` matmuls.

  Attributes:
    hidden_size: units per layer (20 in the paper).
    num_layers: stacked LSTM layers (2 in the paper).
    output_scale: factor on the linear read-out (0.1 in the paper).
  """
  hidden_size: int = 20
  num_layers: int = 2
  output_scale: float = 0.1

  @nn.compact
  def __call__(self, inputs: Array, carry: LSTMCarry) -> tuple[Array, LSTMCarry]:
    """Returns the per-coordinate output ``[N]`` and the next carry."""
    x = inputs
    cells, hiddens = [], []
    for layer in range(self.num_layers):
      gates = nn.Dense(4 * self.hidden_size, name=f'lstm_{layer}')(
          jnp.concatenate([x, carry.hidden[:, layer]], axis=-1))
      i, f, g, o = jnp.split(gates, 4, axis=-1)
      # The +1 forget bias makes the initial cell remember, as is standard.
      cell = jax.nn.sigmoid(f + 1.0) * carry.cell[:, layer] + (
          jax.nn.sigmoid(i) * jnp.tanh(g))
      x = jax.nn.sigmoid(o) * jnp.tanh(cell)
      cells.append(cell)
      hiddens.append(x)
    output = nn.Dense(1, name='output')(x)[:, 0] * self.output_scale
    return output, LSTMCarry(jnp.stack(cells, 1), jnp.stack(hiddens, 1))


def init_meta_params(
    key: jax.Array, *, hidden_size: int = 20, num_layers: int = 2
) -> MetaParams:
  """Returns fresh meta-parameters of the coordinatewise LSTM.

  Args:
    key: PRNG key.
    hidden_size: units per LSTM layer.
    num_layers: number of stacked LSTM layers.

  Returns:
    A flax parameter dict (a pytree of float32 arrays).
  """
  network = CoordinatewiseLSTM(hidden_size=hidden_size, num_layers=num_layers)
  zeros = jnp.zeros((1, num_layers, hidden_size), jnp.float32)
  return network.init(
      key, jnp.zeros((1, NUM_INPUTS), jnp.float32), LSTMCarry(zeros, zeros))
