"""The learned optimizer as an optax transform: a table of optimizers run
through pytrees, dtypes, transformations and optax wrappers."""

import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2l

KEY = jax.random.key(0)


def _perturbed(design):
  """A design whose LSTM read-out is not zero (so it is not its nominal)."""
  meta_params = l2l.init_meta_params(KEY, design=design)
  kernel = meta_params['params']['output']['kernel']
  meta_params['params']['output']['kernel'] = jax.random.normal(
      jax.random.key(1), kernel.shape)
  return meta_params


OPTIMIZERS = {
    'random_2x20': lambda **kw: l2l.lstm_optimizer(
        l2l.init_meta_params(KEY), **kw),
    'random_3x8': lambda **kw: l2l.lstm_optimizer(
        l2l.init_meta_params(KEY, hidden_size=8, num_layers=3), **kw),
    'default': lambda **kw: l2l.lstm_optimizer(**kw),
    'adaptive_perturbed': lambda **kw: l2l.lstm_optimizer(
        _perturbed('adaptive'), **kw),
    'hyper_perturbed': lambda **kw: l2l.lstm_optimizer(
        _perturbed('hyper'), **kw),
    'free_perturbed': lambda **kw: l2l.lstm_optimizer(
        _perturbed('free'), **kw),
}
PYTREES = {
    'dict': lambda d: {'w': jnp.ones((3, 2), d), 'b': jnp.full((2,), -0.5, d)},
    'list_tuple': lambda d: [jnp.ones(4, d), (jnp.ones((2, 2), d), jnp.ones(1, d))],
    'scalar': lambda d: jnp.asarray(0.7, d),
    'zero_size_and_none': lambda d: {'a': jnp.ones((0, 3), d), 'n': None,
                                     'b': jnp.ones(2, d)},
}
DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16]


def _grads(params, scale=1.0):
  return jax.tree.map(lambda p: (scale * (p + 0.3)).astype(p.dtype), params)


@pytest.mark.parametrize('opt_name', OPTIMIZERS)
@pytest.mark.parametrize('tree_name', PYTREES)
@pytest.mark.parametrize('dtype', DTYPES)
def test_shapes_dtypes_and_finiteness(opt_name, tree_name, dtype):
  opt = OPTIMIZERS[opt_name]()
  params = PYTREES[tree_name](dtype)
  state = opt.init(params)
  updates, new_state = jax.jit(opt.update)(_grads(params), state, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
  chex.assert_tree_all_finite(updates)
  chex.assert_trees_all_equal_structs(new_state, state)
  chex.assert_trees_all_equal_dtypes(new_state, state)
  assert new_state.count == 1
  # The compact default's LSTM runs once per tensor, the others per
  # coordinate.
  per_tensor = opt_name == 'default'
  for layer in new_state.cell + new_state.hidden:
    for p, c in zip(jax.tree.leaves(params), jax.tree.leaves(layer)):
      assert c.shape[:-1] == (() if per_tensor else p.shape)
      assert c.dtype == jnp.float32


@pytest.mark.parametrize('state_dtype', [jnp.float32, jnp.bfloat16])
def test_state_dtype_is_configurable_and_stable(state_dtype):
  opt = OPTIMIZERS['random_2x20'](state_dtype=state_dtype)
  params = PYTREES['dict'](jnp.bfloat16)
  state = opt.init(params)
  for _ in range(2):
    _, state = opt.update(_grads(params), state, params)
  assert {x.dtype for x in jax.tree.leaves((state.cell, state.hidden))} == {
      jnp.dtype(state_dtype)}
  assert state.count.dtype == jnp.int32


def test_updates_follow_param_dtype_when_params_given():
  opt = OPTIMIZERS['random_2x20']()
  params = {'w': jnp.ones(3, jnp.bfloat16)}
  grads = {'w': jnp.ones(3, jnp.float32)}
  updates, _ = opt.update(grads, opt.init(params), params)
  assert updates['w'].dtype == jnp.bfloat16
  updates, _ = opt.update(grads, opt.init(params))
  assert updates['w'].dtype == jnp.float32


@pytest.mark.parametrize('opt_name', OPTIMIZERS)
def test_jit_equals_eager(opt_name):
  opt = OPTIMIZERS[opt_name]()
  params = PYTREES['list_tuple'](jnp.float32)
  state = opt.init(params)
  eager = opt.update(_grads(params), state, params)
  jitted = jax.jit(opt.update)(_grads(params), state, params)
  chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-7)


