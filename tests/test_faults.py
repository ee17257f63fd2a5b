"""Faults that users and public bug reports hit (issue 15): each test failed
on l2l 0.6.0."""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import l2l

KEY = jax.random.key(0)
DESIGNS = ('paper', 'adaptive', 'hyper', 'free')


class _UnusedLeafTask:
  """``c (sum(sin(w)^2) + 0.1)``; the loss never reads ``unused``. The scale
  ``c`` is the problem, so that one compiled meta-step serves every scale
  (set it in ``state.inner.problem``)."""
  name = 'unused_leaf'

  def __init__(self, scale):
    self.scale = scale

  def init_params(self, key):
    return {'w': jax.random.normal(key, (3,)), 'unused': jnp.zeros(2)}

  def sample_problem(self, key):
    del key
    return jnp.asarray(self.scale, jnp.float32)

  def loss(self, params, problem, key):
    del key
    return problem * (jnp.sum(jnp.sin(params['w'])**2) + 0.1)

  def full_loss(self, params, problem):
    return self.loss(params, problem, None)


def _fresh(design, key=KEY, hidden_size=4):
  """Fresh meta-params whose read-out is not zero, so that every leaf of
  the LSTM has a meta-gradient."""
  meta_params = l2l.init_meta_params(key, design=design,
                                     hidden_size=hidden_size)
  kernel = meta_params['params']['output']['kernel']
  meta_params['params']['output']['kernel'] = 0.1 * jax.random.normal(
      jax.random.key(1), kernel.shape)
  return meta_params


def _meta_state(task, meta_params, meta_optimizer, num_tasks=2):
  inner = l2l.init_inner_states(task, l2l.lstm_optimizer(meta_params),
                                jax.random.key(1), num_tasks)
  return l2l.MetaTrainState(meta_params, meta_optimizer.init(meta_params),
                            inner, jnp.zeros([], jnp.int32))


@pytest.mark.parametrize('design', DESIGNS + ('default',))
def test_meta_gradient_finite_with_zero_tiny_and_huge_gradients(design):
  """Loss scales 1e-20 (g^2 underflows), 1 and 1e30 (g^2 overflows), each
  two meta-steps of one compiled program: the scale is the problem."""
  meta_params = (l2l.load_meta_params('default')[0] if design == 'default'
                 else _fresh(design))
  task, meta_optimizer = _UnusedLeafTask(1.0), optax.sgd(1e-3)
  fresh = _meta_state(task, meta_params, meta_optimizer)
  step = jax.jit(functools.partial(
      l2l.meta_step, optimizer_fn=l2l.lstm_optimizer,
      meta_optimizer=meta_optimizer, unroll_length=5, log_losses=True),
                 static_argnums=1)
  for scale in (1e-20, 1.0, 1e30):
    problem = jnp.full_like(fresh.inner.problem, scale)
    assert float(problem[0]) == np.float32(scale)  # neither 0 nor inf
    state = fresh._replace(inner=fresh.inner._replace(problem=problem))
    for i in range(2):
      state, metrics = step(state, task, jax.random.key(i))
      assert not metrics['skipped'], (design, scale, i)
      assert np.isfinite(metrics['grad_norm']) and metrics['grad_norm'] > 0, (
          design, scale, i)
      # the problem is kept, so the scale is the one under test
      assert float(state.inner.problem[0]) == np.float32(scale)


@pytest.mark.parametrize('name', ['default', 'paper2016'])
def test_x64_loads_and_keeps_dtypes(name):
  with jax.enable_x64(True):
    meta_params, _ = l2l.load_meta_params(name)
    assert {x.dtype for x in jax.tree.leaves(meta_params)} == {jnp.dtype('float32')}
    for design in DESIGNS:
      fresh = l2l.init_meta_params(KEY, design=design)
      assert {x.dtype for x in jax.tree.leaves(fresh)} == {jnp.dtype('float32')}
    opt = l2l.lstm_optimizer(name)
    params = {'d': jnp.linspace(-1.0, 1.0, 3, dtype=jnp.float64),
              's': jnp.ones(2, jnp.float32)}
    state = opt.init(params)
    updates, new_state = jax.jit(opt.update)(params, state, params)
    assert updates['d'].dtype == jnp.float64
    assert updates['s'].dtype == jnp.float32
    assert state.cell[0]['d'].dtype == jnp.float64
    assert state.cell[0]['s'].dtype == jnp.float32
    chex_dtypes = lambda tree: [x.dtype for x in jax.tree.leaves(tree)]
    assert chex_dtypes(new_state) == chex_dtypes(state)


