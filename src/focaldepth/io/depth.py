"""Depth maps on disk.

* ``.npy`` — float32 metres, shape (H, W) or (S, H, W): the canonical form, lossless.
* ``.npz`` — the same inside a numpy archive (key ``depth_m``; a single-array archive
  under any key is read too).
* ``.png`` — 16-bit unsigned, single channel, **millimetres**: value v means v / 1000 m.
  0 means invalid/unknown. Depths are rounded to the nearest millimetre and saturate at
  65535 (65.535 m); a valid depth below 0.5 mm is stored as 1 mm so it stays valid.
  Non-finite or non-positive depths are written as 0. One PNG holds one (H, W) map.
* ``.exr`` — float32 metres in channel ``Z`` (OpenEXR), written on request; reading takes
  ``Z``/``depth``/``Y``/``R`` (or a multi-layer ``*.Z``/``*.V`` channel, as Blender writes).

In memory, depth is float32 metres; invalid pixels read from a PNG (0) become NaN, and
:func:`valid_depth_mask` is the one definition of "valid": finite and positive.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from focaldepth.errors import UserError
from focaldepth.io.atomic import atomic_path

DEPTH_EXTENSIONS = (".npy", ".npz", ".png", ".exr")
PNG_DEPTH_MAX_M = 65.535
EXR_DEPTH_CHANNELS = ("Z", "depth", "Depth", "Y", "R")


def valid_depth_mask(depth_m: np.ndarray) -> np.ndarray:
    """True where depth is usable: finite and positive."""
    depth_m = np.asarray(depth_m)
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth_m) & (depth_m > 0)


def depth_to_png16(depth_m: np.ndarray) -> np.ndarray:
    """Metres → uint16 millimetres (0 = invalid, saturating at 65535 = 65.535 m)."""
    depth_m = np.asarray(depth_m, dtype=np.float64)
    valid = valid_depth_mask(depth_m)
    millimetres = np.where(valid, np.rint(np.where(valid, depth_m, 0.0) * 1000.0), 0.0)
    millimetres = np.where(valid, np.clip(millimetres, 1.0, 65535.0), 0.0)
    return millimetres.astype(np.uint16)


def png16_to_depth(millimetres: np.ndarray) -> np.ndarray:
    """uint16 millimetres → float32 metres, with 0 (invalid) → NaN."""
    depth_m = np.asarray(millimetres, dtype=np.float32) / np.float32(1000.0)
    depth_m[np.asarray(millimetres) == 0] = np.nan
    return depth_m


def write_depth(path: str | os.PathLike[str], depth_m: np.ndarray) -> Path:
    """Write a depth map (metres) atomically, in the format named by the extension."""
    out = Path(path)
    depth = np.asarray(depth_m, dtype=np.float32)
    suffix = out.suffix.lower()
    if depth.ndim not in (2, 3):
        raise ValueError(
            f"write_depth: expected (H, W) or (S, H, W) metres, got shape {depth.shape}"
        )
    with atomic_path(out) as tmp:
        if suffix == ".npy":
            np.save(tmp, depth)
        elif suffix == ".npz":
            np.savez_compressed(tmp, depth_m=depth)
        elif suffix == ".png":
            if depth.ndim != 2:
                raise UserError(
                    f"a 16-bit depth PNG holds one (H, W) map, got shape {depth.shape}", out
                )
            Image.fromarray(depth_to_png16(depth)).save(tmp, format="PNG")
        elif suffix == ".exr":
            if depth.ndim != 2:
                raise UserError(
                    f"an EXR depth map holds one (H, W) map, got shape {depth.shape}", out
                )
            _write_exr(tmp, depth)
        else:
            raise UserError(
                f"unsupported depth format {suffix or '(none)'}; use one of "
                f"{', '.join(DEPTH_EXTENSIONS)}",
                out,
            )
    return out


def read_depth(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a depth map as float32 metres, (H, W) (or (S, H, W) from .npy/.npz).

    Invalid pixels of a 16-bit PNG (0) come back as NaN; other formats are returned as
    stored (check with :func:`valid_depth_mask`).
    """
    src = Path(path)
    suffix = src.suffix.lower()
    if suffix not in DEPTH_EXTENSIONS:
        raise UserError(
            f"unsupported depth format {suffix or '(none)'}; use one of "
            f"{', '.join(DEPTH_EXTENSIONS)} (a 16-bit PNG in millimetres, or metres)",
            src,
        )
    if not src.is_file():
        raise UserError("depth file not found", src)
    if suffix == ".png":
        depth = _read_png16(src)
    elif suffix == ".exr":
        depth = _read_exr(src)
    else:
        depth = _read_numpy(src)
    depth = _squeeze_to_maps(depth, src)
    return depth.astype(np.float32, copy=False)


