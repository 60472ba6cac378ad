"""Data: the embedded corpus (corpus/), the vocabulary, the pre-training objectives, the seqio
tasks and mixtures (tasks.py: the one registry is seqio's), and the two feeds behind them: the
numpy pipeline for the embedded corpus (feeding.py) and seqio's pipeline for any other task
(seqio_feed.py)."""
