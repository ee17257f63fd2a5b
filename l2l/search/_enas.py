"""ENAS: efficient neural architecture search by weight sharing (Pham et
al., 2018), with the REINFORCE controller of Zoph & Le (2017)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2l.search._controller import reinforce_controller
from l2l.search._oneshot import OneShot, SupernetApply, accuracy, cross_entropy
from l2l.search._space import Space
from l2l.search._strategies import Strategy, _check

Array = jax.Array


class EnasState(NamedTuple):
  """State of :func:`enas`.

  Attributes:
    params: The shared weights (the supernet's).
    opt_state: Their optimizer's state.
    controller: The controller strategy's state (a
      :class:`l2l.search.ControllerState` by default).
    count: int32 search steps taken.
  """
  params: Any
  opt_state: Any
  controller: Any
  count: Array


def _one_hot(space: Space, configs: Array) -> Array:
  return jax.nn.one_hot(configs, max(space.num_options), dtype=jnp.float32)


def enas_controller(space: Space, batch_size: int = 4, learning_rate: float = 1e-3,
                    temperature: float = 5.0, tanh_constant: float | None = 2.5,
                    entropy_weight: float = 1e-4, baseline_decay: float = 0.99,
                    hidden_size: int = 32) -> Strategy:
  """The REINFORCE controller with ENAS' settings for exploration (Pham et al. 2018).

  Trained on rewards of shared weights, the plain controller (Zoph & Le)
  settles on one child within a few hundred steps and stops exploring.
  ENAS keeps it exploring by (paper, 3; their code's flags):

  * sampling from ``tanh_constant * tanh(logits / temperature)``
    (temperature 5, tanh constant 2.5), which bounds every option's
    log-odds by ``2 * tanh_constant``;
  * an entropy bonus on the summed per-choice entropy (their code's
    ``controller_entropy_weight`` 1e-4; here the bonus's exact gradient,
    ``-entropy_weight * mean(H)`` in the loss, where their code adds the
    sampled entropy to the reward);
  * a controller step size below the shared weights' (theirs 3.5e-3 Adam
    against 0.05 SGD; here Adam, default 1e-3 against the weights' 3e-3);
  * a moving-average baseline of decay 0.99 (their ``controller_bl_dec``).

  Args:
    space: The cell space.
    batch_size: Children per controller step.
    learning_rate: The controller's Adam step size.
    temperature: Positive divisor of the logits.
    tanh_constant: Bound of the logits (``None``: unbounded).
    entropy_weight: Weight of the entropy bonus, non-negative.
    baseline_decay: Decay of the reward's moving average, in ``[0, 1)``.
    hidden_size: LSTM width.

  Returns:
    A :func:`l2l.search.reinforce_controller` strategy.

  Raises:
    TypeError: ``space`` is not a Space.
    ValueError: As :func:`l2l.search.reinforce_controller`.

  References:
    Pham, Guan, Zoph, Le & Dean, "Efficient Neural Architecture Search via
    Parameter Sharing", ICML 2018 (code: github.com/melodyguan/enas).
  """
  return reinforce_controller(space, batch_size, hidden_size, learning_rate, baseline_decay,
                              entropy_weight, temperature, tanh_constant)


def enas(apply_fn: SupernetApply, space: Space, num_children: int = 1,
         learning_rate: float = 3e-3, controller: Strategy | None = None) -> OneShot:
  """Efficient neural architecture search with shared weights (Pham et al., 2018).

  The supernet holds the weights of every operation on every edge; a
  child is the supernet with one-hot ``op_weights``, so one compiled step
  serves every child (static shapes). Each step:

  1. the controller samples ``num_children`` children; the shared weights
     take one Adam step on the mean training loss of those children on a
     training batch (each child trains only its own operations' weights);
  2. the controller samples ``controller.batch_size`` children, each
     scored by its accuracy on a validation batch with the updated shared
     weights, and takes one REINFORCE step on those rewards (moving-average
     baseline, entropy bonus).

  The paper alternates whole phases (an epoch of weight steps, then 2,000
  controller steps); alternating single steps is the same two updates
  interleaved more finely. Derive the result with :func:`enas_derive`.

  Args:
    apply_fn: The supernet, ``apply_fn(params, x, op_weights) -> logits``.
    space: The cell space (every choice an edge with the same options).
    num_children: Children whose losses train the weights each step.
    learning_rate: Adam step size of the shared weights.
    controller: An ask/tell strategy whose state is a pytree (default
      :func:`enas_controller`: ENAS' exploration settings, 4 children per
      step).

  Returns:
    The :class:`OneShot`; state :class:`EnasState`; metrics per step
    ``train_loss``, ``reward`` (mean validation accuracy of the
    controller's children, float32) and ``configs`` int32
    ``(controller.batch_size, num_edges)``, the children it was told.

  Raises:
    TypeError: ``space`` is not a Space.
    ValueError: ``num_children`` is not positive.

  References:
    Pham, Guan, Zoph, Le & Dean, "Efficient Neural Architecture Search via
    Parameter Sharing", ICML 2018.
  """
  _check(space, 1)
  if int(num_children) < 1:
    raise ValueError(f'num_children must be >= 1, got {num_children}.')
  controller = controller or enas_controller(space)
  optimizer = optax.adam(learning_rate)

  def init(key, params):
    return EnasState(params, optimizer.init(params), controller.init(key),
                     jnp.zeros((), jnp.int32))

  def train_loss(params, op_weights, batch):
    losses = jax.vmap(lambda w: cross_entropy(apply_fn, params, w, batch))(op_weights)
    return losses.mean()

  def step(state, key, train, val):
    key_train, key_reward = jax.random.split(key)
    configs = _ask(controller, key_train, state.controller, int(num_children))
    t_loss, grads = jax.value_and_grad(train_loss)(state.params, _one_hot(space, configs), train)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    configs, c_state = controller.ask(key_reward, state.controller)
    rewards = jax.vmap(lambda w: accuracy(apply_fn, params, w, val))(_one_hot(space, configs))
    c_state = controller.tell(c_state, configs, rewards)
    metrics = {'train_loss': t_loss, 'reward': rewards.mean(), 'configs': configs}
    return EnasState(params, opt_state, c_state, state.count + 1), metrics

  return OneShot('enas', init, step)


def _ask(controller, key, state, num):
  """``num`` children from the controller: as many asks as needed, concatenated."""
  rounds = -(-num // controller.batch_size)
  configs = jnp.concatenate([controller.ask(k, state)[0]
                             for k in jax.random.split(key, rounds)])
  return configs[:num]


def enas_derive(apply_fn: SupernetApply, space: Space, state: EnasState,
                controller: Strategy, key: Array, val: tuple[Array, Array],
                num_samples: int = 64, top_k: int = 1) -> tuple[Array, Array]:
  """Samples children from the trained controller and ranks them with the
  shared weights, as ENAS derives its architecture (Pham et al. 2018, 2.2).

  Args:
    apply_fn: The supernet.
    space: The cell space.
    state: The search's final :class:`EnasState`.
    controller: The controller passed to :func:`enas`.
    key: Draws the samples.
    val: ``(x, y)``, the whole validation set (one forward pass per child).
    num_samples: Children sampled (duplicates allowed, as sampled).
    top_k: Children returned, best shared-weight accuracy first; ENAS
      retrains the first from scratch.

  Returns:
    ``(configs, accuracies)``: int32 ``(top_k, num_edges)`` and float32
    ``(top_k,)`` shared-weight validation accuracies.

  Raises:
    ValueError: ``top_k`` is not in ``[1, num_samples]``.
  """
  if not 1 <= int(top_k) <= int(num_samples):
    raise ValueError(f'top_k must lie in [1, num_samples={num_samples}], got {top_k}.')
  configs = _ask(controller, key, state.controller, int(num_samples))
  scores = jax.vmap(lambda w: accuracy(apply_fn, state.params, w, val))(_one_hot(space, configs))
  # Distinct children only: the same child sampled twice would take two places.
  flat = jnp.sum(configs * (jnp.asarray(max(space.num_options)) **
                            jnp.arange(configs.shape[1]))[None, :], -1)
  first = jnp.argmax(flat[:, None] == flat[None, :], axis=0) == jnp.arange(flat.shape[0])
  order = jnp.argsort(-jnp.where(first, scores, -1.0), stable=True)[:int(top_k)]
  return configs[order], scores[order]
