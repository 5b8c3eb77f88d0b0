"""Video I/O through ffmpeg: probing/validation and frame decode/encode."""
