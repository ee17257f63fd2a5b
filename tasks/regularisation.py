"""Small-data problems where regularisation matters, for hyperparameter tuning.

Each problem holds a training split (a few hundred examples), a validation
split taken from the same pool (what tuners see), and the data set's test
split (what no tuner sees). Its hyperparameters are declared with
:func:`l2l.hparams.declare` and enter the loss and the optimizer as traced
arrays, so one compiled step serves every setting.

Regularisers, all differentiable in their strength:

- ``weight_decay``: decoupled weight decay of AdamW (optimizer side).
- ``dropout``: Gaussian dropout of rate ``p`` on hidden units,
  multiplicative noise ``1 + sqrt(p / (1 - p)) eps`` (Srivastava et al.,
  2014, section 10; Wang and Manning, 2013), reparameterised.
- ``label_smoothing``: targets ``(1 - a) onehot + a / C``.
- ``input_noise``: Gaussian noise of this standard deviation added to the
  standardised inputs.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from l2l import hparams
from tasks import _common
from tasks import data

H = hparams.Hyperparameter
SPACES = {
    'weight_decay': H('weight_decay', 1e-2, 1e-4, 3.0, 'log'),
    'dropout': H('dropout', 0.1, 0.0, 0.9),
    'label_smoothing': H('label_smoothing', 0.05, 0.0, 0.6),
    'input_noise': H('input_noise', 0.05, 1e-2, 2.0, 'log'),
}


@struct.dataclass
class RegularisationProblem:
  """A classifier trained by AdamW on a small split, with declared
  hyperparameters.

  Attributes:
    x_train, y_train: training inputs ``(N, ...)`` float32, labels int32.
    x_val, y_val: validation split, the tuners' signal.
    x_test, y_test: test split, reported only.
    space: the declared hyperparameters (static).
    model: ``'mlp'`` or ``'conv'`` (1-D convolutions on sequences).
    widths: hidden widths (MLP) or channels (conv).
    batch_size: training (and validation) minibatch size.
    learning_rate: AdamW's learning rate.
    num_steps: training steps of one run.
    name: the problem's name.
  """
  x_train: jax.Array
  y_train: jax.Array
  x_val: jax.Array
  y_val: jax.Array
  x_test: jax.Array
  y_test: jax.Array
  space: hparams.HyperparameterSpace = struct.field(pytree_node=False)
  model: str = struct.field(pytree_node=False, default='mlp')
  widths: tuple[int, ...] = struct.field(pytree_node=False, default=(256,))
  batch_size: int = struct.field(pytree_node=False, default=64)
  learning_rate: float = struct.field(pytree_node=False, default=3e-3)
  num_steps: int = struct.field(pytree_node=False, default=500)
  name: str = struct.field(pytree_node=False, default='problem')

  def init_params(self, key: jax.Array) -> dict:
    """LeCun-normal weights and zero biases."""
    if self.model == 'mlp':
      sizes = (int(np.prod(self.x_train.shape[1:])),) + self.widths + (10,)
      shapes = list(zip(sizes[:-1], sizes[1:]))
    else:
      channels = (1,) + self.widths
      shapes = [(5, c_in, c_out) for c_in, c_out in
                zip(channels[:-1], channels[1:])]
      length = self.x_train.shape[1]
      for _ in self.widths:
        length = -(-length // 2)
      shapes.append((length * self.widths[-1], 10))
    names = [f'layer_{i}' for i in range(len(shapes) - 1)] + ['head']
    return _common.layers_init(key, names, shapes)

  def apply(self, params: dict, x: jax.Array, dropout=0.0,
            key: jax.Array | None = None) -> jax.Array:
    """Logits ``(B, 10)``; Gaussian dropout on hidden units if ``key``."""
    h = x.reshape(x.shape[0], -1) if self.model == 'mlp' else x[..., None]
    for i in range(len(self.widths)):
      layer = params[f'layer_{i}']
      if self.model == 'mlp':
        h = jax.nn.relu(_common.dense(layer, h))
      else:
        h = jax.lax.conv_general_dilated(
            h, layer['w'], (2,), 'SAME', dimension_numbers=('NWC', 'WIO',
                                                            'NWC'))
        h = jax.nn.relu(h + layer['b'][None, None, :])
      if key is not None:
        key, sub = jax.random.split(key)
        # The offset keeps the derivative at rate 0 finite.
        std = jnp.sqrt(dropout / (1.0 - dropout) + 1e-6)
        h = h * (1.0 + std * jax.random.normal(sub, h.shape, h.dtype))
    return _common.dense(params['head'], h.reshape(h.shape[0], -1))

  def train_loss(self, params: dict, values: dict, key: jax.Array):
    """Regularised cross-entropy on a training minibatch drawn with ``key``.

    Args:
      params: model parameters.
      values: hyperparameter values ``{name: float32 ()}``.
      key: PRNG key for the batch, the input noise and the dropout.
    """
    batch_key, noise_key, dropout_key = jax.random.split(key, 3)
    x, y = _common.minibatch(self.x_train, self.y_train, self.batch_size,
                             batch_key)
    if 'input_noise' in values:
      x = x + values['input_noise'] * jax.random.normal(noise_key, x.shape)
    dropout = values.get('dropout')
    logits = self.apply(params, x, dropout,
                        None if dropout is None else dropout_key)
    smoothing = values.get('label_smoothing', 0.0)
    targets = optax.smooth_labels(jax.nn.one_hot(y, 10), smoothing)
    return jnp.mean(optax.softmax_cross_entropy(logits, targets))

  def val_batch_loss(self, params: dict, key: jax.Array) -> jax.Array:
    """Plain cross-entropy on a validation minibatch drawn with ``key``."""
    x, y = _common.minibatch(self.x_val, self.y_val, self.batch_size, key)
    return _common.cross_entropy(self.apply(params, x), y)

  def val_loss(self, params: dict, key: Any = None) -> jax.Array:
    """Plain cross-entropy on the whole validation split (``key`` unused)."""
    del key
    return _common.cross_entropy(self.apply(params, self.x_val), self.y_val)

  def test_metrics(self, params: dict) -> tuple[jax.Array, jax.Array]:
    """``(cross-entropy, accuracy)`` on the test split."""
    logits = self.apply(params, self.x_test)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == self.y_test)
    return _common.cross_entropy(logits, self.y_test), accuracy

  def make_optimizer(self, values: dict) -> optax.GradientTransformation:
    """AdamW at ``learning_rate`` with the declared weight decay (or none).

    ``eps_root`` keeps derivatives through the update finite where a
    gradient entry is exactly zero (a pixel that is always blank).
    """
    return optax.adamw(self.learning_rate, eps_root=1e-16,
                       weight_decay=values.get('weight_decay', 0.0))


# name -> (data set, model, widths, train, val, label noise, hyperparameters,
#          steps at the small and the full size).
PROBLEMS = {
    'digits_mlp': ('digits', 'mlp', (256, 256), 150, 500, 0.0,
                   ('weight_decay', 'dropout'), (400, 1500)),
    'mnist1d_conv_noisy': ('mnist1d', 'conv', (16, 32), 1000, 1000, 0.3,
                           ('weight_decay', 'label_smoothing'), (400, 1500)),
    'mnist1d_wide_mlp': ('mnist1d', 'mlp', (512, 512), 400, 1000, 0.0,
                         ('dropout', 'input_noise'), (400, 1500)),
}
#: Problems the learned tuner is meta-trained on (never compared on).
META_TRAIN = {
    'digits_conv_noisy': ('digits', 'conv', (16, 32), 300, 500, 0.2,
                          ('weight_decay', 'label_smoothing'), (100, 200)),
    'mnist1d_mlp_dropout': ('mnist1d', 'mlp', (256,), 300, 1000, 0.0,
                            ('weight_decay', 'dropout'), (100, 200)),
    'digits_mlp_noise': ('digits', 'mlp', (128, 128), 100, 500, 0.1,
                         ('input_noise', 'dropout'), (100, 200)),
}
#: Held-out problems that choose among the learned tuner's meta-training
#: iterates (never meta-trained on, never compared on).
META_VALID = {
    'mnist1d_conv_dropout': ('mnist1d', 'conv', (16, 16), 500, 1000, 0.1,
                             ('dropout', 'weight_decay'), (100, 200)),
    'digits_mlp_smoothing': ('digits', 'mlp', (256,), 200, 500, 0.2,
                             ('label_smoothing', 'input_noise'), (100, 200)),
}
SIZES = ('small', 'full')


def make_problem(name: str, *, size: str = 'small', seed: int = 0,
                 num_steps: int | None = None) -> RegularisationProblem:
  """Builds a registered problem of :data:`PROBLEMS`.

  The training and validation examples are a random (``seed``) draw from
  the data set's training split; under label noise, that share of their
  labels is replaced by uniform random classes (the test split stays clean).

  Args:
    name: a key of :data:`PROBLEMS`, :data:`META_TRAIN` or
      :data:`META_VALID`.
    size: ``'small'`` or ``'full'``: the number of training steps.
    seed: the draw of examples and label noise.
    num_steps: overrides the size's number of steps.

  Raises:
    ValueError: an unknown name or size, or ``num_steps < 1``.
  """
  registry = PROBLEMS | META_TRAIN | META_VALID
  if name not in registry:
    raise ValueError(f'Unknown problem {name!r}; valid: {sorted(registry)}.')
  if size not in SIZES:
    raise ValueError(f'Unknown size {size!r}; valid: {SIZES}.')
  dataset, model, widths, num_train, num_val, noise, names, steps = (
      registry[name])
  steps = steps[SIZES.index(size)] if num_steps is None else int(num_steps)
  if steps < 1:
    raise ValueError(f'num_steps must be positive, got {num_steps}.')
  x, y, x_test, y_test = data.load(dataset)
  x, x_test = x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(y))[:num_train + num_val]
  x, y = x[order], y[order].copy()
  flip = rng.random(len(y)) < noise
  y[flip] = rng.integers(0, 10, int(flip.sum()))
  f = lambda a: jnp.asarray(a)
  return RegularisationProblem(
      x_train=f(x[:num_train]), y_train=f(y[:num_train]),
      x_val=f(x[num_train:]), y_val=f(y[num_train:]), x_test=f(x_test),
      y_test=f(y_test), space=hparams.declare(*(SPACES[n] for n in names)),
      model=model, widths=widths, num_steps=steps, name=name)
