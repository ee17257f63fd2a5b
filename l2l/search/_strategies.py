"""Search strategies behind one ask/tell interface, as pure JAX functions.

A strategy is a :class:`Strategy` of three pure functions over a pytree
state, so the loop ``ask -> evaluate -> tell`` runs under ``jit`` and, for
a lookup evaluation, inside one ``lax.scan`` vmapped over search seeds
(:func:`simulate`). Configurations are int32 option indices of shape
``(batch_size, num_choices)``; fitness is float, larger is better (e.g.
validation accuracy).
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2l.search._space import Space

Array = jax.Array


class Strategy(NamedTuple):
  """An ask/tell search strategy (evosax and Optuna style).

  Attributes:
    name: The strategy's name.
    batch_size: Configurations per ``ask``.
    init: ``init(key) -> state``.
    ask: ``ask(key, state) -> (configs, state)``; ``configs`` int32
      ``(batch_size, num_choices)``.
    tell: ``tell(state, configs, fitness) -> state``; ``fitness`` float32
      ``(batch_size,)``, larger is better.
  """
  name: str
  batch_size: int
  init: Callable[[Array], Any]
  ask: Callable[[Array, Any], tuple[Array, Any]]
  tell: Callable[[Any, Array, Array], Any]


def _check(space: Space, batch_size: int):
  if not isinstance(space, Space):
    raise TypeError(f'space must be an l2l.search.Space, got {type(space).__name__}.')
  if int(batch_size) < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}.')


def sample_configs(key: Array, space: Space, num: int) -> Array:
  """Draws ``num`` configurations uniformly: int32 ``(num, num_choices)``."""
  options = jnp.asarray(space.num_options, jnp.float32)[None, :]
  u = jax.random.uniform(key, (num, len(space.choices)))
  return jnp.minimum(jnp.floor(u * options), options - 1).astype(jnp.int32)


def mutate(key: Array, space: Space, configs: Array) -> Array:
  """Changes one choice (among those with 2+ options) of each configuration
  to a different option, uniformly; the mutation of Real et al. (2019)."""
  options = jnp.asarray(space.num_options, jnp.int32)
  mutable = options > 1
  key_which, key_shift = jax.random.split(key)
  logits = jnp.where(mutable, 0.0, -jnp.inf)
  which = jax.random.categorical(key_which, logits, shape=configs.shape[:1])
  n = options[which]
  shift = jax.random.randint(key_shift, configs.shape[:1], 1, jnp.maximum(n, 2))
  rows = jnp.arange(configs.shape[0])
  new = (configs[rows, which] + shift) % n
  return configs.at[rows, which].set(jnp.where(n > 1, new, configs[rows, which]))


class RandomSearchState(NamedTuple):
  """State of :func:`random_search`: int32 ``count`` of configs told."""
  count: Array


def random_search(space: Space, batch_size: int = 1) -> Strategy:
  """Uniform random search over a space (Bergstra & Bengio, JMLR 2012).

  Args:
    space: The search space.
    batch_size: Configurations per ask.

  Returns:
    The :class:`Strategy`.
  """
  _check(space, batch_size)

  def init(key):
    del key
    return RandomSearchState(jnp.zeros((), jnp.int32))

  def ask(key, state):
    return sample_configs(key, space, batch_size), state

  def tell(state, configs, fitness):
    del fitness
    return RandomSearchState(state.count + configs.shape[0])

  return Strategy('random', int(batch_size), init, ask, tell)


class EvolutionState(NamedTuple):
  """State of :func:`regularized_evolution`.

  Attributes:
    population: int32 ``(population_size, num_choices)``, a ring buffer: the
      oldest member is overwritten first (ageing).
    fitness: float32 ``(population_size,)``.
    count: int32 number of configurations told.
  """
  population: Array
  fitness: Array
  count: Array


def regularized_evolution(space: Space, batch_size: int = 1,
                          population_size: int = 20,
                          tournament_size: int = 5) -> Strategy:
  """Regularized (ageing) evolution (Real et al., 2019).

  The first ``population_size`` configurations are random. Then each child
  copies the fittest of ``tournament_size`` members drawn without
  replacement from the population and mutates one choice
  (:func:`mutate`); each told child replaces the oldest member.

  Args:
    space: The search space.
    batch_size: Children per ask.
    population_size: ``P``, at least 2.
    tournament_size: ``S``, in ``[1, P]``.

  Returns:
    The :class:`Strategy`.

  References:
    Real, Aggarwal, Huang & Le, "Regularized Evolution for Image Classifier
    Architecture Search", AAAI 2019.
  """
  _check(space, batch_size)
  if population_size < 2 or not 1 <= tournament_size <= population_size:
    raise ValueError('Need population_size >= 2 and 1 <= tournament_size <= '
                     f'population_size, got {population_size}, {tournament_size}.')

  def init(key):
    del key
    return EvolutionState(
        jnp.zeros((population_size, len(space.choices)), jnp.int32),
        jnp.full((population_size,), -jnp.inf, jnp.float32),
        jnp.zeros((), jnp.int32))

  def ask(key, state):
    key_random, key_tournament, key_mutate = jax.random.split(key, 3)
    random = sample_configs(key_random, space, batch_size)
    draw = lambda k: jax.random.choice(k, population_size, (tournament_size,), replace=False)
    members = jax.vmap(draw)(jax.random.split(key_tournament, batch_size))
    best = members[jnp.arange(batch_size), jnp.argmax(state.fitness[members], axis=1)]
    children = mutate(key_mutate, space, state.population[best])
    full = state.count >= population_size
    return jnp.where(full, children, random), state

  def tell(state, configs, fitness):
    slots = (state.count + jnp.arange(configs.shape[0])) % population_size
    return EvolutionState(state.population.at[slots].set(configs.astype(jnp.int32)),
                          state.fitness.at[slots].set(fitness.astype(jnp.float32)),
                          state.count + configs.shape[0])

  return Strategy('evolution', int(batch_size), init, ask, tell)


class BayesOptState(NamedTuple):
  """State of :func:`bayesian_optimisation`.

  Attributes:
    configs: int32 ``(max_trials, num_choices)``, the observations so far
      in the first ``count`` rows.
    fitness: float32 ``(max_trials,)``.
    count: int32 number of configurations told.
  """
  configs: Array
  fitness: Array
  count: Array


def one_hot_encoding(space: Space, configs: Array) -> Array:
  """Concatenated one-hot encoding, float32 ``(..., sum(num_options))``."""
  return jnp.concatenate([jax.nn.one_hot(configs[..., d], n, dtype=jnp.float32)
                          for d, n in enumerate(space.num_options)], axis=-1)


def _gp_fit(hamming_train, y_train, mask, lengthscale, noise):
  """Masked GP fit of standardised targets: ``(cholesky, alpha, log_lik)``.

  The kernel is ``exp(-hamming / lengthscale)`` between configurations, a
  product of per-choice exponential kernels on the one-hot encoding, hence
  positive definite. Rows outside ``mask`` are decoupled (unit diagonal,
  zero target) so the buffer keeps a static shape.
  """
  m = mask.astype(jnp.float32)
  k_train = jnp.exp(-hamming_train / lengthscale) * m[:, None] * m[None, :]
  k_train = k_train + jnp.diag(noise * m + (1.0 - m))
  chol = jnp.linalg.cholesky(k_train)
  alpha = jax.scipy.linalg.cho_solve((chol, True), y_train * m)
  log_lik = (-0.5 * jnp.dot(y_train * m, alpha) - jnp.sum(jnp.log(jnp.diag(chol))))
  return chol, alpha, log_lik


def _gp_predict(chol, alpha, hamming_cross, mask, lengthscale):
  """Posterior mean and standard deviation at the candidates."""
  k_cross = jnp.exp(-hamming_cross / lengthscale) * mask.astype(jnp.float32)[None, :]
  v = jax.scipy.linalg.solve_triangular(chol, k_cross.T, lower=True)
  return k_cross @ alpha, jnp.sqrt(jnp.maximum(1.0 - jnp.sum(v * v, 0), 1e-12))


def expected_improvement(mean: Array, std: Array, best: Array) -> Array:
  """EI of a maximisation: ``(mu - best) Phi(z) + sigma phi(z)``, ``z = (mu - best) / sigma``."""
  z = (mean - best) / std
  return (mean - best) * jax.scipy.stats.norm.cdf(z) + std * jax.scipy.stats.norm.pdf(z)


def bayesian_optimisation(space: Space, batch_size: int = 1, max_trials: int = 256,
                          num_initial: int = 10, num_candidates: int = 512,
                          lengthscales=(0.5, 1.0, 2.0, 4.0, 8.0),
                          noises=(1e-3, 1e-2, 1e-1)) -> Strategy:
  """Bayesian optimisation: a Gaussian process with expected improvement.

  After ``num_initial`` random configurations, each ask fits a GP to the
  standardised fitness (kernel ``exp(-hamming / l)`` on the one-hot
  encoding; ``l`` and the noise variance chosen among ``lengthscales`` x
  ``noises`` by marginal likelihood) and returns the ``batch_size``
  candidates of highest expected improvement among ``num_candidates``: half
  uniform, half one- and two-choice mutations of the best observations.

  Args:
    space: The search space.
    batch_size: Configurations per ask.
    max_trials: Capacity of the observation buffer; later tells overwrite
      the oldest observations.
    num_initial: Random configurations before the GP is used.
    num_candidates: Candidates scored by EI per ask, at least ``batch_size``.
    lengthscales: Grid of kernel lengthscales, in changed choices.
    noises: Grid of noise variances, relative to the standardised signal.

  Returns:
    The :class:`Strategy`.

  References:
    Jones, Schonlau & Welch, "Efficient Global Optimization of Expensive
    Black-Box Functions", 1998; Kandasamy et al., "Neural Architecture
    Search with Bayesian Optimisation and Optimal Transport", NeurIPS 2018.
  """
  _check(space, batch_size)
  if num_candidates < batch_size or max_trials < 2 or num_initial < 1:
    raise ValueError('Need num_candidates >= batch_size, max_trials >= 2 and '
                     f'num_initial >= 1, got {num_candidates}, {max_trials}, {num_initial}.')
  grid_l, grid_n = np.meshgrid(np.asarray(lengthscales, np.float32),
                               np.asarray(noises, np.float32))
  grid_l, grid_n = jnp.asarray(grid_l.ravel()), jnp.asarray(grid_n.ravel())

  def init(key):
    del key
    return BayesOptState(jnp.zeros((max_trials, len(space.choices)), jnp.int32),
                         jnp.zeros((max_trials,), jnp.float32), jnp.zeros((), jnp.int32))

  def candidates(key, state, mask):
    key_random, key_parent, key_m1, key_m2 = jax.random.split(key, 4)
    half = num_candidates // 2
    random = sample_configs(key_random, space, num_candidates - half)
    top = jnp.argsort(jnp.where(mask, -state.fitness, jnp.inf))[:8]
    parents = state.configs[jax.random.choice(key_parent, top, (half,))]
    once = mutate(key_m1, space, parents)
    twice = mutate(key_m2, space, once)
    local = jnp.where(jnp.arange(half)[:, None] % 2 == 0, once, twice)
    return jnp.concatenate([random, local])

  def ask(key, state):
    key_random, key_candidates = jax.random.split(key)
    mask = jnp.arange(max_trials) < jnp.minimum(state.count, max_trials)
    mean_y = jnp.sum(state.fitness * mask) / jnp.maximum(mask.sum(), 1)
    std_y = jnp.sqrt(jnp.sum(((state.fitness - mean_y) * mask) ** 2)
                     / jnp.maximum(mask.sum(), 1))
    y = (state.fitness - mean_y) / jnp.maximum(std_y, 1e-6)
    x = one_hot_encoding(space, state.configs)
    cands = candidates(key_candidates, state, mask)
    x_cands = one_hot_encoding(space, cands)
    # Hamming distance = choices - matching one-hot entries.
    num_choices = float(len(space.choices))
    hamming_train = num_choices - x @ x.T
    hamming_cross = num_choices - x_cands @ x.T
    fit = jax.vmap(lambda l, n: _gp_fit(hamming_train, y, mask, l, n))
    chols, alphas, log_liks = fit(grid_l, grid_n)
    pick = jnp.argmax(log_liks)  # Type-II maximum likelihood over the grid.
    mean, std = _gp_predict(chols[pick], alphas[pick], hamming_cross, mask, grid_l[pick])
    best = jnp.max(jnp.where(mask, y, -jnp.inf))
    ei = expected_improvement(mean, std, best)
    chosen = cands[jax.lax.top_k(ei, batch_size)[1]]
    random = sample_configs(key_random, space, batch_size)
    return jnp.where(state.count >= num_initial, chosen, random), state

  def tell(state, configs, fitness):
    slots = (state.count + jnp.arange(configs.shape[0])) % max_trials
    return BayesOptState(state.configs.at[slots].set(configs.astype(jnp.int32)),
                         state.fitness.at[slots].set(fitness.astype(jnp.float32)),
                         state.count + configs.shape[0])

  return Strategy('bayesian', int(batch_size), init, ask, tell)


def simulate(strategy: Strategy, evaluate: Callable[[Array, Array], Array],
             key: Array, num_steps: int) -> tuple[Array, Array]:
  """Runs ``num_steps`` ask/evaluate/tell rounds in one ``lax.scan``.

  For evaluations that are pure JAX functions, such as a lookup in a
  tabular benchmark; vmap it over keys for many search seeds.

  Args:
    strategy: The strategy.
    evaluate: ``evaluate(configs, key) -> fitness`` float32 ``(batch_size,)``.
    key: The search seed.
    num_steps: Number of asks (trials = ``num_steps * batch_size``).

  Returns:
    ``(configs, fitness)`` of shapes ``(num_steps, batch_size, num_choices)``
    and ``(num_steps, batch_size)``, in the order they were asked.
  """
  key_init, key_loop = jax.random.split(key)

  def step(state, key):
    key_ask, key_eval = jax.random.split(key)
    configs, state = strategy.ask(key_ask, state)
    fitness = evaluate(configs, key_eval).astype(jnp.float32)
    return strategy.tell(state, configs, fitness), (configs, fitness)

  _, (configs, fitness) = jax.lax.scan(
      step, strategy.init(key_init), jax.random.split(key_loop, num_steps))
  return configs, fitness