def test_x64_params_are_trained_in_float64():
  """A fresh adaptive optimizer is Adam: in float64 it agrees with optax's
  float64 Adam far below float32 rounding."""
  with jax.enable_x64(True):
    meta_params = l2l.init_meta_params(KEY, design='adaptive')
    lr = float(jnp.exp(meta_params['nominal']['log_lr'].astype(jnp.float64)))
    ours, adam = l2l.lstm_optimizer(meta_params), optax.adam(lr, eps=1e-8)
    params = {'w': jnp.linspace(-2.0, 3.0, 7, dtype=jnp.float64)}
    loss = lambda p: jnp.sum(jnp.cos(p['w']) * p['w']**2)
    states, trees = [ours.init(params), adam.init(params)], [params, params]
    for _ in range(20):
      for i, opt in enumerate((ours, adam)):
        updates, states[i] = opt.update(jax.grad(loss)(trees[i]), states[i])
        trees[i] = optax.apply_updates(trees[i], updates)
    assert trees[0]['w'].dtype == jnp.float64
    np.testing.assert_allclose(trees[0]['w'], trees[1]['w'], rtol=1e-12)
    assert not np.array_equal(trees[0]['w'],  # float32 arithmetic differs
                              trees[0]['w'].astype(jnp.float32))


@pytest.mark.parametrize('step_fn', ['es_meta_step', 'meta_step'])
def test_x64_meta_steps_keep_dtypes(step_fn):
  with jax.enable_x64(True):
    task, meta_optimizer = _UnusedLeafTask(1.0), optax.adam(1e-3)
    state = _meta_state(task, _fresh('free'), meta_optimizer)
    extra = {'num_pairs': 2} if step_fn == 'es_meta_step' else {}
    step = jax.jit(functools.partial(
        getattr(l2l, step_fn), task=task, optimizer_fn=l2l.lstm_optimizer,
        meta_optimizer=meta_optimizer, unroll_length=3, **extra))
    new, metrics = step(state, key=jax.random.key(2))
    assert not metrics['skipped']
    dtypes = lambda tree: [x.dtype for x in jax.tree.leaves(tree)]
    assert dtypes(new.meta_params) == dtypes(state.meta_params)
    assert dtypes(new.meta_opt_state) == dtypes(state.meta_opt_state)


@pytest.mark.parametrize('leaf, dtype', [
    (jnp.zeros(3, jnp.complex64), 'complex64'),
    (jnp.zeros((2, 2), jnp.int32), 'int32'),
    (jnp.zeros(2, jnp.bool_), 'bool'),
])
def test_non_real_params_raise_at_init_naming_the_leaf(leaf, dtype):
  params = {'ok': jnp.ones(2), 'bad': leaf}
  with pytest.raises(ValueError, match=rf"parameter \['bad'\] has dtype "
                     rf'{dtype}'):
    l2l.lstm_optimizer().init(params)


def _updates(opt, grads, params, steps=3):
  state, out = opt.init(params), []
  for _ in range(steps):
    updates, state = jax.jit(opt.update)(grads, state, params)
    out.append(updates)
  return out


def test_inject_hyperparams_output_scale_takes_effect():
  factory = optax.inject_hyperparams(
      functools.partial(l2l.lstm_optimizer, 'paper2016'))
  params, grads = {'w': jnp.ones(3)}, {'w': jnp.full(3, 0.5)}
  base, half = (_updates(factory(output_scale=s), grads, params)
                for s in (0.1, 0.05))
  for b, h in zip(base, half):
    np.testing.assert_allclose(h['w'], b['w'] / 2, rtol=1e-6)
    assert np.all(b['w'] != 0)


@pytest.mark.parametrize('rate', [0.5, optax.linear_schedule(1.0, 0.0, 4)])
def test_learning_rate_multiplies_the_update(rate):
  params, grads = {'w': jnp.linspace(-1.0, 1.0, 4)}, {'w': jnp.ones(4)}
  base = _updates(l2l.lstm_optimizer(), grads, params)
  for injected in (False, True):
    opt = (optax.inject_hyperparams(l2l.lstm_optimizer)(learning_rate=rate)
           if injected else l2l.lstm_optimizer(learning_rate=rate))
    for count, (b, u) in enumerate(zip(base, _updates(opt, grads, params))):
      factor = rate(count) if callable(rate) else rate
      np.testing.assert_allclose(u['w'], factor * b['w'], rtol=1e-6)