def _squeeze_to_maps(depth: np.ndarray, src: Path) -> np.ndarray:
    """Accept (H, W), (S, H, W) and singleton channel axes like (1, H, W, 1)."""
    while depth.ndim > 2 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    while depth.ndim > 3 and depth.shape[0] == 1:
        depth = depth[0]
    if depth.ndim == 3 and depth.shape[0] == 1:
        depth = depth[0]
    if depth.ndim not in (2, 3) or min(depth.shape) == 0:
        raise UserError(
            f"expected a depth map of shape (H, W) or (S, H, W), got {depth.shape}", src
        )
    return depth


def _read_png16(src: Path) -> np.ndarray:
    try:
        with Image.open(src) as image:
            image.load()
            mode = image.mode
            pixels = np.asarray(image)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise UserError(f"cannot read depth PNG: {error}", src) from None
    if mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise UserError(
            f"depth PNG must be single-channel 16-bit (millimetres), got mode {mode} "
            f"(8-bit or colour PNGs are not depth)",
            src,
        )
    if mode == "I" and (pixels.min() < 0 or pixels.max() > 65535):
        raise UserError("depth PNG values are outside 0..65535 millimetres", src)
    return png16_to_depth(pixels.astype(np.uint16))


def _read_numpy(src: Path) -> np.ndarray:
    try:
        if src.suffix.lower() == ".npz":
            with np.load(src, allow_pickle=False) as archive:
                keys = list(archive.keys())
                key = next(
                    (k for k in ("depth_m", "depth") if k in keys),
                    keys[0] if len(keys) == 1 else None,
                )
                if key is None:
                    raise UserError(
                        f"archive has arrays {keys}; expected one named 'depth_m' or 'depth'", src
                    )
                depth = archive[key]
        else:
            depth = np.load(src, allow_pickle=False)
    except UserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"cannot read depth array: {error}", src) from None
    if not isinstance(depth, np.ndarray) or not np.issubdtype(depth.dtype, np.floating):
        dtype = getattr(depth, "dtype", type(depth).__name__)
        raise UserError(
            f"depth array must be floating-point metres, got {dtype} "
            f"(integer millimetres belong in a 16-bit .png)",
            src,
        )
    return depth


def _write_exr(tmp: Path, depth_m: np.ndarray) -> None:
    import OpenEXR  # imported here: only EXR users pay for it

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Z": np.ascontiguousarray(depth_m, dtype=np.float32)}) as exr:
        exr.write(str(tmp))


def _read_exr(src: Path) -> np.ndarray:
    import OpenEXR

    try:
        with OpenEXR.File(str(src), separate_channels=True) as exr:
            channels = {name: channel.pixels for name, channel in exr.channels().items()}
    except (RuntimeError, OSError, ValueError) as error:
        raise UserError(f"cannot read EXR: {error}", src) from None
    name = next((n for n in EXR_DEPTH_CHANNELS if n in channels), None)
    if name is None:
        name = next((n for n in channels if n.endswith((".Z", ".V", ".Depth"))), None)
    if name is None and len(channels) == 1:
        name = next(iter(channels))
    if name is None:
        raise UserError(
            f"no depth channel among {sorted(channels)}; expected one of "
            f"{', '.join(EXR_DEPTH_CHANNELS)}",
            src,
        )
    return np.asarray(channels[name], dtype=np.float32)


def fill_invalid_depth(depth_m: np.ndarray, where: object = None) -> tuple[np.ndarray, np.ndarray]:
    """Replace invalid pixels (non-finite or ≤ 0) of an (H, W) map by the nearest valid depth.

    Nearest-neighbour fill (a Euclidean distance transform) keeps depth edges sharp instead of
    smearing foreground into background as diffusion inpainting would. Returns the filled
    float32 map and the boolean mask of pixels that were filled.
    """
    from scipy import ndimage  # scipy comes with scikit-image

    depth = np.asarray(depth_m, dtype=np.float32)
    valid = valid_depth_mask(depth)
    if not valid.any():
        raise UserError("depth map has no valid (finite, positive) pixel", where)
    invalid = ~valid
    if not invalid.any():
        return depth.copy(), invalid
    _, (rows, cols) = ndimage.distance_transform_edt(invalid, return_indices=True)
    return depth[rows, cols].astype(np.float32), invalid
