"""gradc's runtime: loading and caching generated modules, gradient checks,
parameter initialisation, optimizers, a minibatch training loop and the heap setting it uses."""
from .check import gradcheck, random_arguments
from .init import init_params
from .loader import cache_dir, import_generated, is_generated, write_atomic
from .memory import pad_heap
from .optim import OPTIMIZERS, AdaGrad, Adam, DeltaBarDelta, Momentum, Optimizer, RMSProp, SGD
from .train import (SCHEDULES, CheckpointError, CosineLR, History, StepLR, TrainingError, evaluate,
                    load_checkpoint, loss_figure, save_checkpoint, save_loss_curve, train)

__all__ = ["gradcheck", "random_arguments", "init_params", "cache_dir", "import_generated",
           "is_generated", "write_atomic", "Optimizer", "SGD", "Momentum", "AdaGrad", "RMSProp",
           "Adam", "DeltaBarDelta", "OPTIMIZERS", "History", "train", "evaluate", "save_loss_curve",
           "TrainingError", "CheckpointError", "StepLR", "CosineLR", "SCHEDULES", "save_checkpoint",
           "load_checkpoint", "loss_figure", "pad_heap"]
