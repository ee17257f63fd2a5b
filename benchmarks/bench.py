"""Cost of the learned optimizer against optax.adam, measured in one run.

  python benchmarks/bench.py [--sizes 1e5 1e6] [--repeats N]

Prints the median time of one jitted update (flat vector and MLP-like tree),
state bytes per parameter, and meta-training throughput in inner steps/s.
Read the ratios: both sides are timed in turn in the same process.
"""

import argparse
import functools
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import l2l
import tasks

ADAM_LR = 1e-3
NUM_LAYERS = 10  # the tree has a weight and a bias per layer


def median_ms(steps, states, repeats: int) -> list[float]:
  """Median ms of each ``state = step(state)``, the steps taken in turn.

  Each step runs twice first (compile, allocate); one that runs out of memory
  there gets NaN. Taking turns spreads the machine's noise over all alike.
  """
  states, live = list(states), []
  for i, step in enumerate(steps):
    try:
      for _ in range(2):
        states[i] = jax.block_until_ready(step(states[i]))
      live.append(i)
    except jax.errors.JaxRuntimeError as e:
      print(f'  skipped a step: {str(e).splitlines()[0][:100]}')
      states[i] = None
  times = {i: [] for i in live}
  for _ in range(repeats):
    for i in live:
      start = time.perf_counter()
      states[i] = jax.block_until_ready(steps[i](states[i]))
      times[i].append(time.perf_counter() - start)
  return [1e3 * statistics.median(times[i]) if i in times else float('nan')
          for i in range(len(steps))]


def tree_params(size: int):
  """An MLP-like dict of ``2 * NUM_LAYERS`` (+1) leaves, ``size`` in all."""
  width = max(1, int((size / NUM_LAYERS) ** 0.5))
  rows = max(1, size // NUM_LAYERS // width - 1)
  params = {f'layer_{i:02d}': {'w': jnp.zeros((rows, width), jnp.float32),
                               'b': jnp.zeros((width,), jnp.float32)}
            for i in range(NUM_LAYERS)}
  rest = size - NUM_LAYERS * (rows + 1) * width
  if rest > 0:
    params['rest'] = jnp.zeros((rest,), jnp.float32)
  return params


def update_step(make_opt, hyper, params):
  """``carry -> carry``: one jitted ``update`` that donates the state.

  The first call makes the state, inside the out-of-memory guard.
  """
  grads = jax.tree.map(
      lambda p: jax.random.normal(jax.random.key(1), p.shape, p.dtype), params)
  # params are passed (the compact design reads them; the others ignore them)
  update = jax.jit(lambda h, g, s, p: make_opt(h).update(g, s, p),
                   donate_argnums=2)
  return lambda carry: update(
      hyper, grads, make_opt(hyper).init(params) if carry is None else carry[1],
      params)


def bytes_per_param(make_opt, hyper, params) -> float:
  state = jax.eval_shape(make_opt(hyper).init, params)
  num_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  return num_bytes / sum(p.size for p in jax.tree.leaves(params))


def temp_bytes_per_param(make_opt, hyper, params) -> float:
  """Bytes of compiled temporaries one jitted ``update`` allocates, per
  parameter (XLA's memory analysis; NaN where the backend gives none)."""
  state = jax.eval_shape(make_opt(hyper).init, params)
  update = jax.jit(lambda h, g, s: make_opt(h).update(g, s, g))
  analysis = update.lower(hyper, params, state).compile().memory_analysis()
  if analysis is None:
    return float('nan')
  return analysis.temp_size_in_bytes / sum(
      p.size for p in jax.tree.leaves(params))


def update_rows(sizes, repeats, meta_params):
  """Rows of (params, layout, leaves, repeats, ms and bytes/param per opt)."""
  rows = []
  opts = ((l2l.lstm_optimizer, meta_params),
          (optax.adam, jnp.float32(ADAM_LR)))
  for size in sizes:
    n = repeats or max(3, min(20, int(1e7 / size)))
    for layout, make in (('flat', lambda s: jnp.zeros((s,), jnp.float32)),
                         ('tree', tree_params)):
      params = make(size)
      ms = median_ms([update_step(m, h, params) for m, h in opts],
                     [None] * len(opts), n)
      rows.append((sum(p.size for p in jax.tree.leaves(params)), layout,
                   len(jax.tree.leaves(params)), n, *ms,
                   *(bytes_per_param(m, h, params) for m, h in opts),
                   *(temp_bytes_per_param(m, h, params) for m, h in opts)))
  return rows


def meta_rows(task, num_tasks, unroll_length, repeats):
  """Inner steps/s of the meta-step, a learned unroll, and an Adam unroll."""
  key_meta, key_inner, key_step = jax.random.split(jax.random.key(0), 3)
  meta_optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                               optax.adam(3e-3))
  meta_params = l2l.init_meta_params(key_meta)
  meta_step = jax.jit(functools.partial(
      l2l.meta_step, optimizer_fn=l2l.lstm_optimizer,
      meta_optimizer=meta_optimizer, unroll_length=unroll_length,
      log_losses=True), donate_argnums=0)
  state = l2l.MetaTrainState(
      meta_params, meta_optimizer.init(meta_params),
      l2l.init_inner_states(task, l2l.lstm_optimizer(meta_params), key_inner,
                            num_tasks), jnp.zeros([], jnp.int32))

  @functools.partial(jax.jit, static_argnums=0, donate_argnums=2)
  def unroll(make_opt, hyper, inner, task):
    run = lambda s: l2l.unroll(hyper, task, s, optimizer_fn=make_opt,
                               unroll_length=unroll_length)
    return jax.vmap(run)(inner)[1]

  # meta_step donates its meta_params, so the unroll gets its own copy.
  opts = ((l2l.lstm_optimizer, l2l.init_meta_params(key_meta)),
          (optax.adam, jnp.float32(ADAM_LR)))
  steps = [lambda s: meta_step(s, task, key_step)[0]] + [
      functools.partial(unroll, m, h, task=task) for m, h in opts]
  inners = [l2l.init_inner_states(task, m(h), key_inner, num_tasks)
            for m, h in opts]
  ms = median_ms(steps, [state] + inners, repeats)
  names = ('meta-step (lstm + meta-grad)', 'unroll lstm (no meta-grad)',
           'unroll adam')
  return [(name, t, num_tasks * unroll_length / (t / 1e3), ms[-1] / t)
          for name, t in zip(names, ms)]


