"""360° geometry on equirectangular frames, with one convention (see :mod:`tasks.geometry.erp`).

* :mod:`~tasks.geometry.erp` — pixel <-> (lon, lat) <-> unit vector, solid angles, spherical
  area and IoU, yaw roll, wrap padding;
* :mod:`~tasks.geometry.components` — seam-aware components, boxes, BFoV, outlines;
* :mod:`~tasks.geometry.tiles` — the method's seam-aware tiling and its exact inverse;
* :mod:`~tasks.geometry.rotation` — arbitrary sphere rotations of frames and masks;
* :mod:`~tasks.geometry.perspective` — perspective views at any centre/FoV/size, and the way back;
* :mod:`~tasks.geometry.cubemap` — cubemaps both ways;
* :mod:`~tasks.geometry.remap` — the cached remap tables behind the last three.
"""