def test_all_leaves_are_one_batch():
  """Concatenating leaves must not change any coordinate's update."""
  opt = OPTIMIZERS['random_2x20']()
  params = {'a': jnp.linspace(-1, 1, 5), 'b': jnp.linspace(2, 3, 4)}
  joint, _ = opt.update(params, opt.init(params))
  for name in params:
    alone, _ = opt.update({name: params[name]}, opt.init({name: params[name]}))
    np.testing.assert_allclose(joint[name], alone[name], rtol=1e-6)


def test_no_recompilation_across_steps():
  opt = OPTIMIZERS['random_2x20']()
  params = PYTREES['dict'](jnp.bfloat16)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state):
    updates, state = opt.update(_grads(params), state, params)
    return optax.apply_updates(params, updates), state

  state = opt.init(params)
  for _ in range(4):
    params, state = step(params, state)


def test_vmap_matches_per_example():
  opt = OPTIMIZERS['random_2x20']()
  batch = {'w': jnp.arange(12.0).reshape(3, 4) / 10 - 0.5}
  state = jax.vmap(opt.init)(batch)
  updates, _ = jax.vmap(opt.update)(batch, state)
  for i in range(3):
    one = {'w': batch['w'][i]}
    expected, _ = opt.update(one, opt.init(one))
    np.testing.assert_allclose(updates['w'][i], expected['w'], rtol=1e-5)


def test_scan_and_cond_keep_state_structure():
  opt = OPTIMIZERS['random_2x20']()
  params = PYTREES['dict'](jnp.float32)

  def body(carry, skip):
    params, state = carry
    def apply(_):
      updates, new_state = opt.update(_grads(params), state, params)
      return optax.apply_updates(params, updates), new_state
    return jax.lax.cond(skip, lambda _: (params, state), apply, None), None

  (params_out, state), _ = jax.jit(lambda c, s: jax.lax.scan(body, c, s))(
      (params, opt.init(params)), jnp.array([False, True, False]))
  assert state.count == 2
  chex.assert_tree_all_finite(params_out)


@pytest.mark.parametrize('wrap', [
    lambda o: optax.chain(optax.clip_by_global_norm(1.0), o),
    lambda o: optax.MultiSteps(o, every_k_schedule=2),
    lambda o: optax.apply_if_finite(o, max_consecutive_errors=3),
])
def test_optax_wrappers(wrap):
  opt = wrap(OPTIMIZERS['default']())
  params = {'w': jnp.array([1.0, -2.0])}
  loss = lambda p: jnp.sum(p['w'] ** 2)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(4):
    params, state = step(params, state)
  chex.assert_tree_all_finite(params)
  assert loss(params) < 5.0


@pytest.mark.parametrize('opt_name', OPTIMIZERS)
@pytest.mark.parametrize('magnitude', [0.0, 1e-38, 1e-20, 1.0, 1e30, 3e38])
def test_finite_gradients_of_any_magnitude(opt_name, magnitude):
  opt = OPTIMIZERS[opt_name]()
  params = {'w': jnp.zeros(4)}
  grads = {'w': jnp.array([1.0, -1.0, 1.0, -1.0]) * jnp.float32(magnitude)}
  state = opt.init(params)
  for _ in range(3):
    updates, state = opt.update(grads, state, params)
  chex.assert_tree_all_finite((updates, state))


def test_apply_if_finite_skips_non_finite_gradients():
  opt = optax.apply_if_finite(OPTIMIZERS['default'](), max_consecutive_errors=5)
  params = {'w': jnp.ones(3)}
  state = opt.init(params)
  for bad in (jnp.nan, jnp.inf):
    updates, state = opt.update({'w': jnp.array([1.0, bad, 1.0])}, state,
                                params)
    assert optax.apply_updates(params, updates)['w'].tolist() == [1.0, 1.0, 1.0]
  chex.assert_tree_all_finite(state.inner_state)
  assert state.total_notfinite == 2


