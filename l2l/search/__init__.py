"""Architecture search: spaces as data, parsers to flax, ask/tell strategies, the trial
journal, and one-shot searches sharing weights (ENAS, DARTS)."""
from l2l.search._controller import ControllerState, reinforce_controller
from l2l.search._parse import (NASLayerNet, NASNetCellNet, PARSERS, RecurrentCellNet,
                               TabularCellNet, build)
from l2l.search._space import (Choice, NASNET_OPS, RECURRENT_ACTIVATIONS, SPACES, Space,
                               TABULAR_OPS, nas_layer_space, nasnet_space, recurrent_space,
                               tabular_cell_space)
from l2l.search._strategies import (BayesOptState, EvolutionState, RandomSearchState, Strategy,
                                    bayesian_optimisation, expected_improvement, mutate,
                                    one_hot_encoding, random_search, regularized_evolution,
                                    sample_configs, simulate)
from l2l.search._journal import Journal, run_trials, trial_seed
from l2l.search._oneshot import (OneShot, PARAMETER_FREE_OPS, discretise, parameter_free_share,
                                 run_oneshot)
from l2l.search._darts import DartsState, darts, darts_plus_stop, mixed_op_weights
from l2l.search._enas import EnasState, enas, enas_controller, enas_derive

__all__ = (
    'BayesOptState', 'Choice', 'ControllerState', 'DartsState', 'EnasState',
    'EvolutionState', 'Journal', 'OneShot', 'PARAMETER_FREE_OPS',
    'NASLayerNet', 'NASNET_OPS', 'NASNetCellNet', 'PARSERS', 'RECURRENT_ACTIVATIONS',
    'RandomSearchState', 'RecurrentCellNet', 'SPACES', 'Space', 'Strategy',
    'TABULAR_OPS', 'TabularCellNet', 'bayesian_optimisation', 'build',
    'expected_improvement', 'mutate', 'nas_layer_space', 'nasnet_space',
    'one_hot_encoding', 'random_search', 'recurrent_space', 'regularized_evolution',
    'reinforce_controller', 'run_trials', 'sample_configs', 'simulate',
    'tabular_cell_space', 'trial_seed', 'darts', 'darts_plus_stop', 'discretise',
    'enas', 'enas_controller', 'enas_derive', 'mixed_op_weights', 'parameter_free_share',
    'run_oneshot',
)

# Documented, and cross-referenced, under the names users import.
for _name in __all__:
  if hasattr(globals()[_name], '__module__') and callable(globals()[_name]):
    globals()[_name].__module__ = __name__
del _name
