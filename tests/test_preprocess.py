"""Gradient preprocessing values (Andrychowicz et al. 2016, appendix A)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2l

E10 = float(np.exp(-10.0))


@pytest.mark.parametrize('g, expected', [
    (1.0, (0.0, 1.0)),
    (-1.0, (0.0, -1.0)),
    (np.e**5, (0.5, 1.0)),
    (-np.e**-3, (-0.3, -1.0)),
    (0.0, (-1.0, 0.0)),
    (E10 * 0.5, (-1.0, 0.5)),
    (-E10 * 0.25, (-1.0, -0.25)),
    (3e38, (np.log(3e38) / 10, 1.0)),
])
def test_values(g, expected):
  out = l2l.preprocess_gradients(jnp.float32(g))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('p', [1.0, 5.0, 10.0])
def test_threshold_depends_on_p(p):
  below = np.float32(np.exp(-p) * 0.5)
  out = l2l.preprocess_gradients(below, p)
  np.testing.assert_allclose(out, (-1.0, np.exp(p) * below), rtol=1e-5)


@pytest.mark.parametrize('shape', [(), (0,), (3,), (2, 5, 1)])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16, jnp.float16])
def test_shape_and_dtype(shape, dtype):
  g = jnp.ones(shape, dtype)
  out = l2l.preprocess_gradients(g)
  assert out.shape == shape + (2,)
  assert out.dtype == jnp.float32


def test_gradient_through_preprocessing_is_finite_at_zero():
  grad = jax.grad(lambda g: l2l.preprocess_gradients(g).sum())(jnp.zeros(3))
  assert np.all(np.isfinite(grad))
