"""Per-coordinate update rules of the learned optimizers, on flat arrays.

Each rule maps the gradient ``g`` of ``N`` coordinates, the LSTM carry and
the rule's moment accumulators to ``(update, carry, moments)``. The optax
shell in ``_transform.py`` gathers every leaf into these flat arrays and
scatters the results back.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from l2l import _preprocess
from l2l._base import Array

MOMENTUM_DECAYS = (0.5, 0.9, 0.99)
SECOND_MOMENT_DECAY = 0.999
EPS = 1e-8
MAX_LOG_STEP = 3.0
# Gradients are clipped here so that their squares stay finite in float32.
GRAD_LIMIT = 1e18
FEATURE_LIMIT = 10.0


class Rule(NamedTuple):
  apply: callable
  num_moments: int


def paper(network, meta_params, grads: Array, carry, moments, count,
          preprocess_p: float):
  r"""Andrychowicz et al. (2016): :math:`u = m_\phi(\mathrm{pre}(g))`."""
  del count
  inputs = _preprocess.preprocess_gradients(grads, preprocess_p)
  out, carry = network.apply({'params': meta_params['params']}, inputs, carry)
  return out[:, 0], carry, moments


def adaptive(network, meta_params, grads: Array, carry, moments, count,
             preprocess_p: float):
  r"""Adam as a nominal term, corrected coordinatewise by the LSTM.

  .. math::
    v &\leftarrow \beta_2 v + (1 - \beta_2) g^2, \qquad
    m_k \leftarrow \beta_k m_k + (1 - \beta_k) g, \quad
    \beta_k \in \{0.5, 0.9, 0.99\} \\
    x &= \mathrm{clip}\big([g, \hat m_{0.5}, \hat m_{0.9}, \hat m_{0.99}]
         / (\sqrt{\hat v} + \epsilon),\ \pm 10\big), \qquad
    (a, b) = m_\phi(x) \\
    u &= -\exp(\log\eta + 3 \tanh a)\,
         \big(\hat m_{0.9} / (\sqrt{\hat v} + \epsilon) + b\big)

  with bias-corrected :math:`\hat m, \hat v`. The inputs are invariant to
  the scale of the loss (RNNprop, Lv et al. 2017); momenta at several
  timescales follow Wichrowska et al. (2017); the nominal Adam term keeps
  the rule stable (STAR, Harrison et al. 2022). With a zero read-out the
  rule is exactly Adam with learning rate :math:`\eta`.
  """
  del preprocess_p
  g = jnp.clip(grads, -GRAD_LIMIT, GRAD_LIMIT)
  v, *ms = moments
  v = SECOND_MOMENT_DECAY * v + (1 - SECOND_MOMENT_DECAY) * g * g
  ms = [b * m + (1 - b) * g for b, m in zip(MOMENTUM_DECAYS, ms)]
  t = count.astype(jnp.float32)
  rsqrt = 1.0 / (jnp.sqrt(v / (1 - SECOND_MOMENT_DECAY**t)) + EPS)
  normalised = [g * rsqrt] + [
      m / (1 - b**t) * rsqrt for b, m in zip(MOMENTUM_DECAYS, ms)]
  inputs = jnp.clip(jnp.stack(normalised, -1), -FEATURE_LIMIT, FEATURE_LIMIT)
  out, carry = network.apply({'params': meta_params['params']}, inputs, carry)
  log_step = meta_params['nominal']['log_lr'] + MAX_LOG_STEP * jnp.tanh(
      out[:, 0])
  update = -jnp.exp(log_step) * (normalised[2] + out[:, 1])
  return update, carry, (v, *ms)


RULES = {'paper': Rule(paper, 0), 'adaptive': Rule(adaptive, 4)}
