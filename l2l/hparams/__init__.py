"""Hyperparameter tuning of the models an optimizer trains.

Declare continuous hyperparameters (:func:`declare`), then tune them online
in one run (:func:`online_tuner`), with a meta-learned tuner, or by
population-based training, random or grid search (:func:`search`).
"""

from l2l.hparams._learned import init_tuner_params
from l2l.hparams._learned import learned_tuner
from l2l.hparams._learned import LearnedTunerState
from l2l.hparams._learned import meta_train_tuner
from l2l.hparams._learned import run_rounds
from l2l.hparams._learned import tuner_fitness
from l2l.hparams._online import HyperTangent
from l2l.hparams._online import hypergradient
from l2l.hparams._online import init_tangent
from l2l.hparams._online import lookahead_loss
from l2l.hparams._online import normalised_step
from l2l.hparams._online import online_tuner
from l2l.hparams._online import OnlineTuner
from l2l.hparams._online import OnlineTunerState
from l2l.hparams._online import run
from l2l.hparams._online import tangent_hypergradient
from l2l.hparams._online import tangent_step
from l2l.hparams._online import train_step
from l2l.hparams._population import best_member
from l2l.hparams._population import exploit_explore
from l2l.hparams._population import METHODS
from l2l.hparams._population import PopulationState
from l2l.hparams._population import search
from l2l.hparams._space import declare
from l2l.hparams._space import Hyperparameter
from l2l.hparams._space import HyperparameterSpace
from l2l.hparams._space import TRANSFORMS

__all__ = (
    'METHODS',
    'Hyperparameter',
    'HyperparameterSpace',
    'HyperTangent',
    'LearnedTunerState',
    'OnlineTuner',
    'OnlineTunerState',
    'PopulationState',
    'TRANSFORMS',
    'best_member',
    'declare',
    'exploit_explore',
    'hypergradient',
    'init_tangent',
    'init_tuner_params',
    'learned_tuner',
    'lookahead_loss',
    'meta_train_tuner',
    'normalised_step',
    'online_tuner',
    'run',
    'run_rounds',
    'search',
    'tangent_hypergradient',
    'tangent_step',
    'train_step',
    'tuner_fitness',
)
