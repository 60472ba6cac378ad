"""Training: partitioning, train state, optimizers, steps, checkpoints, the loop, perf.

    from seqpt_jax import train
    summary = train.train(model_dir, model, train.data.synthetic, steps=100, batch_size=8)
    kind, cfg, params = params_io.load(model_dir)  # latest good checkpoint (seqpt_jax.params_io)
"""

from seqpt_jax.train import data
from seqpt_jax.train.freezing import SubModel
from seqpt_jax.train.loop import Diverged, TwoStage, phases, train
from seqpt_jax.train.optimizers import OptimizerConfig
from seqpt_jax.train.state import InitFn, fresh_init, from_param_checkpoint

__all__ = ["data", "SubModel", "Diverged", "TwoStage", "phases", "train", "OptimizerConfig",
           "InitFn", "fresh_init", "from_param_checkpoint"]
