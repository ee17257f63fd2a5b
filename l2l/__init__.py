"""l2l: learned optimizers for JAX, usable as optax transforms."""

__version__ = '0.8.0'

from l2l._checkpoint import CheckpointError
from l2l._checkpoint import load_checkpoint
from l2l._checkpoint import load_meta_params
from l2l._checkpoint import read_manifest
from l2l._checkpoint import save_checkpoint
from l2l._checkpoint import save_meta_params
from l2l._fit import meta_train
from l2l._meta import ES_FITNESS
from l2l._meta import es_meta_step
from l2l._meta import init_inner_states
from l2l._meta import InnerState
from l2l._meta import meta_step
from l2l._meta import MetaTrainState
from l2l._meta import unroll
from l2l._network import CoordinatewiseLSTM
from l2l._network import DESIGNS
from l2l._network import init_meta_params
from l2l._network import LSTMCarry
from l2l._parallel import state_shardings
from l2l._parallel import task_mesh
from l2l._pes import pes_meta_step
from l2l._pes import pes_start
from l2l._preprocess import preprocess_gradients
from l2l._transform import architecture
from l2l._transform import averaged_params
from l2l._transform import lstm_optimizer
from l2l._transform import LSTMOptimizerState
from l2l import search  # Architecture search: l2l.search.
from l2l import hparams  # The subpackage l2l.hparams (its own __all__).

__all__ = (
    'CheckpointError',
    'CoordinatewiseLSTM',
    'DESIGNS',
    'ES_FITNESS',
    'InnerState',
    'LSTMCarry',
    'LSTMOptimizerState',
    'MetaTrainState',
    'architecture',
    'averaged_params',
    'es_meta_step',
    'init_inner_states',
    'init_meta_params',
    'load_checkpoint',
    'load_meta_params',
    'lstm_optimizer',
    'meta_step',
    'meta_train',
    'pes_meta_step',
    'pes_start',
    'preprocess_gradients',
    'read_manifest',
    'save_checkpoint',
    'save_meta_params',
    'state_shardings',
    'task_mesh',
    'unroll',
)
