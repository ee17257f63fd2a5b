"""Update rules of the learned optimizers, one parameter tensor at a time.

Each rule maps the gradient ``g`` of one tensor (any shape), its LSTM carry
(one ``g.shape + (hidden_size,)`` array per layer), the rule's moment
accumulators (shaped like ``g``) and the tensor's ``scale`` entry (shape
``Rule.scale_shape``) to ``(update, carry, moments, scale)``. The optax shell
in ``_transform.py`` maps a rule over the leaves of the params tree, so every
update keeps its parameter's shape and sharding, and nothing is gathered.
"""

from typing import NamedTuple

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


# Bounds of the hyper design's per-tensor log step offsets: e^-4 to e^2.5
# times the nominal rate.
MIN_LOG_SCALE, MAX_LOG_SCALE = -4.0, 2.5


class Rule(NamedTuple):
  """``apply(network, meta_params, g, carry, moments, count, scale, p)``
  returns ``(update, carry, moments, scale)`` for one tensor; ``num_moments``
  param-shaped accumulators are kept in the state, and ``scale`` is the
  tensor's array of shape ``scale_shape`` (or the tree
  ``init_scale(param, dtype)`` makes, if given). With ``per_tensor_carry``
  the LSTM carry is one ``[hidden_size]`` array per tensor, not per
  coordinate; with ``needs_params``, ``apply`` takes the tensor's parameter
  value as a last argument."""
  apply: callable
  num_moments: int
  scale_shape: tuple[int, ...] = ()
  init_scale: callable = None
  per_tensor_carry: bool = False
  needs_params: bool = False


def paper(network, meta_params, grads: Array, carry, moments, count, scale,
          preprocess_p: float):
  r"""Andrychowicz et al. (2016): :math:`u = m_\phi(\mathrm{pre}(g))`."""
  del count
  inputs = _preprocess.preprocess_gradients(grads, preprocess_p)
  out, carry = network.apply({'params': meta_params['params']}, inputs, carry)
  return out[..., 0], carry, moments, scale


def _accumulate(g: Array, moments, count, decay: float = SECOND_MOMENT_DECAY,
                correction=None):
  """Adam's second moment (decay ``decay``, bias correction ``correction``,
  by default ``1 - decay^t``) and momenta; returns ``(v, ms, t,
  1/(√v̂+ε))``."""
  v, *ms = moments
  v = decay * v + (1 - decay) * g * g
  ms = [b * m + (1 - b) * g for b, m in zip(MOMENTUM_DECAYS, ms)]
  t = count.astype(g.dtype)  # float64 for float64 params
  if correction is None:
    correction = 1 - decay**t
  rsqrt = 1.0 / (_safe_sqrt(v / correction) + EPS)
  return v, ms, t, rsqrt


def _safe_sqrt(x: Array) -> Array:
  r""":math:`\sqrt{x}` whose gradient is 0, not infinite, where ``x = 0``.

  A coordinate whose gradient is always 0 (an unused embedding row, a dead
  unit) has a zero second moment; the plain square root's infinite
  derivative there, times a zero cotangent, would make the meta-gradient
  NaN. Both branches of the ``where`` are finite, so its gradient is too.
  """
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _features(g: Array, ms, t, rsqrt) -> list[Array]:
  """Gradient and bias-corrected momenta, each divided by √v̂ + ε."""
  return [g * rsqrt] + [m / (1 - b**t) * rsqrt
                        for b, m in zip(MOMENTUM_DECAYS, ms)]


def adaptive(network, meta_params, grads: Array, carry, moments, count,
             scale, preprocess_p: float):
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
  v, ms, t, rsqrt = _accumulate(g, moments, count)
  normalised = _features(g, ms, t, rsqrt)
  out, carry = network.apply({'params': meta_params['params']},
                             _inputs(normalised), carry)
  log_step = meta_params['nominal']['log_lr'] + MAX_LOG_STEP * jnp.tanh(
      out[..., 0])
  update = -jnp.exp(log_step) * (normalised[2] + out[..., 1])
  return update, carry, (v, *ms), scale


def _inputs(coordinate: list[Array], tensor: tuple[Array, ...] = ()) -> Array:
  """The LSTM's ``[..., F]`` inputs: per-coordinate features, then per-tensor
  scalars broadcast over the coordinates, clipped to ``±FEATURE_LIMIT``.

  Scalars are broadcast by adding to zeros like a coordinate feature, which
  keeps that feature's sharding."""
  base = jnp.zeros_like(coordinate[0])
  features = list(coordinate) + [base + value for value in tensor]
  return jnp.clip(jnp.stack(features, -1), -FEATURE_LIMIT, FEATURE_LIMIT)


