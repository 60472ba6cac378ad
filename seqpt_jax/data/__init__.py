"""Data: the embedded corpus (corpus/), the vocabulary, the pre-training objectives, seqio
tasks and mixtures, and the resumable feeding pipeline the trainer consumes."""
