"""The NAS controller (Zoph & Le, 2017): an LSTM that emits one choice per
token, trained by REINFORCE with a moving-average baseline."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2l.search._space import Space
from l2l.search._strategies import Strategy, _check

Array = jax.Array


class ControllerState(NamedTuple):
  """State of :func:`reinforce_controller`.

  Attributes:
    params: Controller parameters: ``embed`` ``(num_choices, max_options,
      hidden)``, ``start`` ``(hidden,)``, ``lstm_w`` ``(2 hidden, 4 hidden)``,
      ``lstm_b`` ``(4 hidden,)``, ``head_w`` ``(num_choices, hidden,
      max_options)``, ``head_b`` ``(num_choices, max_options)``; float32.
    opt_state: Adam state of the params.
    baseline: float32 moving average of the reward.
    count: int32 number of configurations told.
    mean_reward: float32 mean reward of the last tell (for plots).
  """
  params: Any
  opt_state: Any
  baseline: Array
  count: Array
  mean_reward: Array


def _init_params(key, num_choices, max_options, hidden):
  keys = jax.random.split(key, 4)
  scale = 0.1
  return {'embed': scale * jax.random.uniform(keys[0], (num_choices, max_options, hidden), minval=-1),
          'start': jnp.zeros((hidden,)),
          'lstm_w': scale * jax.random.uniform(keys[1], (2 * hidden, 4 * hidden), minval=-1),
          'lstm_b': jnp.zeros((4 * hidden,)),
          'head_w': scale * jax.random.uniform(keys[2], (num_choices, hidden, max_options), minval=-1),
          'head_b': jnp.zeros((num_choices, max_options))}


def _lstm(params, carry, x):
  cell, hidden = carry
  gates = jnp.concatenate([x, hidden], -1) @ params['lstm_w'] + params['lstm_b'][None, :]
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  cell = jax.nn.sigmoid(f + 1.0) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
  hidden = jax.nn.sigmoid(o) * jnp.tanh(cell)
  return cell, hidden


def _run(params, valid, tokens=None, key=None, batch_size=None, temperature=1.0,
         tanh_constant=None):
  """Unrolls the controller over the choices, sampling or scoring tokens.

  The head's logits are divided by ``temperature`` and, when
  ``tanh_constant`` is given, squashed to ``tanh_constant * tanh(logits)``
  (Pham et al. 2018), for sampling, log-probabilities and entropy alike.

  Returns ``(tokens (batch, num_choices) int32, log_prob (batch,),
  entropy (batch,))``.
  """
  num_choices, _, hidden = params['embed'].shape
  batch = tokens.shape[0] if tokens is not None else batch_size
  keys = (jax.random.split(key, num_choices) if key is not None
          else jnp.zeros((num_choices, 2), jnp.uint32))
  given = tokens.T if tokens is not None else jnp.zeros((num_choices, batch), jnp.int32)

  def step(carry, xs):
    cell, hid, x = carry
    embed, head_w, head_b, mask, key_d, given_d = xs
    cell, hid = _lstm(params, (cell, hid), x)
    logits = (hid @ head_w + head_b[None, :]) / temperature
    if tanh_constant is not None:
      logits = tanh_constant * jnp.tanh(logits)
    logits = jnp.where(mask, logits, -1e9)
    log_p = jax.nn.log_softmax(logits)
    if tokens is None:
      token = jax.random.categorical(jax.random.wrap_key_data(key_d), logits)
    else:
      token = given_d
    chosen = jnp.take_along_axis(log_p, token[:, None], 1)[:, 0]
    entropy = -jnp.sum(jnp.where(mask, jnp.exp(log_p) * log_p, 0.0), -1)
    return (cell, hid, embed[token]), (token, chosen, entropy)

  if key is not None:
    keys = jax.vmap(jax.random.key_data)(keys)
  zeros = jnp.zeros((batch, hidden))
  start = jnp.broadcast_to(params['start'], (batch, hidden))
  xs = (params['embed'], params['head_w'], params['head_b'], valid, keys, given)
  _, (toks, log_p, entropy) = jax.lax.scan(step, (zeros, zeros, start), xs)
  return toks.T.astype(jnp.int32), log_p.sum(0), entropy.sum(0)


def reinforce_controller(space: Space, batch_size: int = 4, hidden_size: int = 32,
                         learning_rate: float = 0.01, baseline_decay: float = 0.9,
                         entropy_weight: float = 1e-3, temperature: float = 1.0,
                         tanh_constant: float | None = None) -> Strategy:
  """The NAS controller trained with REINFORCE (Zoph & Le, 2017).

  An LSTM reads the embedding of the previous choice and emits a softmax
  over the next choice's options, one token per choice. Each tell takes
  one gradient step (Adam) on
  ``-mean((R - b) log p(config)) - entropy_weight * mean(H)``, where ``b``
  is the exponential moving average of past rewards (decay
  ``baseline_decay``), then updates ``b``; a batch of ``batch_size``
  children per controller step.

  ENAS (Pham et al. 2018) keeps its controller exploring by sampling from
  ``tanh_constant * tanh(logits / temperature)`` (their temperature 5,
  tanh constant 2.5): the temperature slows the logits' growth and the
  tanh bounds them, so no option's log-odds exceed ``2 * tanh_constant``.
  The defaults (1, None) leave the logits as they are (Zoph & Le).

  Args:
    space: The search space.
    batch_size: Children sampled per controller step.
    hidden_size: LSTM width.
    learning_rate: Adam step size.
    baseline_decay: Decay of the reward's moving average, in ``[0, 1)``.
    entropy_weight: Weight of the entropy bonus (summed over choices).
    temperature: Positive divisor of the head's logits.
    tanh_constant: If given (positive), the logits become
      ``tanh_constant * tanh(logits / temperature)``.

  Returns:
    The :class:`Strategy`; its state is a :class:`ControllerState`.

  Raises:
    ValueError: ``baseline_decay`` is not in ``[0, 1)``, ``temperature``
      or ``tanh_constant`` is not positive, ``entropy_weight`` or
      ``learning_rate`` is negative.

  References:
    Zoph & Le, "Neural Architecture Search with Reinforcement Learning",
    ICLR 2017; Pham, Guan, Zoph, Le & Dean, "Efficient Neural Architecture
    Search via Parameter Sharing", ICML 2018 (temperature, tanh constant);
    Williams, "Simple Statistical Gradient-Following Algorithms
    for Connectionist Reinforcement Learning", 1992.
  """
  _check(space, batch_size)
  if not 0.0 <= baseline_decay < 1.0:
    raise ValueError(f'baseline_decay must lie in [0, 1), got {baseline_decay}.')
  if not temperature > 0:
    raise ValueError(f'temperature must be positive, got {temperature}.')
  if tanh_constant is not None and not tanh_constant > 0:
    raise ValueError(f'tanh_constant must be positive or None, got {tanh_constant}.')
  if entropy_weight < 0 or learning_rate < 0:
    raise ValueError(f'entropy_weight ({entropy_weight}) and learning_rate ({learning_rate}) '
                     'must be non-negative.')
  squash = dict(temperature=float(temperature), tanh_constant=tanh_constant)
  num_options = space.num_options
  max_options = max(num_options)
  valid = jnp.arange(max_options)[None, :] < jnp.asarray(num_options)[:, None]
  valid = valid[:, None, :]  # Broadcast over the batch inside the scan.
  optimizer = optax.adam(learning_rate)

  def init(key):
    params = _init_params(key, len(num_options), max_options, hidden_size)
    return ControllerState(params, optimizer.init(params), jnp.zeros((), jnp.float32),
                           jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))

  def ask(key, state):
    tokens, _, _ = _run(state.params, valid, key=key, batch_size=batch_size, **squash)
    return tokens, state

  def tell(state, configs, fitness):
    fitness = fitness.astype(jnp.float32)
    baseline = jnp.where(state.count == 0, jnp.mean(fitness), state.baseline)

    def loss(params):
      _, log_p, entropy = _run(params, valid, tokens=configs, **squash)
      advantage = jax.lax.stop_gradient(fitness - baseline)
      return -jnp.mean(advantage * log_p) - entropy_weight * jnp.mean(entropy)

    grads = jax.grad(loss)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    baseline = baseline_decay * baseline + (1 - baseline_decay) * jnp.mean(fitness)
    return ControllerState(params, opt_state, baseline,
                           state.count + configs.shape[0], jnp.mean(fitness))

  return Strategy('reinforce', int(batch_size), init, ask, tell)