def _unit(x: Array) -> tuple[Array, Array]:
  """``x`` with non-finite coordinates set to 0, divided by its largest
  magnitude (so that sums of squares stay finite), and that magnitude."""
  x = jnp.where(jnp.isfinite(x), x, 0.0)
  top = jnp.max(jnp.abs(x), initial=0.0)
  return _over(x, top), top


def _over(x: Array, y: Array, floor: float = 1e-30) -> Array:
  """``x / max(y, floor)`` whose derivatives stay finite at ``y <= floor``
  (the plain quotient's derivative there has ``1 / floor**2``, which
  overflows float32, times a zero tangent: NaN). A tensor whose gradient
  is always 0 (a dead unit) would otherwise make derivatives through the
  update NaN."""
  above = y > floor
  return jnp.where(above, x / jnp.where(above, y, 1.0), x / floor)


def _cosine(a: Array, b: Array) -> Array:
  """Cosine between the unit tensors (``_unit``) ``a`` and ``b``; 0 where
  either is 0.

  Non-finite coordinates count as zero, so that one bad coordinate does not
  poison its tensor's step offset (its own update is still non-finite).
  Each tensor is divided by its largest magnitude, so that the sums of
  squares stay finite for any finite input.
  """
  norms = jnp.sqrt(jnp.maximum(jnp.sum(a * a) * jnp.sum(b * b), 1e-30))
  return jnp.sum(a * b) / norms


# Decay of the free design's average of past directions (its hypergradient
# reference) and bound on its interpolation constant.
REFERENCE_DECAY = 0.9
MAX_INTERPOLATION = 0.99
# The free design's second moment decays at 1 - 0.01 e^r, r the nominal
# 'second_moment_rate' (0 for a fresh optimizer: 0.99, chosen on the dev
# cases, 10 seeds), clipped to [0, MAX_SECOND_MOMENT_DECAY].
BASE_SECOND_MOMENT_RATE = 0.01
MAX_SECOND_MOMENT_DECAY = 0.999
# For its first T steps (T the nominal 'second_moment_warmup', 40 for a fresh
# optimizer, 0 in files saved before l2l 0.6.0) the free design's second
# moment decays at this rate instead (chosen on the dev cases and 400 dev
# quadratics with T = 40).
WARMUP_SECOND_MOMENT_DECAY = 0.8
# Nominal meta-parameters that are whole numbers of steps: no meta-step moves
# them (they have no gradient, and ES noise would only make them drift).
STEP_COUNTS = ('second_moment_warmup',)
# Cosine above which the free design's average discounts its older iterates
# (chosen on the dev cases, with the growth rate's default 1).
AVERAGE_THRESHOLD = 0.5
# The free design cuts a tensor's log step offset when the mean square of its
# gradient exceeds SPIKE_RATIO times its running average (decay
# SPIKE_DECAY); chosen on the dev cases with the cut's default strength 1/2.
SPIKE_RATIO = 10.0
SPIKE_DECAY = 0.9


def interpolation(meta_params) -> Array:
  """The free design's :math:`\beta`, clipped to ``[0, MAX_INTERPOLATION]``."""
  return jnp.clip(meta_params['nominal']['interpolation'], 0.0,
                  MAX_INTERPOLATION)


def second_moment_decay(meta_params) -> Array:
  r"""The free design's :math:`\beta_2 = 1 - 0.01 e^r`, clipped to
  ``[0, MAX_SECOND_MOMENT_DECAY]``."""
  rate = BASE_SECOND_MOMENT_RATE * jnp.exp(
      meta_params['nominal']['second_moment_rate'])
  return jnp.clip(1.0 - rate, 0.0, MAX_SECOND_MOMENT_DECAY)


def second_moment_warmup(meta_params) -> Array:
  """The free design's warm-up T of the second moment, a whole number of
  steps (rounded down, clipped at 0; meta-gradients do not move it)."""
  return jnp.floor(jnp.maximum(
      meta_params['nominal']['second_moment_warmup'], 0.0))


def _second_moment_schedule(meta_params, count, dtype=jnp.float32
                            ) -> tuple[Array, Array]:
  r"""The free design's second-moment decay at step ``count`` and its bias
  correction :math:`1 - 0.8^{\min(t, T)} \beta_2^{\max(t - T, 0)}`: the
  decay is 0.8 for the first :math:`T` steps and :math:`\beta_2` after."""
  t = count.astype(dtype)
  warm = jnp.minimum(t, second_moment_warmup(meta_params))
  late = second_moment_decay(meta_params)
  decay = jnp.where(t <= warm, WARMUP_SECOND_MOMENT_DECAY, late)
  return decay, 1 - WARMUP_SECOND_MOMENT_DECAY**warm * late**(t - warm)


