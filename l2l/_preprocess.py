"""Gradient preprocessing of Andrychowicz et al. (2016), appendix A."""

import jax.numpy as jnp

from l2l._base import Array, ArrayLike


def preprocess_gradients(gradients: ArrayLike, p: float = 10.0) -> Array:
  r"""Maps each gradient coordinate to a (log-magnitude, sign) pair.

  .. math::
    g \mapsto \begin{cases}
      (\log |g| / p,\ \operatorname{sign} g) & |g| \ge e^{-p} \\
      (-1,\ e^{p} g) & \text{otherwise}
    \end{cases}

  Both features stay within a few units for every finite float32 gradient
  (``log(3.4e38) / 10 ~ 8.9``), which keeps the LSTM's inputs well scaled
  across many orders of magnitude. Non-finite gradients map to non-finite
  features.

  Args:
    gradients (jax.typing.ArrayLike): array of any shape; computed in
      float32 (float64 for float64 gradients).
    p: the magnitude threshold exponent, ``p > 0``.

  Returns:
    float32 (float64 for float64 gradients) array of shape
    ``gradients.shape + (2,)``.

  References:
    Andrychowicz et al., 2016, "Learning to learn by gradient descent by
    gradient descent", https://arxiv.org/abs/1606.04474.
  """
  g = jnp.asarray(gradients)
  g = g.astype(jnp.promote_types(g.dtype, jnp.float32))
  magnitude = jnp.abs(g)
  large = magnitude >= jnp.exp(-p)
  # The `where` keeps log(0) out of the graph, so its gradient stays finite.
  safe_magnitude = jnp.where(large, magnitude, 1.0)
  log_feature = jnp.where(large, jnp.log(safe_magnitude) / p, -1.0)
  sign_feature = jnp.where(large, jnp.sign(g), jnp.exp(p) * g)
  return jnp.stack([log_feature, sign_feature], axis=-1)
