"""The compact design: a per-parameter MLP and a per-tensor LSTM around the
free design's nominal rule.

The per-parameter part has no recurrent state: each coordinate keeps only
the nominal rule's accumulators (second moment, three momenta, the average
of past directions and the schedule-free gap: 24 bytes in float32), and
each matrix an Adafactor-style factored second moment (one row and one
column vector). The LSTM runs once per tensor, on a handful of per-tensor
statistics, and acts as a learned scheduler.
"""

import jax
import jax.numpy as jnp

from l2l import _network
from l2l import _rules
from l2l._base import Array

#: Units of the per-parameter MLP's one hidden layer.
MLP_HIDDEN = 8
#: Per-coordinate features of the MLP: the normalised gradient and three
#: momenta, the gradient normalised by the factored second moment, the
#: second moment relative to its tensor mean, and the parameter's value
#: relative to its tensor's scale.
NUM_FEATURES = 7
#: Timescales (in steps) of the horizon-free step features tanh(t / tau).
STEP_TIMESCALES = (10.0, 100.0, 1000.0)
#: Per-tensor statistics read by the LSTM: the hypergradient cosine and
#: log step offset, the log of the gradient's mean square over its running
#: average, the log scale of the parameter, and the step features.
NUM_STATISTICS = 4 + len(STEP_TIMESCALES)
#: Per-tensor LSTM read-out: log step offset, log scales of the MLP's two
#: outputs, log offset of the corrections' fade-out timescale, and one bias
#: per MLP hidden unit (its mixing).
NUM_MODULATIONS = 4 + MLP_HIDDEN
#: Initial timescale (in steps) over which the MLP's corrections fade out:
#: the meta-parameter ``mlp['output']['log_fade']`` starts at its log.
FADE_STEPS = 100.0


def init_mlp(key: Array) -> dict:
  """Fresh weights of the per-parameter MLP: a LeCun-normal hidden layer, a
  zero read-out (so that a fresh MLP outputs exactly 0) and the log of its
  corrections' fade-out timescale, ``log(FADE_STEPS)``."""
  kernel = jax.nn.initializers.lecun_normal()(
      key, (NUM_FEATURES, MLP_HIDDEN), jnp.float32)
  return {'hidden': {'kernel': kernel,
                     'bias': jnp.zeros((MLP_HIDDEN,), jnp.float32)},
          'output': {'kernel': jnp.zeros((MLP_HIDDEN, 2), jnp.float32),
                     'bias': jnp.zeros((2,), jnp.float32),
                     'log_fade': jnp.log(jnp.float32(FADE_STEPS))}}


def check_mlp(mlp) -> None:
  """Raises ValueError if ``mlp`` is not shaped as :func:`init_mlp`'s."""
  expected = jax.eval_shape(init_mlp, jax.random.key(0))
  if (jax.tree.structure(mlp) != jax.tree.structure(expected)
      or any(jnp.shape(a) != b.shape for a, b in
             zip(jax.tree.leaves(mlp), jax.tree.leaves(expected)))):
    raise ValueError('the compact design\'s mlp weights are not shaped '
                     f'{jax.tree.map(lambda x: x.shape, expected)}')


def init_tensor_state(param: Array, dtype) -> dict:
  """Per-tensor state: the free rule's ``[4]`` float32 scale entry, and for
  a tensor of rank 2 or more the factored second moment's ``rows``
  (``shape[:-1]``) and ``cols`` (``shape[:-2] + shape[-1:]``)."""
  shape = jnp.shape(param)
  state = {'tensor': jnp.zeros((4,), jnp.float32)}
  if len(shape) >= 2:
    state['rows'] = jnp.zeros(shape[:-1], dtype)
    state['cols'] = jnp.zeros(shape[:-2] + shape[-1:], dtype)
  return state


def _factored_rsqrt(g: Array, tensor_state: dict, decay, correction
                    ) -> tuple[Array, dict]:
  r""":math:`1 / (\sqrt{\hat v_f} + \epsilon)` with Adafactor's factored
  second moment :math:`\hat v_f = \hat r \hat c^\top / \mathrm{mean}(\hat
  r)` (Shazeer and Stern, 2018) for rank 2 or more; ``None`` otherwise."""
  if 'rows' not in tensor_state:
    return None, tensor_state
  # A non-finite coordinate counts as 0 here, so that it does not spread
  # to its row and column (its own update is still non-finite).
  square = jnp.where(jnp.isfinite(g), g * g, 0.0)
  rows = (decay * tensor_state['rows'].astype(g.dtype)
          + (1 - decay) * jnp.mean(square, -1))
  cols = (decay * tensor_state['cols'].astype(g.dtype)
          + (1 - decay) * jnp.mean(square, -2))
  row_mean = jnp.mean(rows, -1, keepdims=True)
  # cols / mean(rows) first, so that the product stays finite.
  factored = rows[..., :, None] * (
      _rules._over(cols, row_mean))[..., None, :] / correction
  rsqrt = 1.0 / (_rules._safe_sqrt(factored) + _rules.EPS)
  return rsqrt, dict(tensor_state, rows=rows, cols=cols)


