"""gradc's runtime: loading and caching generated modules, gradient checks,
parameter initialisation and a minibatch SGD training loop."""
from .check import gradcheck, random_arguments
from .init import init_params
from .loader import cache_dir, import_generated, is_generated, write_atomic
from .train import SGD, train

__all__ = ["gradcheck", "random_arguments", "init_params", "cache_dir", "import_generated",
           "is_generated", "write_atomic", "SGD", "train"]
