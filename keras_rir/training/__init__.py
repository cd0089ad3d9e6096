"""The paper's training recipe as reusable pieces, and `train`, which runs it with `model.fit`.

Reference: arXiv:1603.08029, section 3: SGD with momentum 0.9, minibatch 500,
L2 penalty 1e-4, 82 epochs, learning rate x0.1 after epochs 42 and 62, MSR
(He) initialization, batch-normalization statistics as exponential moving
averages. The initial learning rate is not in the paper (measured, see
`Recipe`). `PAPER_RECIPE` and `BUDGETS` hold the library's training defaults.

Modules: `recipe` (hyperparameters, schedule, optimizers; `MomentumCorrectedSGD` lives in
`keras_rir.optimizers`), `callbacks` (resumable logging), `trainer` (`train`).
"""

from keras_rir.optimizers import MomentumCorrectedSGD
from keras_rir.training.callbacks import EpochTimer, ResumableCSVLogger, RunProgress, make_callbacks
from keras_rir.training.recipe import (
    BUDGETS,
    OPTIMIZERS,
    PAPER_RECIPE,
    QUICK_RECIPE,
    Recipe,
    StepSchedule,
    learning_rate_boundaries,
    learning_rate_schedule,
    make_optimizer,
)
from keras_rir.training.trainer import train

__all__ = [
    "OPTIMIZERS",
    "BUDGETS",
    "PAPER_RECIPE",
    "QUICK_RECIPE",
    "EpochTimer",
    "MomentumCorrectedSGD",
    "Recipe",
    "ResumableCSVLogger",
    "RunProgress",
    "StepSchedule",
    "learning_rate_boundaries",
    "learning_rate_schedule",
    "make_callbacks",
    "make_optimizer",
    "train",
]
