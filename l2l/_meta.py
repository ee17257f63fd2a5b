"""Meta-training by truncated backpropagation through unrolled inner loops.

One meta-step runs ``unroll_length`` inner optimisation steps of a batch of
problems (``lax.scan`` inside ``vmap``, all under one ``jit``), sums the
optimizee losses along the way, and takes one step of the meta-optimizer on
the meta-parameters with the gradient of that sum (Andrychowicz et al., 2016,
section 2.1). Optimizee parameters and optimizer state carry over from one
truncation to the next; the caller decides when an episode ends.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2l import _rules
from l2l._base import Array, MetaParams, OptState, Params

OptimizerFn = Callable[[MetaParams], optax.GradientTransformation]


class InnerState(NamedTuple):
  """The state of one inner training run (batched over problems in use).

  Attributes:
    params: optimizee parameters.
    opt_state: the learned optimizer's state.
    problem: the sampled problem instance (``Task.sample_problem``).
    key: PRNG key for this run's minibatches.
    step: int32 inner steps taken in this episode.
  """
  params: Params
  opt_state: OptState
  problem: Any
  key: Array
  step: Array


class MetaTrainState(NamedTuple):
  """Everything a meta-training run carries from step to step.

  Attributes:
    meta_params: the learned optimizer's weights.
    meta_opt_state: the meta-optimizer's state.
    inner: :class:`InnerState` batched over ``num_tasks`` problems.
    num_skipped: int32 meta-steps skipped for a non-finite meta-gradient.
    noise_sum: for :func:`l2l.pes_meta_step` only (set by
      :func:`l2l.pes_start`), the perturbations each antithetic pair has
      accumulated in this episode, a tree like ``meta_params`` with a
      leading ``[num_pairs]`` axis; ``()`` otherwise.
  """
  meta_params: MetaParams
  meta_opt_state: OptState
  inner: InnerState
  num_skipped: Array
  noise_sum: Any = ()


def init_inner_states(task, optimizer: optax.GradientTransformation,
                      key: Array, num_tasks: int) -> InnerState:
  """Samples ``num_tasks`` fresh problems of ``task`` with fresh params.

  Args:
    task: a ``tasks.Task``; its ``init_params`` and ``sample_problem`` are
      called once per problem.
    optimizer: the learned optimizer, whose ``init`` makes each problem's
      ``opt_state``.
    key: PRNG key, split into one key per problem (for its params, its
      problem instance and its minibatches).
    num_tasks: problems to sample.

  Returns:
    An :class:`InnerState` whose leaves have a leading axis of size
    ``num_tasks``, with ``step`` 0: the ``state.inner`` of
    :func:`meta_step` and :func:`es_meta_step`.
  """

  def init_one(key):
    problem_key, params_key, run_key = jax.random.split(key, 3)
    params = task.init_params(params_key)
    return InnerState(params, optimizer.init(params),
                      task.sample_problem(problem_key), run_key,
                      jnp.zeros([], jnp.int32))

  return jax.vmap(init_one)(jax.random.split(key, num_tasks))


def unroll(meta_params: MetaParams, task, state: InnerState, *,
           optimizer_fn: OptimizerFn, unroll_length: int,
           second_order: bool = False, remat_chunk: int | None = None
           ) -> tuple[Array, InnerState]:
  r"""Runs ``unroll_length`` inner steps of one problem.

  .. math::
    \theta_{t+1} = \theta_t + u_t, \quad
    (u_t, s_{t+1}) = \mathrm{opt}_\phi(\nabla f(\theta_t), s_t)

  Args:
    meta_params: weights :math:`\phi` of the learned optimizer.
    task: a ``tasks.Task``.
    state: this problem's :class:`InnerState` (unbatched).
    optimizer_fn: builds the optax transform from ``meta_params``.
    unroll_length: inner steps ``K`` in this truncation.
    second_order: if False, the optimizee gradient is an input treated as a
      constant (the paper's choice), dropping second derivatives.
    remat_chunk: if set, the unroll runs as ``K / remat_chunk`` chunks of
      ``remat_chunk`` steps under ``jax.checkpoint`` (rematerialisation,
      Chen et al. 2016): backpropagation keeps the carry at chunk
      boundaries and recomputes each chunk's steps, so its memory grows as
      ``K / c + c`` steps' activations instead of ``K``, for about one
      more forward pass. Values equal those without it up to float
      rounding (the chunked scan compiles differently).

  Returns:
    ``(losses, state)``: minibatch losses :math:`f(\theta_1) \dots
    f(\theta_K)` (each on the minibatch of its step) and the carried state.

  Raises:
    ValueError: ``remat_chunk`` does not divide ``unroll_length``.
  """
  if remat_chunk is not None and (
      remat_chunk < 1 or unroll_length % remat_chunk):
    raise ValueError(f'remat_chunk {remat_chunk} must be a positive divisor '
                     f'of unroll_length {unroll_length}')
  optimizer = optimizer_fn(meta_params)
  value_and_grad = jax.value_and_grad(task.loss)

  def step(carry, _):
    params, opt_state, index = carry
    key = jax.random.fold_in(state.key, index)
    loss, grads = value_and_grad(params, state.problem, key)
    if not second_order:
      grads = jax.lax.stop_gradient(grads)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, index + 1), loss

  carry = (state.params, state.opt_state, state.step)
  if remat_chunk is None:
    carry, losses = jax.lax.scan(step, carry, length=unroll_length)
  else:
    chunk = jax.checkpoint(
        lambda carry, _: jax.lax.scan(step, carry, length=remat_chunk))
    carry, losses = jax.lax.scan(chunk, carry,
                                 length=unroll_length // remat_chunk)
    losses = jnp.reshape(losses, (unroll_length,))
  params, opt_state, index = carry
  final_loss = task.loss(
      params, state.problem, jax.random.fold_in(state.key, index))
  # losses[0] is evaluated at the carried-in params and has no meta-gradient;
  # the loss after the last update takes its place.
  losses = jnp.concatenate([losses[1:], final_loss[None]])
  return losses, state._replace(params=params, opt_state=opt_state, step=index)


def _all_finite(tree) -> Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def meta_step(state: MetaTrainState, task, key: Array, *,
              optimizer_fn: OptimizerFn,
              meta_optimizer: optax.GradientTransformation,
              unroll_length: int, loss_weights: Array | None = None,
              log_losses: bool = False, second_order: bool = False,
              remat_chunk: int | None = None,
              ) -> tuple[MetaTrainState, dict[str, Array]]:
  r"""One truncated-BPTT meta-step over a batch of problems.

  .. math::
    L(\phi) = \frac{1}{B} \sum_{b=1}^{B} \sum_{t=1}^{K} w_t\, f_b(\theta_t^b)

  A non-finite meta-gradient leaves ``meta_params`` and the meta-optimizer
  state untouched and increments ``num_skipped``; problems whose inner state
  became non-finite restart from fresh parameters drawn with ``key``.

  Args:
    state: the current :class:`MetaTrainState`; ``state.inner`` is batched.
    task: the ``tasks.Task`` of every problem in the batch.
    key: PRNG key, used only to restart diverged problems.
    optimizer_fn: builds the learned optimizer from meta-parameters.
    meta_optimizer: optax transform applied to the meta-gradient.
    unroll_length: truncation length ``K``.
    loss_weights: ``[K]`` weights :math:`w_t`; ones when ``None``.
    log_losses: sum :math:`\log f` instead of :math:`f`, which balances
      problems whose losses differ by orders of magnitude.
    second_order: keep second derivatives through the optimizee gradient.
    remat_chunk: rematerialise the unroll in chunks of this many steps
      (see :func:`unroll`), for long unrolls that would not fit in memory.

  Returns:
    ``(state, metrics)`` with scalar metrics ``meta_loss``, ``final_loss``
    (mean minibatch loss after the unroll), ``grad_norm``, ``skipped`` and
    ``num_skipped``.
  """
  weights = _loss_weights(unroll_length, loss_weights)
  (loss, (losses, inner)), grads = jax.value_and_grad(
      _meta_loss, has_aux=True)(state.meta_params, task, state.inner,
                                weights, optimizer_fn=optimizer_fn,
                                unroll_length=unroll_length,
                                log_losses=log_losses,
                                second_order=second_order,
                                remat_chunk=remat_chunk)
  return _apply(state, grads, loss, losses, inner, task, key,
                optimizer_fn=optimizer_fn, meta_optimizer=meta_optimizer)


def _meta_loss(meta_params, task, inner: InnerState, weights: Array, *,
               optimizer_fn, unroll_length, log_losses, second_order=False,
               remat_chunk=None):
  """Mean over problems of the weighted (log) losses of one truncation."""
  run = lambda s: unroll(meta_params, task, s, optimizer_fn=optimizer_fn,
                         unroll_length=unroll_length,
                         second_order=second_order, remat_chunk=remat_chunk)
  losses, inner = jax.vmap(run)(inner)
  return jnp.mean(_weighted(losses, weights, log_losses)), (losses, inner)


def _loss_weights(unroll_length: int, loss_weights) -> Array:
  """The ``[K]`` float32 weights of a truncation's losses (ones if None)."""
  return (jnp.ones(unroll_length, jnp.float32) if loss_weights is None
          else jnp.asarray(loss_weights, jnp.float32))


def _weighted(losses: Array, weights: Array, log_losses: bool) -> Array:
  """Each run's weighted sum of its ``[..., K]`` (log) losses."""
  terms = jnp.log(jnp.maximum(losses, 1e-30)) if log_losses else losses
  return terms @ weights


def _step_counts(meta_params) -> list[bool]:
  """Per leaf of ``meta_params`` (flattened), whether it is a step count
  (``_rules.STEP_COUNTS``), which no meta-step moves."""
  return [any(getattr(k, 'key', None) in _rules.STEP_COUNTS for k in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(meta_params)[0]]


def _meta_update(state: MetaTrainState, grads, loss: Array,
                 meta_optimizer: optax.GradientTransformation):
  """A meta-optimizer step unless the estimate is non-finite; step counts
  keep their values. Returns ``(meta_params, meta_opt_state, finite,
  grads)``, the grads cast like the meta-params."""
  # Under jax_enable_x64 an estimate can come out float64; keep the dtypes
  # of the meta-params and of the meta-optimizer's state.
  grads = optax.tree.cast_like(grads, state.meta_params)
  finite = _all_finite(grads) & jnp.isfinite(loss)
  updates, meta_opt_state = meta_optimizer.update(
      grads, state.meta_opt_state, state.meta_params)
  keep = lambda new, old: jax.tree.map(
      lambda n, o: jnp.where(finite, n, o), new, old)
  leaves, treedef = jax.tree.flatten(
      optax.apply_updates(state.meta_params, updates))
  moved = treedef.unflatten([
      old if fixed else new for new, old, fixed in zip(
          leaves, jax.tree.leaves(state.meta_params),
          _step_counts(state.meta_params))])
  return (keep(moved, state.meta_params),
          keep(meta_opt_state, state.meta_opt_state), finite, grads)


def _metrics(loss, losses, grads, finite, num_skipped) -> dict[str, Array]:
  return {'meta_loss': loss, 'final_loss': jnp.mean(losses[:, -1]),
          'grad_norm': optax.tree.norm(grads), 'skipped': ~finite,
          'num_skipped': num_skipped}


def _apply(state: MetaTrainState, grads, loss: Array, losses: Array,
           inner: InnerState, task, key: Array, *, optimizer_fn,
           meta_optimizer) -> tuple[MetaTrainState, dict[str, Array]]:
  """Takes a meta-optimizer step unless the estimate is non-finite (step
  counts keep their values) and restarts diverged problems."""
  meta_params, meta_opt_state, finite, grads = _meta_update(
      state, grads, loss, meta_optimizer)
  inner = _restart_diverged(inner, losses[:, -1], task,
                            optimizer_fn(meta_params), key)
  num_skipped = state.num_skipped + (~finite).astype(jnp.int32)
  return MetaTrainState(meta_params, meta_opt_state, inner, num_skipped), (
      _metrics(loss, losses, grads, finite, num_skipped))


def es_meta_step(state: MetaTrainState, task, key: Array, *,
                 optimizer_fn: OptimizerFn,
                 meta_optimizer: optax.GradientTransformation,
                 unroll_length: int, num_pairs: int = 8, sigma: float = 0.01,
                 loss_weights: Array | None = None, log_losses: bool = False,
                 trainable: Any = None, fitness: str = 'difference',
                 ) -> tuple[MetaTrainState, dict[str, Array]]:
  r"""One meta-step with an antithetic evolution-strategies gradient.

  .. math::
    \hat\nabla L(\phi) = \frac{1}{2 \sigma^2 P} \sum_{p=1}^{P}
      \big(L(\phi + \epsilon_p) - L(\phi - \epsilon_p)\big)\,\epsilon_p,
    \qquad \epsilon_p \sim \mathcal{N}(0, \sigma^2 I)

  estimates the gradient of the Gaussian-smoothed meta-loss of
  :func:`meta_step` from forward unrolls only. Every perturbation runs the
  same problems and minibatches (common random numbers). Unlike
  backpropagation through a long unroll it is not misled by the chaotic,
  high-curvature meta-loss surfaces of long unrolls, and unlike the paper's
  first-order gradient it is unbiased for the smoothed loss (Metz et al.,
  2019, "Understanding and correcting pathologies in the training of
  learned optimizers"). Within one truncation it keeps the short-horizon
  bias of truncation, so use it with ``unroll_length`` equal to the episode
  length. The inner state then advances with the unperturbed
  meta-parameters. A perturbation whose unroll diverges scores as worse
  than every finite one, so the estimate points away from divergence.

  Args:
    state: the current :class:`MetaTrainState`; ``state.inner`` is batched.
    task: the ``tasks.Task`` of every problem in the batch.
    key: PRNG key for the perturbations and for restarting diverged
      problems.
    optimizer_fn: builds the learned optimizer from meta-parameters.
    meta_optimizer: optax transform applied to the gradient estimate.
    unroll_length: inner steps ``K`` per evaluation.
    num_pairs: antithetic pairs ``P``.
    sigma: perturbation scale :math:`\sigma`.
    loss_weights: ``[K]`` weights; ones when ``None``.
    log_losses: sum :math:`\log f` instead of :math:`f`.
    trainable: optional tree of Python bools shaped like the meta-params
      (or, to mark part of a leaf, numpy bool arrays shaped like it), or a
      function from meta-params to one; only what is marked True is
      perturbed, the rest gets a zero estimate. Fewer perturbed dimensions
      give a less noisy estimate. Step counts (the free design's
      ``second_moment_warmup``) are never perturbed.
    fitness: ``'difference'`` uses the loss differences above;
      ``'rank'`` replaces the :math:`2P` losses by their centred ranks in
      :math:`[-1/2, 1/2]` first (Salimans et al., 2017), so the step no
      longer depends on the loss scale of the problem at hand: with a
      mixture of task families, one whose losses move by large factors
      (a quadratic) does not outweigh the others.

  Returns:
    ``(state, metrics)`` as for :func:`meta_step`; ``meta_loss`` is that of
    the unperturbed meta-parameters.
  """
  if num_pairs < 1 or not sigma > 0:
    raise ValueError(f'es_meta_step needs num_pairs >= 1 and sigma > 0, got '
                     f'{num_pairs} and {sigma}')
  if fitness not in ES_FITNESS:
    raise ValueError(f'fitness must be one of {ES_FITNESS}, got {fitness!r}')
  weights = _loss_weights(unroll_length, loss_weights)
  noise_key, restart_key = jax.random.split(key)
  noise = _antithetic_noise(state.meta_params, noise_key, num_pairs, sigma,
                            trainable)
  evaluate = lambda meta_params: _meta_loss(
      meta_params, task, state.inner, weights, optimizer_fn=optimizer_fn,
      unroll_length=unroll_length, log_losses=log_losses)
  shifted = lambda sign: jax.vmap(lambda eps: evaluate(jax.tree.map(
      lambda p, e: p + sign * e, state.meta_params, eps))[0])(noise)
  plus, minus = shifted(1.0), shifted(-1.0)
  difference = (_centred_rank_difference(plus, minus) if fitness == 'rank'
                else _rank_diverged(plus, minus))
  grads = jax.tree.map(
      lambda e: jnp.tensordot(difference, e, axes=1) / (
          2 * sigma**2 * num_pairs), noise)
  loss, (losses, inner) = evaluate(state.meta_params)
  return _apply(state, grads, loss, losses, inner, task, restart_key,
                optimizer_fn=optimizer_fn, meta_optimizer=meta_optimizer)


def _antithetic_noise(meta_params, key: Array, num_pairs: int, sigma: float,
                      trainable):
  """``[num_pairs, *leaf]`` Gaussian perturbations of scale ``sigma`` per
  leaf of ``meta_params``; zeros on leaves that ``trainable`` leaves out
  and on step counts."""
  leaves, treedef = jax.tree.flatten(meta_params)
  if callable(trainable):
    trainable = trainable(meta_params)
  mask = ([True] * len(leaves) if trainable is None
          else treedef.flatten_up_to(trainable))
  mask = [False if fixed else m
          for m, fixed in zip(mask, _step_counts(meta_params))]
  def draw(k, x, m):
    shape = (num_pairs,) + jnp.shape(x)
    if not np.any(m):
      return jnp.zeros(shape, jnp.float32)
    noise = sigma * jax.random.normal(k, shape, jnp.float32)
    if np.ndim(m):
      noise = noise * np.asarray(m, np.float32)[None]
    return noise
  return treedef.unflatten([
      draw(k, x, m) for k, x, m in zip(
          jax.random.split(key, len(leaves)), leaves, mask)])


#: The fitness shapings of :func:`l2l.es_meta_step`, its ``fitness``
#: argument: ``'difference'`` or ``'rank'``.
ES_FITNESS = ('difference', 'rank')


def _centred_rank_difference(plus: Array, minus: Array) -> Array:
  """Differences of the centred ranks of ``plus`` and ``minus`` together.

  The :math:`2P` scores are ranked (a non-finite one last), each rank
  :math:`r \\in \\{0, \\dots, 2P - 1\\}` becomes :math:`r / (2P - 1) - 1/2`,
  and ties share the mean of their ranks. If no score is finite the
  differences are non-finite and the step is skipped, as with
  :func:`_rank_diverged`.
  """
  scores = jnp.concatenate([plus, minus])
  finite = jnp.isfinite(scores)
  scores = jnp.where(finite, scores, jnp.inf)
  below = jnp.sum(scores[None, :] < scores[:, None], axis=1)
  ties = jnp.sum(scores[None, :] == scores[:, None], axis=1)
  centred = (below + (ties - 1) / 2) / (scores.shape[0] - 1) - 0.5
  centred = jnp.where(jnp.any(finite), centred, jnp.nan)
  return centred[:plus.shape[0]] - centred[plus.shape[0]:]


def _rank_diverged(plus: Array, minus: Array) -> Array:
  """``plus - minus``, scoring a diverged run as worse than every finite one.

  A non-finite loss becomes the largest finite loss of the batch plus one;
  if no run is finite the difference is non-finite and the step skipped.
  """
  scores = jnp.concatenate([plus, minus])
  finite = jnp.isfinite(scores)
  worst = jnp.max(jnp.where(finite, scores, -jnp.inf)) + 1.0
  scores = jnp.where(finite, scores, worst)
  return scores[:plus.shape[0]] - scores[plus.shape[0]:]


def _restart_diverged(inner: InnerState, final_losses: Array, task,
                      optimizer, key: Array) -> InnerState:
  num_tasks = final_losses.shape[0]
  fresh = init_inner_states(task, optimizer, key, num_tasks)
  healthy = jax.vmap(_all_finite)((inner.params, inner.opt_state))
  healthy &= jnp.isfinite(final_losses)

  def select(new, old):
    mask = jnp.reshape(healthy, (num_tasks,) + (1,) * (jnp.ndim(old) - 1))
    return jnp.where(mask, old, new)

  return jax.tree.map(select, fresh, inner)
