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
