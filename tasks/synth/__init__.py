"""Synthetic 360° (ERP) clips with exact ground truth, for testing the pipeline end to end.

A clip shows a textured sky/grass world with planar textured objects rendered through a true
spherical projection; every clip contains a seam crossing, a pole visit, an object appearing
mid-clip and an occlusion (see :mod:`tasks.synth.scene`). Frames are a pure function of the
arguments, so a failing pipeline run can be reproduced bit for bit.

Modules: :mod:`~tasks.synth.noise` (seamless procedural textures), :mod:`~tasks.synth.shapes`
(object outlines), :mod:`~tasks.synth.motion` (trajectories, poses),
:mod:`~tasks.synth.background` (sky and grass), :mod:`~tasks.synth.scene` (scenario design),
:mod:`~tasks.synth.render` (rasterisation), :mod:`~tasks.synth.clip` (mp4 + GT on disk).
"""

from __future__ import annotations

from tasks.synth.clip import render_clip
from tasks.synth.render import render_frames
from tasks.synth.scene import SynthScene, build_scene

__all__ = ["SynthScene", "build_scene", "render_clip", "render_frames"]