def average_growth(meta_params) -> Array:
  r"""The free design's :math:`\lambda`, clipped at 0."""
  return jnp.maximum(meta_params['nominal']['average_growth'], 0.0)


def spike_cut(meta_params) -> Array:
  r"""The free design's :math:`\rho`, clipped at 0."""
  return jnp.maximum(meta_params['nominal']['spike_cut'], 0.0)


def _mean_square(unit: Array, top: Array) -> Array:
  """Mean square of a tensor from its unit form and largest magnitude
  (``_unit``): non-finite coordinates count as zero, and the result stays
  finite for any input up to ``GRAD_LIMIT``."""
  return jnp.square(top) * jnp.mean(jnp.square(unit))


def _spike_cut(meta_params, unit, top, average, count):
  r"""The cut of the tensor's log step offset and its moved running average
  of the gradient's mean square: :math:`\rho \max(0, \log(q / (10
  \bar q)))`; 0 at step 1 and while :math:`\bar q = 0` (a tensor whose
  gradient was zero so far has taken no step to cut). ``unit, top`` are
  the gradient's ``_unit`` form."""
  q = _mean_square(unit, top)
  t = count.astype(jnp.float32)
  corrected = average / (1 - SPIKE_DECAY**jnp.maximum(t - 1, 1.0))
  # bounded, so that the log stays finite and rho = 0 gives exactly 0
  ratio = jnp.minimum(q / jnp.maximum(corrected, 1e-30), 1e30)
  cut = spike_cut(meta_params) * jnp.maximum(
      0.0, jnp.log(jnp.maximum(ratio, 1e-30) / SPIKE_RATIO))
  return (jnp.where((count > 1) & (corrected > 0), cut, 0.0),
          SPIKE_DECAY * average + (1 - SPIKE_DECAY) * q)


def _step_offset(meta_params, unit, reference, count, offset):
  """The hypergradient update of the tensor's log step offset.

  Returns the cosine between the gradient (its ``_unit`` form ``unit``) and
  ``reference``, and the moved offset (unmoved at step 1), clipped to the
  offset bounds.
  """
  cosine = _cosine(unit, _unit(reference)[0])
  nominal = meta_params['nominal']
  moved = offset + jnp.exp(nominal['log_kappa']) * (cosine - nominal['offset'])
  return cosine, jnp.where(
      count > 1, jnp.clip(moved, MIN_LOG_SCALE, MAX_LOG_SCALE), offset)


def hyper(network, meta_params, grads: Array, carry, moments, count, scale,
          preprocess_p: float):
  r"""Nesterov-Adam with hypergradient-adapted per-tensor steps, corrected by
  the LSTM.

  For each tensor :math:`k` of the parameter tree, from the second step on,

  .. math::
    c_k &= \cos(g_{t,k}, d_{t-1,k}), \qquad
    s_k \leftarrow \mathrm{clip}\big(s_k + \kappa (c_k - c_0),\ -4,\ 2.5\big)
    \\
    d_t &= \big(\beta_1 \hat m_{0.9}' + (1 - \beta_1) \hat g\big)
           / (\sqrt{\hat v} + \epsilon) \\
    x &= \mathrm{clip}\big([g, \hat m_{0.5}, \hat m_{0.9}, \hat m_{0.99}]
         / (\sqrt{\hat v} + \epsilon),\ c_k,\ s_k;\ \pm 10\big), \qquad
    (a, b) = m_\phi(x) \\
    u &= -\exp(\log\eta + s_k + 3 \tanh a)\,(d_t + b)

  :math:`d_t` is NAdam's direction (Dozat 2016; :math:`\hat m_{0.9}'` is
  bias-corrected one step ahead, :math:`\hat g = g / (1 - \beta_1^t)`).
  :math:`s_k` is a log step offset per tensor, moved by the cosine between
  the tensor's gradient and its previous direction, a normalised
  hypergradient of the loss with respect to the log step (Baydin et al.,
  2018): it grows while successive steps agree and shrinks when they
  overshoot. On minibatch problems the cosine at a well-tuned step is
  slightly negative, hence the default :math:`c_0 = -0.03`. :math:`\eta`,
  :math:`\kappa` and :math:`c_0` are meta-learned with the LSTM. With a
  zero read-out the rule is this per-tensor hypergradient NAdam.
  """
  del preprocess_p
  g = jnp.clip(grads, -GRAD_LIMIT, GRAD_LIMIT)
  *accumulators, previous = moments
  cosine, scale = _step_offset(meta_params, _unit(g)[0], previous, count,
                               scale)
  nominal = meta_params['nominal']
  v, ms, t, rsqrt = _accumulate(g, accumulators, count)
  normalised = _features(g, ms, t, rsqrt)
  b1 = MOMENTUM_DECAYS[1]
  direction = (b1 * ms[1] / (1 - b1**(t + 1)) + (1 - b1) * g / (1 - b1**t)
               ) * rsqrt
  out, carry = network.apply({'params': meta_params['params']},
                             _inputs(normalised, (cosine, scale)), carry)
  log_step = (nominal['log_lr'] + scale
              + MAX_LOG_STEP * jnp.tanh(out[..., 0]))
  update = -jnp.exp(log_step) * (direction + out[..., 1])
  return update, carry, (v, *ms, direction), scale


