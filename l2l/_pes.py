"""Persistent evolution strategies over truncated unrolls (Vicol et al., 2021).

Antithetic ES on one truncation (:func:`l2l.es_meta_step`) sees only how
the meta-parameters change the losses of that truncation, not how they
shaped the inner state carried into it: over an episode split into
truncations it is biased. PES keeps, for each antithetic pair, its own pair
of perturbed inner trajectories and the sum of the perturbations they have
run under since the episode began; weighing the loss difference by that sum
makes the estimate unbiased for the Gaussian-smoothed loss of the whole
episode.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from l2l._base import Array
from l2l._meta import _all_finite, _antithetic_noise, _loss_weights
from l2l._meta import _meta_update, _metrics, _rank_diverged, _weighted
from l2l._meta import InnerState, init_inner_states
from l2l._meta import MetaTrainState, OptimizerFn, unroll


def _twice(tree):
  """Stacks ``tree`` (batched over pairs) on itself: ``[+ pairs, - pairs]``."""
  return jax.tree.map(lambda x: jnp.concatenate([x, x]), tree)


def pes_start(state: MetaTrainState, inner: InnerState) -> MetaTrainState:
  """Begins a PES episode: both particles of each pair start from ``inner``.

  Args:
    state: a :class:`MetaTrainState` (its ``inner`` and ``noise_sum`` are
      replaced).
    inner: ``num_pairs`` inner states from :func:`l2l.init_inner_states`;
      the ``+`` and ``-`` particle of pair ``p`` both start from entry ``p``
      (common random numbers: the same problem and minibatches).

  Returns:
    The state for :func:`pes_meta_step`: ``inner`` batched over
    ``2 * num_pairs`` particles and a zero ``noise_sum`` with a leading
    ``[num_pairs]`` axis.
  """
  num_pairs = jax.tree.leaves(inner.step)[0].shape[0]
  noise_sum = jax.tree.map(
      lambda x: jnp.zeros((num_pairs,) + jnp.shape(x), jnp.float32),
      state.meta_params)
  return state._replace(inner=_twice(inner), noise_sum=noise_sum)


def _particle_losses(state, task, signed_noise, weights, *, optimizer_fn,
                     unroll_length, log_losses):
  """Runs every particle at its perturbed meta-params; returns its
  weighted (log) loss ``[2P]``, its losses ``[2P, K]`` and the new inner."""
  particles = jax.tree.map(lambda p, e: p[None] + e, state.meta_params,
                           signed_noise)
  run = lambda meta_params, inner: unroll(
      meta_params, task, inner, optimizer_fn=optimizer_fn,
      unroll_length=unroll_length)
  losses, inner = jax.vmap(run)(particles, state.inner)
  return _weighted(losses, weights, log_losses), losses, inner


def _restart_diverged_pairs(inner, noise_sum, final_losses, task, optimizer,
                            key):
  """Restarts both particles of a pair if either diverged, and zeroes that
  pair's accumulated perturbations."""
  num_pairs = final_losses.shape[0] // 2
  healthy = jax.vmap(_all_finite)((inner.params, inner.opt_state))
  healthy &= jnp.isfinite(final_losses)
  pair_ok = healthy[:num_pairs] & healthy[num_pairs:]
  fresh = _twice(init_inner_states(task, optimizer, key, num_pairs))

  def select(ok, new, old):
    mask = jnp.reshape(ok, ok.shape + (1,) * (jnp.ndim(old) - 1))
    return jnp.where(mask, old, new)

  particle_ok = jnp.concatenate([pair_ok, pair_ok])
  inner = jax.tree.map(lambda n, o: select(particle_ok, n, o), fresh, inner)
  noise_sum = jax.tree.map(
      lambda s: select(pair_ok, jnp.zeros_like(s), s), noise_sum)
  return inner, noise_sum


