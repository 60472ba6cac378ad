"""Training: partitioning, train state, optimizers, steps, checkpoints, the loop, perf.

    from seqpt_jax import train
    summary = train.train(model_dir, model, train.data.synthetic, steps=100, batch_size=8)
    params = train.load_params(model_dir)          # latest good checkpoint's parameters
"""

from seqpt_jax.train import data
from seqpt_jax.train.checkpoints import load_params
from seqpt_jax.train.freezing import SubModel
from seqpt_jax.train.loop import Diverged, TwoStage, phases, train
from seqpt_jax.train.optimizers import OptimizerConfig
from seqpt_jax.train.state import InitFn, fresh_init, from_param_checkpoint

__all__ = ["data", "load_params", "SubModel", "Diverged", "TwoStage", "phases", "train", "OptimizerConfig",
           "InitFn", "fresh_init", "from_param_checkpoint"]