def free(network, meta_params, grads: Array, carry, moments, count, scale,
         preprocess_p: float):
  r"""Schedule-free Adam with hypergradient-adapted per-tensor steps,
  corrected by the LSTM.

  Schedule-free training (Defazio et al., 2024) takes steps on a sequence
  :math:`z`, averages it into :math:`x` and evaluates gradients at the
  interpolation :math:`y = (1 - \beta) z + \beta x`, which are the
  parameters; no learning-rate schedule is needed. Here the step of tensor
  :math:`k` is adapted online as in the ``hyper`` design, against the
  running average :math:`h` of past directions:

  .. math::
    c_k &= \cos(g_{t,k}, h_{t-1,k}), \qquad
    s_k \leftarrow \mathrm{clip}\big(s_k + \kappa (c_k - c_0)
      - \rho \max(0, \log(q_k / (10 \bar q_k))),\ -4,\ 2.5\big)
    \\
    \bar q_k &\leftarrow 0.9\, \bar q_k + 0.1\, q_k \\
    f &= \mathrm{clip}\big([g, \hat m_{0.5}, \hat m_{0.9}, \hat m_{0.99}]
         / (\sqrt{\hat v} + \epsilon),\ c_k,\ s_k;\ \pm 10\big), \qquad
    (a, b) = m_\phi(f), \qquad
    d = g / (\sqrt{\hat v} + \epsilon) + b \\
    \delta &= \exp(\log\eta + s_k + 3 \tanh a)\, d, \qquad
    z \leftarrow z - \delta, \qquad h \leftarrow 0.9 h + 0.1 d \\
    \gamma_k &\leftarrow \max(\gamma_k, \eta e^{s_k}), \quad
    w_k = \gamma_k^2, \quad
    W_k \leftarrow e^{-\lambda \max(c_k - 1/2,\ 0)}\, W_k + w_k, \quad
    x \leftarrow x + (w_k / W_k)(z - x)

  with :math:`\hat v` decaying at 0.8 for the first :math:`T` steps (40
  fresh) and at :math:`\beta_2 = 1 - 0.01 e^r` (0.99 fresh) after,
  bias-corrected by :math:`1 - 0.8^{\min(t, T)} \beta_2^{\max(t - T, 0)}`.
  The first gradients of a noise-free problem can be a thousand times its
  later ones; a long memory from the first step would keep them in
  :math:`\hat v`, and the steps small, for a hundred steps. The short
  warm-up forgets them; the long memory after it shrinks the steps of a
  network whose gradients vanish once it has memorised its data.
  The averaging weight is the square of the largest step so far (as
  ``optax.contrib.schedule_free_adamw`` weighs by the largest learning rate
  after warmup), so that iterates keep their weight when the hypergradient
  shrinks the step late in training. While a tensor's gradient agrees with its
  past directions (:math:`c_k > 1/2`: the iterates are still travelling, as on
  a noise-free problem far from its minimum) the weight of its older iterates
  decays at rate :math:`\lambda`, so that :math:`x` follows :math:`z` instead
  of lagging behind it; under gradient noise :math:`c_k` stays near 0 and the
  average is schedule-free's. When the mean square :math:`q_k` of a tensor's
  gradient jumps above ten times its running average :math:`\bar q_k` (a loss
  spike after too large a step), its log step is cut at once by :math:`\rho`
  times the log of the excess, which lets the rule start from a larger step.
  Only :math:`e = z - x` is stored (it starts at 0), so the update
  :math:`u = y_{t+1} - y_t` is
  :math:`-(1 - \beta)\delta + \beta (w_k/W_k)(e - \delta)` and
  :math:`e \leftarrow (1 - w_k/W_k)(e - \delta)`. ``scale`` holds
  :math:`(s_k, W_k, \gamma_k, \bar q_k)` per tensor. :math:`\eta`,
  :math:`\kappa`, :math:`c_0`, :math:`\beta`, :math:`\lambda`, :math:`\rho`
  and :math:`r` are meta-learned with the LSTM (:math:`T`, a step count, is
  not). With a zero read-out the rule
  is this hypergradient schedule-free Adam (with a frozen step and
  :math:`\lambda = \rho = T = 0`, ``optax.contrib.schedule_free_adamw`` without
  weight decay, with ``b1`` :math:`= \beta` and ``b2`` :math:`= \beta_2`).
  """
  del preprocess_p
  nominal = free_nominal(meta_params, grads, moments, count, scale)
  out, carry = network.apply(
      {'params': meta_params['params']},
      _inputs(nominal.normalised, (nominal.cosine, nominal.offset)), carry)
  update, moments, scale = free_update(
      meta_params, nominal, scale, nominal.normalised[0] + out[..., 1],
      MAX_LOG_STEP * jnp.tanh(out[..., 0]))
  return update, carry, moments, scale