def _rms(x: Array) -> Array:
  """Root mean square of a tensor, finite for any finite input, with a
  finite derivative (0) where the tensor is all zeros (a zero-initialised
  bias), so that meta-gradients and hypergradients through it stay finite."""
  unit, top = _rules._unit(x)
  return top * _rules._safe_sqrt(jnp.mean(jnp.square(unit)))


def coordinate_features(nominal: _rules.FreeNominal, param: Array,
                        factored_rsqrt: Array | None) -> list[Array]:
  """The MLP's ``NUM_FEATURES`` inputs, each shaped like the tensor:
  ``g, m̂_0.5, m̂_0.9, m̂_0.99`` over :math:`\\sqrt{\\hat v} + \\epsilon`,
  ``g`` over the factored :math:`\\sqrt{\\hat v_f} + \\epsilon` (the
  plain one for vectors), :math:`\\sqrt{\\hat v / \\mathrm{mean}\\,\\hat
  v}` and ``param / rms(param)``."""
  g = nominal.g
  factored = (nominal.normalised[0] if factored_rsqrt is None
              else g * factored_rsqrt)
  # 1/rsqrt is √v̂ + ε, so this is the second moment relative to its mean.
  root = 1.0 / nominal.rsqrt
  relative = root / jnp.maximum(_rms(root), _rules.EPS)
  value = _rules._over(param, _rms(param))
  return list(nominal.normalised) + [factored, relative, value]


def tensor_statistics(nominal: _rules.FreeNominal, param: Array, scale: Array,
                      count: Array) -> tuple[Array, ...]:
  """The per-tensor LSTM's ``NUM_STATISTICS`` scalar inputs (see the
  module's constants); none depends on a horizon."""
  unit, top = _rules._unit(nominal.g)
  square = _rules._mean_square(unit, top)
  t = count.astype(jnp.float32)
  average = scale[3] / (1 - _rules.SPIKE_DECAY**jnp.maximum(t - 1, 1.0))
  ratio = jnp.where((count > 1) & (average > 0),
                    jnp.log(jnp.maximum(square, 1e-30))
                    - jnp.log(jnp.maximum(average, 1e-30)), 0.0)
  log_scale = jnp.log10(jnp.maximum(_rms(param), 1e-30))
  steps = tuple(jnp.tanh(t / tau) for tau in STEP_TIMESCALES)
  return (nominal.cosine, nominal.offset, ratio, log_scale) + steps


def _bounded(x: Array) -> Array:
  """``3 tanh(x / 3)``: the identity near 0, bounded by ``±MAX_LOG_STEP``."""
  return _rules.MAX_LOG_STEP * jnp.tanh(x / _rules.MAX_LOG_STEP)


def fade(log_fade: Array, offset: Array, count: Array) -> Array:
  r"""The corrections' per-tensor fade-out :math:`e^{-t / \tau_k}`, with
  :math:`\log\tau_k = \log\tau + 3\tanh(o_f / 3)`.

  Args: ``log_fade`` the scalar :math:`\log\tau` (:math:`\tau` in steps),
  ``offset`` the LSTM's scalar output :math:`o_f`, ``count`` the integer
  step :math:`t`. Returns a float32 scalar in :math:`[0, 1]`, 1 at
  :math:`t = 0`.

  The learned corrections help early and hurt late on noise-free problems
  (they hold a quadratic at a precision floor the nominal rule goes past;
  ``docs/research_log.md``), so they fade out on a timescale that
  meta-training sets, globally (``log_fade``) and per tensor (``offset``).
  """
  tau = jnp.exp(log_fade + _bounded(offset))
  return jnp.exp(-count.astype(jnp.float32) / tau)


def mlp_apply(mlp: dict, features: list[Array], mixing: Array) -> Array:
  """The per-parameter MLP, ``[..., NUM_FEATURES]`` -> ``[..., 2]``, with the
  per-tensor ``[MLP_HIDDEN]`` ``mixing`` added to its hidden layer; products
  are written as fused multiply-adds (``_network._project``)."""
  inputs = _rules._inputs(features)
  ndim = inputs.ndim
  hidden = jax.nn.relu(
      _network._project(inputs, mlp['hidden']['kernel'].astype(inputs.dtype))
      + _network._lift(mlp['hidden']['bias'] + mixing, ndim).astype(
          inputs.dtype))
  out = _network._project(hidden, mlp['output']['kernel'].astype(
      inputs.dtype))
  return out + _network._lift(mlp['output']['bias'], ndim).astype(inputs.dtype)


