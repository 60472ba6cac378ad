"""Downstream evaluation: metrics, decoding, task files, fine-tuning and the cross-lingual protocol."""
