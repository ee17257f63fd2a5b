"""Hand-written prototypes of the free design's rule, without the LSTM.

The design rounds in the README chose the free rule's constants and pieces
with :func:`sfh` (schedule-free Adam with per-tensor hypergradient steps)
before porting a winner to ``l2l/_rules.py``. Its keyword arguments switch
the variants the README reports; the defaults are the shipped rule with a
zero read-out:

  sfh(lr=0.2, kup=0.05, c0=-0.03, beta=0.93, b2=0.99, mb=0.9, wmax=True,
      wgrow=1.0, wc0=0.5, spike=10.0, sk=0.5, b2switch=40, b2start=0.8)

(the ninth round's rule, l2l 0.6.0; the seventh round's, shipped in 0.4.0
and 0.5.0, is ``sfh(beta=0.9, b2switch=None)``, and the sixth round's
``sfh(lr=0.1, spike=0, beta=0.9, b2switch=None)``; the eighth round's
commands in the README, written before 0.6.0, mean the seventh round's rule
by ``sfh()``)

A name such as ``"sfh(lr=0.2, kdown=0.01)"`` is parsed by :func:`make`.
This is a research harness: it stores ``z`` and ``x`` explicitly (the
library stores only their gap) and is not part of the package.
"""

import ast
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import l2l


class State(NamedTuple):
  count: jax.Array
  v: Any          # second moment
  momentum: Any   # momentum on the direction (dmom)
  z: Any          # schedule-free base sequence
  x: Any          # schedule-free average
  h: Any          # running average of past directions
  q: Any          # running average of squared directions (snr signals)
  s: jax.Array    # per-tensor log step offsets
  stats: jax.Array  # [W, largest step, gate or spike average, hnorm's moments]
  vn: jax.Array   # bias correction of v: 1 - the product of its decays


def _cos(a, b):
  return jnp.sum(a * b) / jnp.sqrt(
      jnp.maximum(jnp.sum(a * a) * jnp.sum(b * b), 1e-30))