@pytest.mark.parametrize('opt_name', OPTIMIZERS)
def test_non_finite_gradient_propagates_without_wrapper(opt_name):
  """Documented: a non-finite coordinate gives a non-finite update there."""
  opt = OPTIMIZERS[opt_name]()
  params = {'w': jnp.ones(3)}
  state = opt.init(params)
  for bad in (jnp.nan, jnp.inf):
    updates, state = opt.update({'w': jnp.array([1.0, bad, 1.0])}, state,
                                params)
    assert not np.isfinite(updates['w'][1])
    assert np.all(np.isfinite(updates['w'][::2]))
    # The per-tensor step offsets (hyper, free, compact) stay finite.
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(
        state.scale['w']))


@pytest.mark.parametrize('grads', [
    {'w': jnp.ones(3), 'extra': jnp.ones(1)},
    [jnp.ones(3)],
    {'w': jnp.ones(4)},
    {'w': jnp.ones((3, 1))},
])
def test_mismatched_gradient_tree_raises(grads):
  opt = OPTIMIZERS['random_2x20']()
  state = opt.init({'w': jnp.ones(3)})
  with pytest.raises(ValueError, match='lstm_optimizer: (the )?gradient'):
    opt.update(grads, state)


@pytest.mark.parametrize('params', [{'w': jnp.ones(4)}, {'w': jnp.ones(3),
                                                         'v': jnp.ones(1)}])
def test_params_unlike_the_gradients_raise(params):
  opt = OPTIMIZERS['default']()
  state = opt.init({'w': jnp.ones(3)})
  with pytest.raises(ValueError, match='params given to update .* do not '
                     'match the gradients'):
    opt.update({'w': jnp.ones(3)}, state, params)


def test_bad_meta_params_raise():
  with pytest.raises(ValueError, match='coordinatewise LSTM'):
    l2l.lstm_optimizer({'params': {'output': {'kernel': jnp.ones((3, 1))}}})


def test_meta_gradient_flows_through_update():
  params = {'w': jnp.array([1.0, -0.5])}

  def loss_after_steps(meta_params):
    opt = l2l.lstm_optimizer(meta_params)
    p, state = params, opt.init(params)
    for _ in range(3):
      updates, state = opt.update(jax.grad(lambda q: jnp.sum(q['w'] ** 2))(p),
                                  state)
      p = optax.apply_updates(p, updates)
    return jnp.sum(p['w'] ** 2)

  grads = jax.grad(loss_after_steps)(l2l.init_meta_params(KEY))
  norm = optax.tree.norm(grads)
  assert np.isfinite(norm) and norm > 0


def test_empty_tree():
  opt = OPTIMIZERS['random_2x20']()
  updates, state = opt.update({}, opt.init({}))
  assert updates == {} and state.count == 1


def test_meta_params_from_file(tmp_path):
  meta_params = l2l.init_meta_params(KEY, hidden_size=4, num_layers=1)
  path = tmp_path / 'm.npz'
  l2l.save_meta_params(path, meta_params, config={'hidden_size': 4,
                                                  'num_layers': 1,
                                                  'output_scale': 0.5})
  params = {'w': jnp.ones(2)}
  from_file, _ = l2l.lstm_optimizer(str(path)).update(params, l2l.lstm_optimizer(
      str(path)).init(params))
  direct, _ = l2l.lstm_optimizer(meta_params, output_scale=0.5).update(
      params, l2l.lstm_optimizer(meta_params).init(params))
  np.testing.assert_allclose(from_file['w'], direct['w'], rtol=1e-6)


def test_fresh_adaptive_design_is_adam():
  opt = l2l.lstm_optimizer(l2l.init_meta_params(KEY, design='adaptive',
                                                 nominal_lr=0.01))
  adam = optax.adam(1e-2)
  params = {'w': jnp.linspace(-1.0, 1.0, 7), 'b': jnp.ones((2, 3))}
  state, adam_state = opt.init(params), adam.init(params)
  for i in range(5):
    grads = jax.tree.map(lambda x: jnp.sin(3 * x + i), params)
    updates, state = opt.update(grads, state)
    expected, adam_state = adam.update(grads, adam_state)
    chex.assert_trees_all_close(updates, expected, atol=1e-7)
  assert len(state.moments) == 4


def _moved_offsets(s, t, g, reference, kappa, offset):
  """Reference per-tensor offset update: s_k + kappa (cos(g_k, ref_k) - c0)."""
  if t == 1:
    return s
  return [float(np.clip(sk + kappa * (gk.ravel() @ rk.ravel() / (
      np.linalg.norm(gk) * np.linalg.norm(rk)) - offset), -4.0, 2.5))
          for sk, gk, rk in zip(s, g, reference)]