def test_decoupled_weight_decay_with_mask():
  params = {'w': jnp.full(3, 2.0), 'b': jnp.full(2, 2.0)}
  grads = jax.tree.map(jnp.zeros_like, params)  # only the decay moves them
  opt = l2l.lstm_optimizer(learning_rate=0.5, weight_decay=0.1,
                           mask={'w': True, 'b': False})
  state = opt.init(params)
  updates, _ = opt.update(grads, state, params)
  np.testing.assert_allclose(updates['w'], -0.5 * 0.1 * 2.0, rtol=1e-6)
  np.testing.assert_array_equal(updates['b'], 0.0)
  # the decay shrinks the weights, unlike add_decayed_weights after l2l
  grown, _ = optax.chain(l2l.lstm_optimizer(),
                         optax.add_decayed_weights(0.1)).update(
                             grads, optax.chain(
                                 l2l.lstm_optimizer(),
                                 optax.add_decayed_weights(0.1)).init(params),
                             params)
  assert np.all(grown['w'] > 0) and np.all(updates['w'] < 0)
  with pytest.raises(ValueError, match="'compact' design reads the param"):
    opt.update(grads, state)  # the default reads params anyway
  free = l2l.lstm_optimizer(l2l.init_meta_params(jax.random.key(0),
                                                 design='free'),
                            weight_decay=0.1)
  with pytest.raises(ValueError, match='weight_decay needs the params'):
    free.update(grads, free.init(params))