def sfh(lr=0.2, kup=0.05, kdown=None, c0=-0.03, beta=0.93, b2=0.99, mb=0.9,
        wmax=True, pow=2.0, smin=-4.0, smax=2.5, s0=0.0, freeze=False,
        wgrow=1.0, wc0=0.5, wsig='h', wc0g=None, ssig='h', smix=1.0,
        pn=1.0, dmom=0.0, grow='lin', cl=0.999, dz=0.0, tau=0.0,
        spike=10.0, sdec=0.9, sk=0.5, c0d=None, gdec=0.99, rsat=0.5,
        hnorm=0.0, hdec=0.9, hdec2=0.99, band=0.1, bdec=0.0, bz=0.0, gapdec=0.0,
        ceil=None, crel=0.0, reset=False, vcap=None, vfast=0.9,
        vreset=None, b2warm=None, b2start=0.8, b2switch=40):
  """Schedule-free Adam with per-tensor hypergradient log steps.

  Per tensor k: ``c = cos(g, h)``; ``s += κ (c − c₀)`` (κ = ``kup`` above
  c₀, ``kdown`` below), clipped to ``[smin, smax]``; ``d = g / √v̂``;
  ``z −= lr e^s d``; ``W ← e^(−wgrow max(c_w − wc0, 0)) W + γ^pow`` with γ
  the largest step so far (``wmax``) or the current one; ``x += (γ^pow /
  W)(z − x)``; the parameters are ``(1 − β) z + β x``; ``h ← mb h + (1 −
  mb) d``.

  Variants: ``ssig``/``wsig`` 'gap' use ``−cos(g, z − x)`` as the step's or
  the average's signal (``'mix'``: ``smix`` of it, ``ssig='max'`` or
  ``wsig='both'``: the
  larger of the two, the gap's threshold ``wc0g``); ``pn`` < 1 divides by
  ``v̂^(pn/2) mean(v̂)^((1−pn)/2)``; ``dmom`` a momentum on ``g``;
  ``grow`` 'atanh' or 'inv' reshape ``c − c₀``; ``dz`` a dead zone;
  ``tau`` decays κ as τ/(τ + t); ``spike`` cuts the step when a tensor's
  squared gradient norm exceeds ``spike`` times its average; ``c0d``
  moves c₀ toward ``c0d`` as the fraction of steps with ``c > wc0`` (decay
  ``gdec``) reaches ``rsat``; ``freeze`` keeps ``s`` at ``s0``; ``hnorm``
  replaces ``κ (c − c₀)`` by ``hnorm`` times its running mean over its
  running RMS (decays ``hdec``, ``hdec2``); ``ceil`` caps ``s`` below the
  offset at which the last spike cut fired, less ``ceil``, the cap rising by
  ``crel`` per step; ``reset`` sends a tensor whose step was cut back to its
  average (``z = x``); ``vreset`` restarts a tensor's second moment from
  ``g²`` when its mean square falls below 1/``vreset`` of its running
  average (the spike cut's); ``vcap`` caps the second moment at ``vcap`` times
  one decaying at ``vfast``; ``b2warm`` T lets the second moment's decay
  rise from ``b2start`` to ``b2``: ``1 − β₂ₜ = (1 − b2) + (b2 − b2start)
  e^(−(t−1)/T)``, bias-corrected by its running normaliser; ``b2switch`` T
  decays it at ``b2start`` for T steps, then at ``b2``.
  """
  kdown = kup if kdown is None else kdown

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    n = len(jax.tree.leaves(params))
    return State(jnp.zeros([], jnp.int32), zeros, zeros, params, params,
                 zeros, zeros, jnp.full([n], s0),
                 jnp.zeros([8, n]).at[7].set(smax), jnp.zeros([]))

  def update(grads, state, params=None):
    del params
    t = state.count + 1
    tf = t.astype(jnp.float32)
    later = t > 1
    gl, treedef = jax.tree.flatten(grads)
    zl, xl = jax.tree.leaves(state.z), jax.tree.leaves(state.x)
    c_h = jnp.stack([_cos(g.ravel(), h.ravel())
                     for g, h in zip(gl, jax.tree.leaves(state.h))])
    c_gap = -jnp.stack([_cos(g.ravel(), (z - x).ravel())
                        for g, z, x in zip(gl, zl, xl)])
    # noise-free share of each tensor's directions: |h|² against the
    # average |d|², rescaled so that pure noise gives 0 and a constant 1
    noise_floor = (1 - mb) / (1 + mb)
    snr = jnp.stack([
        jnp.sum(h * h) / jnp.maximum(jnp.sum(q), 1e-30)
        for h, q in zip(jax.tree.leaves(state.h), jax.tree.leaves(state.q))])
    r = jnp.where(later, jnp.clip((snr - noise_floor) / (1 - noise_floor),
                                  0.0, 1.0), 1.0)
    c_bar = jnp.where(later, bdec * state.stats[5] + (1 - bdec) * c_h, 0.0)
    quiet = jnp.abs(c_bar / (1 - bdec**jnp.maximum(tf - 1, 1.0))) < band
    if bz:  # only tensors large enough for |c| < band to mean anything
      sizes = jnp.array([g.size for g in gl], jnp.float32)
      quiet = quiet & (band * jnp.sqrt(sizes) > bz)
    c = {'h': c_h, 'gap': c_gap, 'snr': r * c_h + (1 - r) * c_gap,
         'band': jnp.where(quiet, c_gap, c_h),
         'mix': (1 - smix) * c_h + smix * c_gap,
         'max': jnp.maximum(c_h, c_gap)}[ssig]
    gate = state.stats[2]
    c0_now = c0
    if c0d is not None:
      gate = gdec * gate + (1 - gdec) * jnp.where(
          later, (c > wc0).astype(jnp.float32), 0.0)
      c0_now = c0 + jnp.minimum(1.0, gate / rsat) * (c0d - c0)
    error = {'lin': c - c0_now,
             'atanh': jnp.arctanh(jnp.clip(c, -cl, cl)) - jnp.arctanh(c0),
             'inv': (c - c0) / (1 - jnp.clip(c, -cl, cl))}[grow]
    if dz:
      error = jnp.sign(error) * jnp.maximum(jnp.abs(error) - dz, 0.0)
    delta = jnp.where(c > c0, kup, kdown) * error
    if tau:
      delta = delta * tau / (tau + tf)
    h_mean, h_square = state.stats[3], state.stats[4]
    if hnorm:
      e = jnp.where(later, error, 0.0)
      h_mean = hdec * h_mean + (1 - hdec) * e
      h_square = hdec2 * h_square + (1 - hdec2) * e * e
      k = jnp.maximum(tf - 1, 1.0)
      delta = hnorm * (h_mean / (1 - hdec**k)) / (
          jnp.sqrt(h_square / (1 - hdec2**k)) + 1e-8)
    s = state.s if freeze else jnp.clip(
        state.s + jnp.where(later, delta, 0.0), smin, smax)
    ceiling = state.stats[7] + crel
    cut = jnp.zeros_like(state.s)
    if spike:
      q = jnp.stack([jnp.sum(jnp.square(g)) for g in gl])
      ratio = q / jnp.maximum(
          gate / (1 - sdec**jnp.maximum(tf - 1, 1.0)), 1e-30)
      cut = jnp.maximum(0.0, sk * jnp.log(jnp.maximum(ratio, 1e-30) / spike))
      cut = jnp.where(later, cut, 0.0)
      if ceil is not None:  # a cut lowers a ceiling below the cut step
        ceiling = jnp.where(cut > 0, jnp.minimum(ceiling, s - ceil), ceiling)
        s = jnp.minimum(s, ceiling + ceil)
      s = jnp.clip(s - cut, smin, smax)
      if ceil is not None:
        s = jnp.minimum(s, ceiling)
      gate = sdec * gate + (1 - sdec) * q
    b2t = b2
    if b2warm:
      b2t = 1 - ((1 - b2) + (b2 - b2start) * jnp.exp(-(tf - 1) / b2warm))
    if b2switch and not b2warm:  # b2start for b2switch steps, then b2
      b2t = jnp.where(tf <= b2switch, b2start, b2)
    vn = b2t * state.vn + (1 - b2t)
    v = jax.tree.map(lambda v, g: b2t * v + (1 - b2t) * g * g, state.v, grads)
    if vreset and spike:  # a drop below 1/vreset of the average restarts v
      drop = later & (ratio < 1.0 / vreset)
      v = jax.tree.unflatten(treedef, [
          jnp.where(drop[k], g * g * vn, vk)
          for k, (g, vk) in enumerate(zip(gl, jax.tree.leaves(v)))])
    if vcap:  # the momentum slot holds a fast second moment
      momentum = jax.tree.map(lambda m, g: vfast * m + (1 - vfast) * g * g,
                              state.momentum, grads)
    else:
      momentum = jax.tree.map(lambda m, g: dmom * m + (1 - dmom) * g,
                              state.momentum, grads)
    source = (jax.tree.map(lambda m: m / (1 - dmom**tf), momentum)
              if dmom else grads)

    def direction(g, v, fast):
      v_hat = v / vn
      if vcap:  # at most vcap times the fast second moment
        v_hat = jnp.minimum(v_hat, vcap * fast / (1 - vfast**tf))
      return g / (jnp.sqrt(v_hat)**pn * jnp.sqrt(jnp.mean(v_hat))**(1 - pn)
                  + 1e-8)

    d = jax.tree.map(direction, source, v, momentum)
    step = lr * jnp.exp(s)
    largest = jnp.maximum(state.stats[1], step) if wmax else step
    weight = largest**pow
    # the average's gap signal, optionally smoothed before it is rectified
    gap_bar = jnp.where(later, gapdec * state.stats[6] + (1 - gapdec) * c_gap,
                        0.0)
    c_gap_w = gap_bar / (1 - gapdec**jnp.maximum(tf - 1, 1.0))
    c_w = {'h': c_h, 'gap': c_gap_w}.get(wsig)
    if wsig == 'band':
      c_w = jnp.where(quiet, c_gap_w - (wc0g or 0.0) + wc0, c_h)
    if wsig == 'snr':
      c_w = (r * (c_h - wc0) + (1 - r) * (c_gap_w - (wc0g or 0.0))) + wc0
    if wsig == 'both':
      c_w = jnp.maximum(c_gap_w - (wc0 if wc0g is None else wc0g) + wc0, c_h)
    discount = (jnp.exp(-wgrow * jnp.where(later,
                                           jnp.maximum(c_w - wc0, 0.0), 0.0))
                if wgrow else 1.0)
    total = state.stats[0] * discount + weight
    mix = weight / total
    dl = jax.tree.leaves(d)
    zn = [z - step[k] * dk for k, (z, dk) in enumerate(zip(zl, dl))]
    xn = [(1 - mix[k]) * x + mix[k] * z for k, (x, z) in enumerate(zip(xl, zn))]
    if reset:  # a spike sends the tensor back to its average
      zn = [jnp.where(cut[k] > 0, x, z) for k, (x, z) in enumerate(zip(xl, zn))]
      xn = [jnp.where(cut[k] > 0, x0, x) for k, (x0, x) in enumerate(zip(xl, xn))]
    updates = [(1 - beta) * (z1 - z0) + beta * (x1 - x0)
               for z0, z1, x0, x1 in zip(zl, zn, xl, xn)]
    h = jax.tree.map(lambda h, d: mb * h + (1 - mb) * d, state.h, d)
    q = jax.tree.map(lambda q, d: mb * q + (1 - mb) * d * d, state.q, d)
    unflatten = treedef.unflatten
    return unflatten(updates), State(
        t, v, momentum, unflatten(zn), unflatten(xn), h, q, s,
        jnp.stack([total, largest, gate, h_mean, h_square, c_bar, gap_bar,
                   ceiling]), vn)

  return optax.GradientTransformation(init, update)


def make(name: str) -> optax.GradientTransformation:
  """``"sfh(k=v, ...)"``, ``"adam0.1"``, an optax expression
  (``"optax.contrib.prodigy(1.0)"``), or anything ``l2l.lstm_optimizer``
  loads (``"default"``, ``"paper2016"``, a ``.npz`` path)."""
  if name.startswith('sfh'):
    call = ast.parse('f(' + name[3:].strip('()') + ')', mode='eval').body
    return sfh(**{k.arg: ast.literal_eval(k.value) for k in call.keywords})
  if name.startswith('adam'):
    return optax.adam(float(name[4:]))
  if name.startswith('optax.'):  # e.g. "optax.contrib.prodigy(1.0)"
    return eval(name, {'optax': optax})  # pylint: disable=eval-used
  return l2l.lstm_optimizer(name)