def pes_meta_step(state: MetaTrainState, task, key: Array, *,
                  optimizer_fn: OptimizerFn,
                  meta_optimizer: optax.GradientTransformation,
                  unroll_length: int, sigma: float = 0.01,
                  loss_weights: Array | None = None, log_losses: bool = False,
                  trainable: Any = None,
                  ) -> tuple[MetaTrainState, dict[str, Array]]:
  r"""One meta-step with a persistent evolution-strategies gradient.

  Pair :math:`p` draws a fresh :math:`\epsilon_p \sim \mathcal{N}(0,
  \sigma^2 I)` each truncation; its particles run on at :math:`\phi \pm
  \epsilon_p` from their own inner states, and with :math:`\xi_p` the sum
  of the :math:`\epsilon_p` drawn since the episode began (this one
  included),

  .. math::
    \hat\nabla L(\phi) = \frac{1}{2 \sigma^2 P} \sum_{p=1}^{P}
      \big(L_p^+ - L_p^-\big)\, \xi_p

  where :math:`L_p^\pm` is the particle's weighted sum of (log) losses over
  this truncation. Summed over an episode's truncations, its expectation
  is the gradient of the Gaussian-smoothed loss of the whole episode, for
  fixed :math:`\phi` (unbiased; ES on each truncation is not). A
  perturbation whose unroll diverges scores as worse than every finite
  one; a pair with a diverged particle restarts from fresh params and an
  empty :math:`\xi_p`.

  Args:
    state: a :class:`MetaTrainState` made by :func:`pes_start` (its
      ``inner`` batched over ``2 * num_pairs`` particles).
    task: the ``tasks.Task`` of every problem.
    key: PRNG key for the perturbations and for restarting diverged pairs.
    optimizer_fn: builds the learned optimizer from meta-parameters.
    meta_optimizer: optax transform applied to the gradient estimate.
    unroll_length: inner steps ``K`` per truncation.
    sigma: perturbation scale :math:`\sigma`, > 0.
    loss_weights: ``[K]`` weights; ones when ``None``.
    log_losses: sum :math:`\log f` instead of :math:`f`.
    trainable: as for :func:`l2l.es_meta_step`: which leaves are perturbed
      (step counts never are).

  Returns:
    ``(state, metrics)`` as for :func:`l2l.meta_step`; ``meta_loss`` is the
    mean over particles.

  Raises:
    ValueError: ``sigma`` is not positive, or ``state`` was not made by
      :func:`pes_start`.

  References:
    Vicol, Metz and Sohl-Dickstein, 2021, "Unbiased gradient estimation in
    unrolled computation graphs with persistent evolution strategies",
    https://arxiv.org/abs/2112.13835.
  """
  if not sigma > 0:
    raise ValueError(f'pes_meta_step needs sigma > 0, got {sigma}')
  if not jax.tree.leaves(state.noise_sum):
    raise ValueError('pes_meta_step needs a state made by l2l.pes_start')
  num_pairs = jax.tree.leaves(state.noise_sum)[0].shape[0]
  weights = _loss_weights(unroll_length, loss_weights)
  noise_key, restart_key = jax.random.split(key)
  noise = _antithetic_noise(state.meta_params, noise_key, num_pairs, sigma,
                            trainable)
  noise_sum = jax.tree.map(jnp.add, state.noise_sum, noise)
  signed = jax.tree.map(lambda e: jnp.concatenate([e, -e]), noise)
  scores, losses, inner = _particle_losses(
      state, task, signed, weights, optimizer_fn=optimizer_fn,
      unroll_length=unroll_length, log_losses=log_losses)
  difference = _rank_diverged(scores[:num_pairs], scores[num_pairs:])
  grads = jax.tree.map(lambda s: jnp.tensordot(difference, s, axes=1) / (
      2 * sigma**2 * num_pairs), noise_sum)
  # the mean of the finite scores: a diverged particle restarts, and only
  # a step with none finite is skipped
  loss = jnp.nanmean(jnp.where(jnp.isfinite(scores), scores, jnp.nan))
  meta_params, meta_opt_state, finite, grads = _meta_update(
      state, grads, loss, meta_optimizer)
  inner, noise_sum = _restart_diverged_pairs(
      inner, noise_sum, losses[:, -1], task, optimizer_fn(meta_params),
      restart_key)
  num_skipped = state.num_skipped + (~finite).astype(jnp.int32)
  return MetaTrainState(meta_params, meta_opt_state, inner, num_skipped,
                        noise_sum), _metrics(loss, losses, grads, finite,
                                             num_skipped)
