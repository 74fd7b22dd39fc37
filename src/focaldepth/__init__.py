"""focaldepth: metric depth from focus and defocus in focal stacks and focus-sweep video.

Tensor layout used everywhere:

* focal stacks / sweeps: ``(B, S, C, H, W)`` float in [0, 1]
* focus distances: ``(B, S)`` in metres
* depth: ``(B, 1, H, W)`` in metres
"""

from focaldepth.errors import UserError
from focaldepth.optics import Camera, coc_m, coc_px

__version__ = "0.1.0"
__all__ = ["Camera", "UserError", "coc_m", "coc_px", "__version__"]