def _hypergradient_nadam(lr, kappa, offset, grads_seq, params):
  """Reference for a fresh hyper design, written leaf by leaf in numpy."""
  leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
  m = [np.zeros_like(x) for x in leaves]
  v = [np.zeros_like(x) for x in leaves]
  d = [np.zeros_like(x) for x in leaves]
  s, out = [0.0] * len(leaves), []
  for t, grads in enumerate(grads_seq, start=1):
    g = [np.asarray(x, np.float64) for x in jax.tree.leaves(grads)]
    s = _moved_offsets(s, t, g, d, kappa, offset)
    m = [0.9 * a + 0.1 * b for a, b in zip(m, g)]
    v = [0.999 * a + 0.001 * b * b for a, b in zip(v, g)]
    d = [(0.9 * a / (1 - 0.9**(t + 1)) + 0.1 * b / (1 - 0.9**t))
         / (np.sqrt(c / (1 - 0.999**t)) + 1e-8) for a, b, c in zip(m, g, v)]
    out.append((list(s), [-lr * np.exp(sk) * x for sk, x in zip(s, d)]))
  return out


# Gradients of 'w' keep their direction for a while, then flip, so its log
# step offset first grows, then shrinks; those of 'b' alternate in sign from
# the start, so its offset only shrinks.
_REFERENCE_PARAMS = {'w': jnp.linspace(-1.0, 1.0, 7), 'b': jnp.ones((2, 3))}
_REFERENCE_GRADS = [
    {'w': (1.0 if i < 6 else -1.0) * (_REFERENCE_PARAMS['w'] + 0.1 * i),
     'b': (-1.0)**i * (_REFERENCE_PARAMS['b'] + 0.1 * i)} for i in range(10)]


def _check_against_reference(opt, want, offset_of, atol,
                             grads_seq=_REFERENCE_GRADS):
  """Runs ``opt`` on ``grads_seq`` against ``want``'s ``(offsets, updates)``
  per step; returns the final state and the offsets."""
  update = jax.jit(opt.update)
  state, offsets = opt.init(_REFERENCE_PARAMS), []
  for grads, (want_offsets, want_updates) in zip(grads_seq, want):
    updates, state = update(grads, state)
    got = [float(offset_of(x)) for x in jax.tree.leaves(state.scale)]
    offsets.append(dict(zip(('b', 'w'), got)))
    np.testing.assert_allclose(got, want_offsets, atol=1e-6)
    for got, expected in zip(jax.tree.leaves(updates), want_updates):
      np.testing.assert_allclose(got, expected, rtol=1e-4, atol=atol)
  return state, offsets


def test_fresh_hyper_design_is_hypergradient_nadam():
  opt = l2l.lstm_optimizer(l2l.init_meta_params(KEY, design='hyper',
                                                 nominal_lr=0.01))
  want = _hypergradient_nadam(0.01, 0.05, -0.03, _REFERENCE_GRADS,
                              _REFERENCE_PARAMS)
  state, offsets = _check_against_reference(opt, want, lambda x: x, 1e-9)
  assert offsets[5]['w'] > 0.2 and offsets[-1]['w'] < offsets[5]['w']
  assert offsets[-1]['b'] < -0.3
  assert len(state.moments) == 5