def _run(opt, params, steps=4):
  state = opt.init(params)
  for _ in range(steps):
    grads = jax.tree.map(lambda p: jnp.cos(p) + 1.0, params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize('wrap', ['chain', 'masked', 'multi_steps', 'inject'])
def test_averaged_params_finds_the_state_inside_wrappers(wrap):
  params = {'w': jnp.linspace(-1.0, 1.0, 3), 'b': jnp.ones(2)}
  mask = {'w': True, 'b': False}
  bare_params, bare_state = _run(l2l.lstm_optimizer(), params)
  want = l2l.averaged_params(bare_params, bare_state, 'default')
  opt = {'chain': lambda: optax.chain(optax.identity(), l2l.lstm_optimizer()),
         'masked': lambda: optax.masked(l2l.lstm_optimizer(), mask),
         'multi_steps': lambda: optax.MultiSteps(l2l.lstm_optimizer(), 1),
         'inject': lambda: optax.inject_hyperparams(l2l.lstm_optimizer)()
         }[wrap]()
  got_params, state = _run(opt, params)
  got = l2l.averaged_params(got_params, state, 'default')
  if wrap == 'masked':  # masked-out leaves are their own average
    np.testing.assert_array_equal(got['b'], got_params['b'])
    np.testing.assert_allclose(got['w'], want['w'], rtol=1e-6)
  else:
    chex_close = functools.partial(np.testing.assert_allclose, rtol=1e-6)
    jax.tree.map(chex_close, got, want)
  assert not np.allclose(got['w'], got_params['w'])


_SHARDING_SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp, optax, l2l
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    assert len(jax.devices()) == 4
    for types in ((AxisType.Explicit,), (AxisType.Auto,)):
      mesh = jax.make_mesh((4,), ('x',), axis_types=types)
      with jax.set_mesh(mesh):
        params = {
            'a': jax.device_put(jnp.ones((8, 3)), NamedSharding(mesh, P('x', None))),
            'b': jax.device_put(jnp.ones(5), NamedSharding(mesh, P()))}
        for name in ('default', 'paper2016'):
          for opt in (l2l.lstm_optimizer(name), optax.adam(1e-3)):
            state = jax.jit(opt.init)(params)
            for _ in range(2):
              updates, state = jax.jit(opt.update)(params, state, params)
            specs = {k: (v.sharding.spec, params[k].sharding.spec)
                     for k, v in updates.items()}
            for k, (got, want) in specs.items():
              pad = lambda s, n: tuple(s) + (None,) * (n - len(s))
              assert pad(got, 2) == pad(want, 2), (types, name, k, got, want)
            print(types[0], name, type(opt).__name__, 'ok')
''')


def test_updates_keep_each_parameters_sharding():
  env = dict(os.environ,
             XLA_FLAGS=os.environ.get('XLA_FLAGS', '')
             + ' --xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', _SHARDING_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count(' ok') == 8


def test_meta_params_cache_sees_a_rewritten_file_and_the_working_directory(
    tmp_path, monkeypatch):
  first, second = (l2l.init_meta_params(jax.random.key(k), design='adaptive',
                                        nominal_lr=lr)
                   for k, lr in ((0, 0.1), (1, 0.01)))
  for d in ('a', 'b'):
    os.makedirs(tmp_path / d)
  params, grads = {'w': jnp.ones(2)}, {'w': jnp.ones(2)}
  step = lambda path: _updates(l2l.lstm_optimizer(path), grads, params, 1)[0]
  l2l.save_meta_params(tmp_path / 'a' / 'm.npz', first)
  l2l.save_meta_params(tmp_path / 'b' / 'm.npz', second)
  monkeypatch.chdir(tmp_path / 'a')
  np.testing.assert_allclose(step('m.npz')['w'], -0.1, rtol=1e-5)
  monkeypatch.chdir(tmp_path / 'b')  # same relative path, another file
  np.testing.assert_allclose(step('m.npz')['w'], -0.01, rtol=1e-5)
  os.replace(tmp_path / 'a' / 'm.npz', tmp_path / 'b' / 'm.npz')  # rewritten
  np.testing.assert_allclose(step('m.npz')['w'], -0.1, rtol=1e-5)


def test_load_and_save_by_name_and_defaults(tmp_path):
  meta_params, manifest = l2l.load_meta_params('default')
  assert manifest['config']['design'] == 'compact'
  assert manifest['meta_steps'] == 0
  with pytest.raises(l2l.CheckpointError, match="'default', 'paper2016'"):
    l2l.lstm_optimizer('defualt')
  with pytest.raises(l2l.CheckpointError, match="'default', 'paper2016'"):
    l2l.load_meta_params('defualt')
  path = tmp_path / 'm.npz'
  l2l.save_meta_params(path, meta_params)  # no config needed
  loaded, manifest = l2l.load_meta_params(path)
  assert manifest['config'] == l2l.architecture(meta_params)
  jax.tree.map(np.testing.assert_array_equal, loaded, meta_params)


def test_lstm_optimizer_docstring_counts_the_designs():
  words = {2: 'Two', 3: 'Three', 4: 'Four', 5: 'Five'}
  doc = l2l.lstm_optimizer.__doc__
  assert f'{words[len(l2l.DESIGNS)]} designs exist' in doc
  for design in l2l.DESIGNS:
    assert f"``'{design}'``" in doc, design


@pytest.mark.parametrize('design', DESIGNS)
def test_x64_updates_see_differences_below_float32_resolution(design):
  """float64 arithmetic throughout: gradients that float32 cannot tell
  apart give different updates."""
  with jax.enable_x64(True):
    opt = l2l.lstm_optimizer(_fresh(design))
    params = {'w': jnp.linspace(0.5, 1.5, 4, dtype=jnp.float64)}
    grads = {'w': jnp.linspace(-1.0, 2.0, 4, dtype=jnp.float64)}
    nudged = {'w': grads['w'] * (1 + 1e-11)}
    assert np.array_equal(grads['w'].astype(jnp.float32),
                          nudged['w'].astype(jnp.float32))
    state = opt.init(params)
    a, _ = opt.update(grads, state, params)
    b, _ = opt.update(nudged, state, params)
    assert a['w'].dtype == jnp.float64
    assert not np.array_equal(a['w'], b['w'])


def test_averaged_params_needs_the_meta_params_and_names_a_tuple():
  """The average depends on the meta-learned interpolation: no silent
  fallback to the default's; a (meta_params, manifest) tuple is named."""
  params = {'w': jnp.ones(2)}
  state = l2l.lstm_optimizer().init(params)
  with pytest.raises(TypeError, match='meta_params'):
    l2l.averaged_params(params, state)  # pylint: disable=no-value-for-parameter
  loaded = l2l.load_meta_params('default')
  for call in (lambda: l2l.lstm_optimizer(loaded),
               lambda: l2l.save_meta_params('unused.npz', loaded)):
    with pytest.raises(ValueError, match=r'\(meta_params, manifest\) tuple'):
      call()