def compact(network, meta_params, grads: Array, carry, moments, count,
            scale: dict, preprocess_p: float, param: Array):
  r"""Schedule-free hypergradient Adam (the ``free`` design's nominal
  rule), corrected by a per-parameter MLP modulated by a per-tensor LSTM.

  For tensor :math:`k` with nominal quantities of :func:`free`
  (:math:`\hat v`, :math:`\hat m_\beta`, step offset :math:`s_k`,
  cosine :math:`c_k`), the LSTM :math:`\ell_\psi` reads per-tensor
  statistics and the MLP :math:`f_\phi` (one hidden layer of 8 ReLU units)
  reads per-coordinate features:

  .. math::
    z_k &= [c_k,\ s_k,\ \log(q_k / \bar q_k),\ \log_{10}\mathrm{rms}(\theta_k),
          \tanh(t/10), \tanh(t/100), \tanh(t/1000)], \qquad
    (o_s, o_a, o_b, o_f, \mu) = \ell_\psi(z_k) \\
    x_i &= \mathrm{clip}\Big(\Big[\frac{g, \hat m_{0.5}, \hat m_{0.9},
          \hat m_{0.99}}{\sqrt{\hat v} + \epsilon},
          \frac{g}{\sqrt{\hat v_f} + \epsilon},
          \sqrt{\hat v / \overline{\hat v}},
          \frac{\theta}{\mathrm{rms}(\theta_k)}\Big]_i,\ \pm 10\Big), \qquad
    (a_i, b_i) = f_\phi(x_i;\ \mu) \\
    d_i &= g_i / (\sqrt{\hat v_i} + \epsilon) + \phi_k e^{o_b} b_i, \qquad
    \delta_i = \exp\big(\log\eta + s_k + 3\tanh(o_s/3)
              + 3 \tanh(\phi_k e^{o_a} a_i)\big)\, d_i

  and :math:`\delta` enters the schedule-free step of :func:`free` (its
  largest-step weights use :math:`\log\eta + s_k + 3\tanh(o_s/3)`). The
  corrections fade out as :math:`\phi_k = e^{-t/\tau_k}`, :math:`\log
  \tau_k = \log\tau + 3\tanh(o_f/3)` (:func:`fade`; :math:`\tau` a
  meta-parameter, 100 steps fresh, :math:`o_f` the LSTM's fourth output).
  :math:`\hat v_f = \hat r \hat c^\top / \mathrm{mean}(\hat r)` is
  Adafactor's factored second moment over the last two axes (for vectors,
  :math:`\hat v`); :math:`\mu \in \mathbb{R}^8` is added to the MLP's
  hidden pre-activations, so the LSTM mixes the MLP's units per tensor.
  Both read-outs start at zero, so a fresh compact optimizer takes exactly
  the free design's nominal steps, and the learned parts are corrections
  around them (STAR, Harrison et al. 2022). Shapes: ``grads`` and ``param``
  of any shape ``S``; ``carry`` per-tensor ``[hidden_size]`` arrays;
  ``moments`` six arrays of shape ``S``; ``scale`` the dict of
  :func:`init_tensor_state`.

  References: Metz et al. 2022 (VeLO, per-tensor LSTM emitting per-parameter
  networks), https://arxiv.org/abs/2211.09760; Moudgil et al. 2025 (Celo,
  per-parameter MLP with a learned per-tensor scheduler),
  https://arxiv.org/abs/2501.12670; Harrison et al. 2022 (STAR),
  https://arxiv.org/abs/2209.11208; Shazeer and Stern 2018 (Adafactor),
  https://arxiv.org/abs/1804.04235.
  """
  del preprocess_p
  nominal = _rules.free_nominal(meta_params, grads, moments, count,
                                scale['tensor'])
  decay, correction = _rules._second_moment_schedule(meta_params, count,
                                                     grads.dtype)
  factored, scale = _factored_rsqrt(nominal.g, scale, decay, correction)
  param = param.astype(grads.dtype)
  statistics = jnp.stack(tensor_statistics(nominal, param, scale['tensor'],
                                           count)).astype(grads.dtype)
  modulation, carry = network.apply(
      {'params': meta_params['params']},
      jnp.clip(statistics, -_rules.FEATURE_LIMIT, _rules.FEATURE_LIMIT), carry)
  out = mlp_apply(meta_params['mlp'],
                  coordinate_features(nominal, param, factored),
                  modulation[4:])
  out = out * fade(meta_params['mlp']['output']['log_fade'], modulation[3],
                   count).astype(out.dtype)
  direction = nominal.normalised[0] + jnp.exp(modulation[2]) * out[..., 1]
  update, moments, tensor = _rules.free_update(
      meta_params, nominal, scale['tensor'], direction,
      _rules.MAX_LOG_STEP * jnp.tanh(jnp.exp(modulation[1]) * out[..., 0]),
      _bounded(modulation[0]))
  return update, carry, moments, dict(scale, tensor=tensor)


#: The compact design's rule for the optax shell (``l2l._transform``).
RULE = _rules.Rule(compact, num_moments=6, init_scale=init_tensor_state,
                   per_tensor_carry=True, needs_params=True)
