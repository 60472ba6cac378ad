"""Trainer init hooks built from the mappings, so a recipe is one gin file:

    loop.train.init = @init_hooks.warmstart_from()
    init_hooks.warmstart_from.path = %ENCODER_CHECKPOINT

Each returns `init(rng, abstract_params) -> params` (the trainer's InitFn): it loads the
source through `params_io.load` (a `seqpt train` MODEL_DIR or a params checkpoint), reads the
target's sizes off the abstract params' shapes, runs the mapping straight into the abstract
params' shardings, and checks the result is the trained model's tree (`transfer.take`).
"""

from __future__ import annotations

import jax

from seqpt_jax import params_io
from seqpt_jax.mappings import checks, transfer
from seqpt_jax.mappings.extract import seq2seq_to_encoder
from seqpt_jax.mappings.grow import grow
from seqpt_jax.mappings.warmstart import encoder_to_seq2seq


def config_from_shapes(like, abstract):
    """`like` with the sizes of the params in `abstract` (width, heads, depths)."""
    flat = checks.flat(abstract)
    layers, d_model, heads, head_dim = flat[("encoder", "layers", "attention", "query", "kernel")].shape
    wi = flat.get(("encoder", "layers", "mlp", "wi", "kernel"))
    wi = flat[("encoder", "layers", "mlp", "wi_0", "kernel")] if wi is None else wi
    dec = flat.get(("decoder", "layers", "self_attention", "query", "kernel"))
    return like.replace(d_model=d_model, num_heads=heads, head_dim=head_dim, d_ff=wi.shape[-1],
                        num_encoder_layers=layers,
                        num_decoder_layers=dec.shape[0] if dec is not None else like.num_decoder_layers)


def _shardings(abstract):
    return jax.tree.map(lambda x: getattr(x, "sharding", None), abstract)


def _checked(params, abstract, path: str):
    return transfer.take(abstract, params, exact=True, what=f"the model built from {path}")


def warmstart_from(path: str, decoder_init: str = "random"):
    """Seq2seq init whose encoder and embeddings are the encoder/MLM checkpoint's at `path`."""
    def init(rng, abstract):
        _, cfg, params = params_io.load(path)
        s2s_cfg = config_from_shapes(cfg, abstract)
        out = encoder_to_seq2seq(params, cfg, s2s_cfg, rng=rng, decoder_init=decoder_init,
                                 out_shardings=_shardings(abstract))
        return _checked(out, abstract, path)
    return init


def extracted_from(path: str):
    """EncoderMLM init: the seq2seq checkpoint's encoder, with its encoder MLM head if it was
    trained with one, else a fresh MLM head."""
    def init(rng, abstract):
        _, cfg, params = params_io.load(path)
        out = seq2seq_to_encoder(params, cfg, cfg, rng=rng, out_shardings=_shardings(abstract))
        return _checked(out, abstract, path)
    return init


def grown_from(path: str, method: str = "aki", unit_map: str = "random", depth: str = "stack", seed: int = 0,
               noise: float = 0.0):
    """Init grown (bert2BERT) from the smaller checkpoint at `path` to the trained model's size
    (`noise`: grow's Net2Net symmetry-breaking noise)."""
    def init(rng, abstract):
        del rng  # the unit maps follow `seed`, so a grown run is reproducible from its gin
        _, cfg, params = params_io.load(path)
        dst = config_from_shapes(cfg, abstract)
        out = grow(params, cfg, dst, method=method, rng=jax.random.key(seed), unit_map=unit_map,
                   depth=depth, out_shardings=_shardings(abstract), noise=noise)
        return _checked(out, abstract, path)
    return init