def _hypergradient_schedule_free(lr, kappa, offset, beta, growth, cut, b2,
                                  warmup, grads_seq, params):
  """Reference for a fresh free design in numpy: explicit z, x and y; the
  second moment decays at 0.8 for ``warmup`` steps, then at ``b2``."""
  y = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
  z, x = [a.copy() for a in y], [a.copy() for a in y]
  v = [np.zeros_like(a) for a in y]
  h = [np.zeros_like(a) for a in y]
  s, total, peak, out = [0.0] * len(y), [0.0] * len(y), [0.0] * len(y), []
  mean_square, product = [0.0] * len(y), 1.0
  for t, grads in enumerate(grads_seq, start=1):
    g = [np.asarray(a, np.float64) for a in jax.tree.leaves(grads)]
    s = _moved_offsets(s, t, g, h, kappa, offset)
    for k, gk in enumerate(g):  # cut the step when |g|^2 jumps tenfold
      q = np.mean(gk * gk)
      if t > 1:
        ratio = q / (mean_square[k] / (1 - 0.9**(t - 1)))
        s[k] = float(np.clip(s[k] - cut * max(0.0, np.log(ratio / 10)),
                             -4.0, 2.5))
      mean_square[k] = 0.9 * mean_square[k] + 0.1 * q
    cosines = [0.0 if t == 1 else gk.ravel() @ hk.ravel() / (
        np.linalg.norm(gk) * np.linalg.norm(hk)) for gk, hk in zip(g, h)]
    decay = 0.8 if t <= warmup else b2
    product *= decay
    v = [decay * a + (1 - decay) * b * b for a, b in zip(v, g)]
    d = [b / (np.sqrt(c / (1 - product)) + 1e-8) for b, c in zip(g, v)]
    h = [0.9 * a + 0.1 * b for a, b in zip(h, d)]
    updates = []
    for k in range(len(y)):
      step = lr * np.exp(s[k])
      peak[k] = max(peak[k], step)  # weights: the largest step so far
      # older iterates are discounted while the cosine is above 1/2
      total[k] = (np.exp(-growth * max(cosines[k] - 0.5, 0.0)) * total[k]
                  + peak[k]**2)
      z[k] = z[k] - step * d[k]
      x[k] = x[k] + peak[k]**2 / total[k] * (z[k] - x[k])
      new_y = (1 - beta) * z[k] + beta * x[k]
      updates.append(new_y - y[k])
      y[k] = new_y
    out.append((list(s), updates))
  return out


# The reference gradients with a spike: 'w' jumps 20-fold at step 8.
_SPIKY_GRADS = [{**g, 'w': (20.0 if i == 7 else 1.0) * g['w']}
                for i, g in enumerate(_REFERENCE_GRADS)]


@pytest.mark.parametrize('rate, beta, warmup, b2, want_warmup', [
    # fresh: beta 0.93, second moment decay 0.8 for 40 steps, then 0.99
    (None, None, None, 0.99, 40),
    (0.0, 0.9, 0.0, 0.99, 0),  # the 0.5.0 rule (a file without the warm-up)
    (np.log(10.0), 0.95, 0.0, 0.9, 0),  # the eighth round's candidate
    (np.log(50.0), 0.5, 4.0, 0.5, 4),  # the decay changes mid-sequence
    (0.0, 0.93, 3.7, 0.99, 3),  # a fractional warm-up is rounded down
    (0.0, 0.93, -2.0, 0.99, 0),  # a negative one is none
])
def test_fresh_free_design_is_hypergradient_schedule_free_adam(
    rate, beta, warmup, b2, want_warmup):
  meta_params = l2l.init_meta_params(KEY, design='free', nominal_lr=0.1)
  if rate is not None:
    meta_params['nominal'].update(second_moment_rate=jnp.float32(rate),
                                  interpolation=jnp.float32(beta),
                                  second_moment_warmup=jnp.float32(warmup))
  opt = l2l.lstm_optimizer(meta_params)
  want = _hypergradient_schedule_free(0.1, 0.05, -0.03, beta or 0.93, 1.0,
                                      0.5, b2, want_warmup, _SPIKY_GRADS,
                                      _REFERENCE_PARAMS)
  state, offsets = _check_against_reference(opt, want, lambda x: x[0], 1e-7,
                                            _SPIKY_GRADS)
  assert len(state.moments) == 6
  assert state.scale['w'].shape == (4,)
  # 'b's step shrinks below its first, so the peak weighting is exercised;
  # 'w's is cut by more than a hypergradient step at the spike.
  assert offsets[-1]['b'] < offsets[0]['b'] - 0.1
  assert offsets[7]['w'] < offsets[6]['w'] - 1.0


