"""Pure functions over parameter pytrees: one model starts from another.

    big = mappings.grow(params, src_cfg, dst_cfg, method="fpi", rng=key, unit_map="random")
    s2s = mappings.encoder_to_seq2seq(enc_params, enc_cfg, s2s_cfg, rng=key)
    enc = mappings.seq2seq_to_encoder(s2s_params, s2s_cfg, enc_cfg, rng=key)
    enc = mappings.electra_to_encoder(electra_params, cfg, rng=key)   # the discriminator
    ext, ext_cfg = mappings.extend_vocab(params, cfg, "old.model", "new.model", method="mean")
    opt = mappings.grow_optimizer_state(opt_state, src_cfg, dst_cfg, method="fpi", rng=key)

No Flax module is needed to call them; each is jit-able with output shardings. The
equations and what each preserves are in the module docstrings and docs/mappings.md.
"""

from seqpt_jax.mappings.grow import (DEPTHS, METHODS, GrowthPlan, grow, grow_sharded,
                                     growth_plan, target_shardings)
from seqpt_jax.mappings.extract import electra_to_encoder, seq2seq_to_encoder
from seqpt_jax.mappings.optimizer import grow_optimizer_state
from seqpt_jax.mappings.unit_maps import UNIT_MAPS, UnitMap, depth_map, unit_map
from seqpt_jax.mappings.vocab_ext import extend_vocab
from seqpt_jax.mappings.warmstart import encoder_to_seq2seq

__all__ = ["DEPTHS", "METHODS", "UNIT_MAPS", "GrowthPlan", "UnitMap", "depth_map", "electra_to_encoder",
           "encoder_to_seq2seq", "extend_vocab", "grow", "grow_optimizer_state", "grow_sharded", "growth_plan",
           "seq2seq_to_encoder", "target_shardings", "unit_map"]
