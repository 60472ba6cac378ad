"""Reading and writing a local Hugging Face model directory: `config.json` plus weights.

Weights are read with numpy (`safetensors.numpy`), so converting needs no torch; bfloat16
files, which numpy cannot name, are decoded through `ml_dtypes`. Sharded checkpoints
(`model.safetensors.index.json`) are read shard by shard; `pytorch_model.bin` only when torch
is importable. Nothing here ever touches the hub.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from seqpt_jax.errors import UserError
from seqpt_jax.params_io import atomic_directory

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"


def read_config(path: str) -> dict:
    if not os.path.isdir(path):
        raise UserError(f"{path} is not a directory; point --from-hf at a local Hugging Face model "
                        f"directory (with {CONFIG} and {SAFETENSORS}).")
    file = os.path.join(path, CONFIG)
    if not os.path.isfile(file):
        raise UserError(f"{path} has no {CONFIG}; point at a directory written by "
                        f"transformers' save_pretrained.")
    try:
        with open(file) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{file} is not valid JSON ({e.msg} at line {e.lineno}); fix or re-export it.") from e


def _read_safetensors_raw(file: str) -> dict:
    """Fallback for dtypes numpy lacks (bfloat16): parse the header, view the bytes."""
    import ml_dtypes  # ships with jax

    dtypes = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32, "F64": np.float64,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
              "BOOL": np.bool_}
    with open(file, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        data = f.read()
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info["dtype"] not in dtypes:
            raise UserError(f"{file}: tensor {key!r} has dtype {info['dtype']}, which cannot be "
                            f"converted; re-save the model in float32 or bfloat16.")
        start, end = info["data_offsets"]
        out[key] = np.frombuffer(data[start:end], dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def _read_safetensors(file: str) -> dict:
    from safetensors.numpy import load_file

    try:
        return load_file(file)
    except TypeError:  # "data type 'bfloat16' not understood"
        return _read_safetensors_raw(file)


def _read_torch(file: str) -> dict:
    try:
        import torch
    except ImportError as e:
        raise UserError(f"{file} is a PyTorch pickle and torch is not installed; install "
                        f"seqpt_jax[hf] or re-save the model as safetensors.") from e
    state = torch.load(file, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def _shards(path: str, index: str) -> list[str]:
    with open(os.path.join(path, index)) as f:
        weight_map = json.load(f)["weight_map"]
    return [os.path.join(path, name) for name in sorted(set(weight_map.values()))]


def read_state(path: str) -> dict:
    """The state dict of the model in `path`: {HF key: numpy array}."""
    candidates = [(SAFETENSORS, _read_safetensors), (SAFETENSORS_INDEX, _read_safetensors),
                  (TORCH_BIN, _read_torch), (TORCH_BIN_INDEX, _read_torch)]
    for name, reader in candidates:
        if os.path.isfile(os.path.join(path, name)):
            files = _shards(path, name) if name.endswith(".index.json") else [os.path.join(path, name)]
            state = {}
            for file in files:
                if not os.path.isfile(file):
                    raise UserError(f"{file} is listed in {name} but missing; copy the whole model directory.")
                state.update(reader(file))
            return state
    raise UserError(f"{path} has no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} or {TORCH_BIN}); "
                    f"copy the whole model directory.")


def write_dir(path: str, config: dict, state: dict, overwrite: bool = False,
              extra: dict[str, bytes] | None = None) -> str:
    """Writes `config.json` + `model.safetensors` (+ `extra` files: tokenizer, model card)
    atomically (temporary sibling, then rename)."""
    from safetensors.numpy import save_file

    if os.path.isdir(path) and not os.listdir(path):
        overwrite = True  # an empty directory the user made for us
    with atomic_directory(path, overwrite) as tmp:
        with open(os.path.join(tmp, CONFIG), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
        save_file(state, os.path.join(tmp, SAFETENSORS), metadata={"format": "pt"})
        for name, content in (extra or {}).items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(content)
    return os.path.abspath(path)
