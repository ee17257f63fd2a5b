"""Architecture search: spaces as data, parsers to flax, ask/tell strategies, the trial journal."""
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

__all__ = (
    'BayesOptState', 'Choice', 'ControllerState', 'EvolutionState', 'Journal',
    'NASLayerNet', 'NASNET_OPS', 'NASNetCellNet', 'PARSERS', 'RECURRENT_ACTIVATIONS',
    'RandomSearchState', 'RecurrentCellNet', 'SPACES', 'Space', 'Strategy',
    'TABULAR_OPS', 'TabularCellNet', 'bayesian_optimisation', 'build',
    'expected_improvement', 'mutate', 'nas_layer_space', 'nasnet_space',
    'one_hot_encoding', 'random_search', 'recurrent_space', 'regularized_evolution',
    'reinforce_controller', 'run_trials', 'sample_configs', 'simulate',
    'tabular_cell_space', 'trial_seed',
)

# Documented, and cross-referenced, under the names users import.
for _name in __all__:
  if hasattr(globals()[_name], '__module__') and callable(globals()[_name]):
    globals()[_name].__module__ = __name__
del _name