def print_update_table(rows):
  print('\n1-2. one jitted update (donated state), median ms; '
        'state bytes per parameter')
  print(f'{"params":>11} {"layout":>6} {"leaves":>6} {"reps":>4} '
        f'{"lstm ms":>10} {"adam ms":>10} {"lstm/adam":>9} '
        f'{"lstm B/p":>9} {"adam B/p":>9} {"lstm tmp B/p":>12} '
        f'{"adam tmp B/p":>12}')
  flat_ms, budgets = {}, {}
  for num, layout, leaves, n, lstm, adam, lstm_b, adam_b, lstm_t, adam_t in (
      rows):
    print(f'{num:>11,} {layout:>6} {leaves:>6} {n:>4} {lstm:>10.3f} '
          f'{adam:>10.3f} {lstm / adam:>9.1f} {lstm_b:>9.2f} {adam_b:>9.2f} '
          f'{lstm_t:>12.1f} {adam_t:>12.1f}')
    budgets['state B/p'] = max(budgets.get('state B/p', 0.0), lstm_b)
    if layout == 'flat':
      flat_ms[num] = lstm
      budgets[f'flat {num:.0e} /adam'] = lstm / adam
    elif num in flat_ms:
      print(f'{"":>11} tree/flat lstm: {lstm / flat_ms[num]:.2f}')
      budgets[f'tree/flat {num:.0e}'] = lstm / flat_ms[num]
  print_budgets(budgets)


#: Issue 16's budgets for a learned optimizer: state bytes per float32
#: parameter, one update of 1e6 parameters against optax.adam, and a
#: 21-leaf tree against a flat vector of the same size.
BUDGETS = {'state B/p': 32.0, 'flat 1e+06 /adam': 10.0,
           'tree/flat 1e+06': 1.3}


def print_budgets(measured: dict) -> None:
  """One line per budget: the measured value, the bound, within or not."""
  print('   budgets (state bytes are exact; time ratios need a quiet machine):')
  for name, bound in BUDGETS.items():
    value = measured.get(name)
    verdict = ('not measured' if value is None else
               'within' if value <= bound else 'OVER')
    shown = 'n/a' if value is None else f'{value:.2f}'
    print(f'     {name:<18} {shown:>8} <= {bound:<5g} {verdict}')


def print_meta_table(args, repeats):
  print(f'\n3. meta-training throughput: {args.num_tasks} tasks x '
        f'{args.unroll_length} inner steps per call, median of {repeats}')
  print(f'{"":<30} {"ms/call":>9} {"inner steps/s":>14} {"vs adam":>8}')
  for name in args.families:
    try:
      task = tasks.get_family(name).sample_task(np.random.default_rng(0))
      num_params = sum(p.size for p in jax.tree.leaves(
          task.init_params(jax.random.key(0))))
      print(f'{name} ({task.name}, {num_params:,} params)')
      for what, ms, per_s, ratio in meta_rows(
          task, args.num_tasks, args.unroll_length, repeats):
        print(f'  {what:<28} {ms:>9.2f} {per_s:>14,.0f} {ratio:>8.3f}')
    except (ValueError, FileNotFoundError) as e:  # e.g. no local data files
      print(f'{name}: skipped ({type(e).__name__}: {e})')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', type=float, nargs='+',
                      help='parameter counts (default 1e5 1e6, and 1e7 1e8 '
                      'on an accelerator)')
  parser.add_argument('--repeats', type=int,
                      help='timed repeats (default 20 at 1e5, fewer above)')
  parser.add_argument('--num-tasks', type=int, default=16)
  parser.add_argument('--unroll-length', type=int, default=20)
  parser.add_argument('--families', nargs='+',
                      default=['quadratic', 'mnist1d_mlp'])
  parser.add_argument('--designs', nargs='+', default=list(l2l.DESIGNS),
                      help='learned-optimizer designs to time updates of '
                      '(random meta-params), or shipped names (default, '
                      'paper2016)')
  args = parser.parse_args(argv)
  sizes = args.sizes or [1e5, 1e6] + (
      [1e7, 1e8] if jax.default_backend() != 'cpu' else [])
  begin = time.perf_counter()
  print(f'command: {" ".join([sys.executable] + sys.argv)}')
  print(f'jax {jax.__version__}, optax {optax.__version__}, backend '
        f'{jax.default_backend()}, devices {jax.devices()}, '
        f'{os.cpu_count()} cpus, {platform.platform()}')
  for design in args.designs:
    if design in l2l.DESIGNS:
      meta_params, what = l2l.init_meta_params(
          jax.random.key(0), design=design), 'random meta-params'
    else:
      meta_params, what = l2l.load_meta_params(design)[0], f'{design!r}'
    print(f'\nlearned optimizer: {l2l.architecture(meta_params)}, {what}; '
          'adam: optax.adam(1e-3)')
    print_update_table(update_rows([int(s) for s in sizes], args.repeats,
                                   meta_params))
  print_meta_table(args, args.repeats or 10)
  print(f'\ntotal {time.perf_counter() - begin:.1f} s')


if __name__ == '__main__':
  main()
