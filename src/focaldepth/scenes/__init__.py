"""Synthetic scenes for focus-sweep data: procedural textures and shapes, train/test pools,
random cameras with a per-scene depth-range policy, rigid motion with exact flow, and
sequence generation through the occlusion-aware renderer (:mod:`focaldepth.render`).
An optional Blender Cycles backend lives in :mod:`focaldepth.scenes.blender`.

Modules: ``textures``, ``shapes``, ``pools``, ``camera``, ``motion``, ``procedural``,
``sequence``, ``config``.
"""

from focaldepth.scenes.config import SceneConfig
from focaldepth.scenes.pools import OBJECT_POOLS, Pools, split_pools
from focaldepth.scenes.procedural import Scene, backward_flow, rasterise, sample_scene
from focaldepth.scenes.sequence import SequenceData, generate_sequence

__all__ = ["OBJECT_POOLS", "Pools", "Scene", "SceneConfig", "SequenceData", "backward_flow", "generate_sequence",
           "rasterise", "sample_scene", "split_pools"]
