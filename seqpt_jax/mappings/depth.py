"""Depth growth: per-layer parameters carry a leading `layers` axis (scanned stacks), so a
deeper model is a gather along axis 0 with a layer map (unit_maps.depth_map):

- stack (StackBERT, Gong et al. 2019; bert2BERT, Chen et al. 2022): the whole stack placed on
  top of itself (0,1,..,L-1,0,1,..,L-1) floor(L'/L) times, then the leftover L' mod L layers
  copied from the top of the source (bert2BERT: 6 -> 8 layers is 0..5,4,5).
- interpolate: target layer i copies source layer floor(i L / L') — each layer repeated in
  place (0,0,1,1,.. when doubling).

Neither preserves the function (an extra residual block adds its output); both keep every
layer's weights exactly. Stack-level parameters (relative position bias, final norm) are
kept as they are.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

STACKS = ("encoder", "decoder")


def is_layer_param(path: tuple) -> bool:
    return len(path) > 2 and path[0] in STACKS and path[1] == "layers"


def grow_depth(flat: dict, layer_maps: dict) -> dict:
    """`layer_maps`: stack name -> source layer of each target layer."""
    out = {}
    for path, x in flat.items():
        index = layer_maps.get(path[0]) if is_layer_param(path) else None
        if index is not None and not np.array_equal(index, np.arange(x.shape[0])):
            x = jnp.take(x, index, axis=0)
        out[path] = x
    return out