class FreeNominal(NamedTuple):
  """The free design's quantities before its learned correction, for one
  tensor (see :func:`free_nominal`)."""
  g: Array
  cosine: Array
  offset: Array
  spike_average: Array
  v: Array
  ms: list
  t: Array
  rsqrt: Array
  normalised: list
  reference: Array
  gap: Array


def free_nominal(meta_params, grads: Array, moments, count, scale
                 ) -> FreeNominal:
  """The free design's accumulators, hypergradient step offset and spike cut
  moved by the gradient ``grads`` of one tensor, and its normalised
  features (:func:`free`); shared by the designs built around this rule."""
  g = jnp.clip(grads, -GRAD_LIMIT, GRAD_LIMIT)
  *accumulators, reference, gap = moments
  unit, top = _unit(g)  # shared by the cosine and the cut
  cosine, offset = _step_offset(meta_params, unit, reference, count, scale[0])
  cut, spike_average = _spike_cut(meta_params, unit, top, scale[3], count)
  offset = jnp.clip(offset - cut, MIN_LOG_SCALE, MAX_LOG_SCALE)
  v, ms, t, rsqrt = _accumulate(g, accumulators, count,
                                *_second_moment_schedule(meta_params, count,
                                                         g.dtype))
  return FreeNominal(g, cosine, offset, spike_average, v, ms, t, rsqrt,
                     _features(g, ms, t, rsqrt), reference, gap)


def free_update(meta_params, nominal: FreeNominal, scale, direction: Array,
                log_factor: Array, tensor_log_step: Array | None = None):
  r"""The free design's schedule-free step along ``direction`` (shaped like
  the tensor), of log size :math:`\log\eta + s_k` (+ ``tensor_log_step``,
  a per-tensor learned offset, if given) + ``log_factor`` (per coordinate).

  Returns ``(update, moments, scale)`` as :func:`free` does; with
  ``direction = nominal.normalised[0]`` and zero ``log_factor`` the update is
  the free design's nominal rule.
  """
  log_rate = meta_params['nominal']['log_lr'] + nominal.offset
  if tensor_log_step is not None:
    log_rate = log_rate + tensor_log_step
  step = jnp.exp(log_rate + log_factor) * direction
  peak = jnp.maximum(scale[2], jnp.exp(log_rate))
  weight = jnp.square(peak)
  discount = jnp.exp(-average_growth(meta_params)
                     * jnp.maximum(nominal.cosine - AVERAGE_THRESHOLD, 0.0))
  total = discount * scale[1] + weight
  mix = weight / total
  beta = interpolation(meta_params)
  gap = nominal.gap
  update = -(1 - beta) * step + beta * mix * (gap - step)
  gap = (1 - mix) * (gap - step)
  reference = (REFERENCE_DECAY * nominal.reference
               + (1 - REFERENCE_DECAY) * direction)
  return (update, (nominal.v, *nominal.ms, reference, gap),
          jnp.stack([nominal.offset, total, peak, nominal.spike_average]))


RULES = {'paper': Rule(paper, 0), 'adaptive': Rule(adaptive, 4),
         'hyper': Rule(hyper, 5), 'free': Rule(free, 6, (4,))}
