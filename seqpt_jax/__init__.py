"""seqpt_jax: sequential pre-training of multilingual encoders, seq2seq and grown models."""

__version__ = "0.1.0"