def test_prototype_rule_is_the_fresh_free_design(monkeypatch):
  # benchmarks/prototype chose the free rule's constants; its defaults must
  # stay the shipped rule with a zero read-out.
  monkeypatch.syspath_prepend(
      str(pathlib.Path(__file__).parents[1] / 'benchmarks' / 'prototype'))
  import rules  # pylint: disable=import-outside-toplevel
  opt = rules.make('sfh()')
  want = _hypergradient_schedule_free(0.2, 0.05, -0.03, 0.93, 1.0, 0.5, 0.99,
                                      40, _SPIKY_GRADS, _REFERENCE_PARAMS)
  update, state = jax.jit(opt.update), opt.init(_REFERENCE_PARAMS)
  for grads, (want_offsets, want_updates) in zip(_SPIKY_GRADS, want):
    updates, state = update(grads, state)
    np.testing.assert_allclose(state.s, want_offsets, atol=1e-6)
    for got, expected in zip(jax.tree.leaves(updates), want_updates):
      np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_averaged_params_of_the_default():
  params = {'w': jnp.linspace(-1.0, 1.0, 4).astype(jnp.bfloat16), 'n': None}
  opt = l2l.lstm_optimizer()
  state = opt.init(params)
  np.testing.assert_array_equal(  # x = y before any step
      l2l.averaged_params(params, state, None)['w'], params['w'])
  for _ in range(3):
    updates, state = opt.update({'w': params['w'] + 1, 'n': None}, state,
                                params)
    params = optax.apply_updates(params, updates)
  averaged = l2l.averaged_params(params, state, 'default')
  assert averaged['w'].dtype == jnp.bfloat16 and averaged['n'] is None
  assert not np.allclose(averaged['w'], params['w'])


def test_averaged_params_of_another_tree_says_so():
  opt = l2l.lstm_optimizer()
  state = opt.init({'w': jnp.ones(2)})
  with pytest.raises(ValueError, match='params tree does not match .* nnx'):
    l2l.averaged_params({'w': jnp.ones(2), 'v': jnp.ones(1)}, state, None)


@pytest.mark.parametrize('state, meta_params, message', [
    ('adam', None, 'found 0 LSTMOptimizerState in the ScaleByAdamState'),
    ('two', None, 'found 2 LSTMOptimizerState .* pass the one'),
    ('lstm', 'paper2016', "of the 'paper' design"),
    ('paper_state', None, 'not that of a compact-design optimizer'),
])
def test_averaged_params_errors(state, meta_params, message):
  params = {'w': jnp.ones(2)}
  opt = l2l.lstm_optimizer(meta_params)
  if state == 'adam':
    opt = optax.scale_by_adam()
  if state == 'two':
    opt = optax.chain(opt, optax.clip(1.0), opt)
  if state == 'paper_state':  # the default's meta-params, a paper state
    opt = l2l.lstm_optimizer('paper2016')
  with pytest.raises(ValueError, match=message):
    l2l.averaged_params(params, opt.init(params), meta_params)


@pytest.mark.parametrize('cut, first, cut_to_bound', [
    (0.5, 1e-15, True),    # a 1e66-fold jump: cut to the bound
    (0.0, 1e-15, False),   # the same jump with the cut off: no NaN
    (0.5, 0.0, False),     # no gradient before: nothing to cut
    (0.0, 0.0, False),
])
def test_free_spike_cut_on_extreme_jumps(cut, first, cut_to_bound):
  meta_params = l2l.init_meta_params(KEY, design='free')
  meta_params['nominal']['spike_cut'] = jnp.float32(cut)
  opt = l2l.lstm_optimizer(meta_params)
  params = {'w': jnp.ones(3)}
  state = opt.init(params)
  for g in (first, 1e18):
    updates, state = opt.update({'w': jnp.full(3, g)}, state)
  assert np.all(np.isfinite(updates['w']))
  offset = float(state.scale['w'][0])
  assert offset == pytest.approx(-4.0) if cut_to_bound else offset > -0.01


def test_hyper_scale_stays_bounded():
  opt = l2l.lstm_optimizer(l2l.init_meta_params(KEY, design='hyper'))
  params = {'w': jnp.ones(3)}
  state = opt.init(params)
  for sign in (1.0, -1.0):
    for _ in range(200):
      # Agreeing (sign 1) or alternating (sign -1) gradients.
      grads = {'w': jnp.ones(3) * sign**int(state.count)}
      _, state = jax.jit(opt.update)(grads, state)
    bound = 2.5 if sign > 0 else -4.0
    np.testing.assert_allclose(float(state.scale['w']), bound, atol=1e-5)


def test_named_configurations_load():
  paper = l2l.lstm_optimizer('paper2016')
  params = {'w': jnp.ones(2)}
  state = paper.init(params)
  assert state.moments == () and len(state.cell) == 2
  with pytest.raises(l2l.CheckpointError, match='no such checkpoint'):
    l2l.lstm_optimizer('no_such_configuration')
