"""seqpt_jax: sequential pre-training (encoder -> seq2seq, small -> large) in JAX/Flax."""

from setuptools import setup

# The stack verified together on Python 3.11 (CPU) is pinned for CI in .ci/constraints-cpu.txt
# (jax 0.10.2). jax 0.11 is admitted: a GPU machine of the H200 class carries jax 0.11.2 (CUDA 13),
# flax 0.12.10, optax 0.2.8. Only 0.10.2 can be installed on the CI machines, so 0.11 is exercised
# only by the GPU runs (docs/experiments.md).
# TensorFlow, seqio and TFDS stay core: `pip install -e . && seqpt demo` trains on the embedded
# corpus, whose tasks are seqio tasks (data/tasks.py). Training on an exported corpus needs none of
# them; on a machine without them install with `pip install --no-deps -e .` (docs/experiments.md).
CORE = [
    "jax>=0.10,<0.12",
    "jaxlib>=0.10,<0.12",
    "flax>=0.12,<0.13",
    "optax==0.2.8",
    "orbax-checkpoint>=0.12,<0.13",
    "seqio==0.0.20",
    "tensorflow-cpu==2.21.*",
    "tensorflow-text==2.21.*",
    "tensorflow-datasets==4.9.10",
    "sentencepiece>=0.2,<0.3",
    "gin-config==0.5.0",
    "numpy>=2,<3",
    "safetensors>=0.4",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "tensorboard>=2.18",
    "sacrebleu>=2.4,<3",
    "hironsancorpus==0.1.2",  # MIT; the ja_ner downstream task's labelled data (evaluate/packaged.py)
]

EXTRAS = {
    "gpu": ["jax[cuda12]>=0.10,<0.12"],
    "cuda13": ["jax[cuda13]>=0.11,<0.12"],  # the H200 image's stack
    "tpu": ["jax[tpu]>=0.10,<0.12"],
    # torch 2.13.0 CPU: the wheel these machines carry; a newer torch pulls GBs of CUDA.
    "hf": ["torch==2.13.0", "transformers>=5,<6", "safetensors>=0.4"],
    "test": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6", "nbformat>=5", "nbclient>=0.10",
             "ipykernel>=6",
             "seqeval==1.2.2",
             "gcsfs==2026.10.1",  # epath's gs:// client in tests/test_train_remote.py
             "ruff==0.17.6"],  # `ruff check` in tests/run.sh (config: pyproject.toml)
}

# Metadata, entry point and package data: pyproject.toml. The pins stay here.
setup(install_requires=CORE, extras_require=EXTRAS)
