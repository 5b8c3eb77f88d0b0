"""360° geometry on equirectangular frames: sphere coordinates, solid angles, seam-aware
components/boxes/BFoV and the method's tiling. See :mod:`tasks.geometry.erp` for the convention."""
