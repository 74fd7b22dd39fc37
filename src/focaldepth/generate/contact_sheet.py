"""A contact sheet (PNG) of a generated dataset, so people can see what they generated.

One row per sequence: three frames of its last focus ramp (near, middle and far focus),
the all-in-focus image, the depth map (metres, one colour scale per sequence), the CoC map
of the near- and far-focus frames (pixels), and for dynamic sequences the magnitude of
the backward optical flow of the last frame.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from focaldepth.errors import UserError
from focaldepth.generate.storage import finished_sequences
from focaldepth.io.atomic import atomic_path


def _last_ramp(focus_distance_m: np.ndarray) -> list[int]:
    """Frame indices of the last run of increasing focus distance (the last near -> far ramp)."""
    start = len(focus_distance_m) - 1
    while start > 0 and focus_distance_m[start - 1] < focus_distance_m[start]:
        start -= 1
    return list(range(start, len(focus_distance_m)))


def write_contact_sheet(out_dir: str | Path, path: str | Path, num_sequences: int = 6) -> Path:
    """Draw the first ``num_sequences`` sequences of ``out_dir`` into the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = list(finished_sequences(Path(out_dir)).values())[:num_sequences]
    if not files:
        raise UserError("no generated sequences to draw a contact sheet of", out_dir)
    columns = ["near focus", "middle focus", "far focus", "all in focus", "depth (m)", "CoC near (px)",
               "CoC far (px)", "flow |px|"]
    fig, axes = plt.subplots(len(files), len(columns), figsize=(2.1 * len(columns), 2.25 * len(files)),
                             squeeze=False)
    for row, file_path in enumerate(files):
        with h5py.File(file_path, "r") as file:
            focus = file["focus_distance_m"][()]
            ramp = _last_ramp(focus)
            near, middle, far = ramp[0], ramp[len(ramp) // 2], ramp[-1]
            picks = sorted({near, middle, far})
            frames = dict(zip(picks, file["frames"][picks]))
            aif = file["aif"][far]
            depth = file["depth_m"][far]
            coc_near, coc_far = file["coc_px"][near], file["coc_px"][far]
            flow = file["flow"][far].astype(np.float32) if "flow" in file else None
            attrs = dict(file.attrs)
        ax = axes[row]
        for col, frame_index in enumerate((near, middle, far)):
            ax[col].imshow(frames[frame_index])
            ax[col].set_title((f"{columns[col]}\n" if row == 0 else "") + f"F = {focus[frame_index]:.3g} m",
                              fontsize=7)
        if row == 0:
            for col in range(3, len(columns)):
                ax[col].set_title(columns[col], fontsize=7)
        ax[3].imshow(aif)
        im = ax[4].imshow(depth, cmap="magma_r")
        fig.colorbar(im, ax=ax[4], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        coc_max = max(float(np.nanmax(coc_near)), float(np.nanmax(coc_far)), 1e-6)  # NaN: unknown depth
        for col, coc in ((5, coc_near), (6, coc_far)):
            im = ax[col].imshow(coc, cmap="viridis", vmin=0, vmax=coc_max)
        fig.colorbar(im, ax=ax[6], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        if flow is not None:
            im = ax[7].imshow(np.hypot(flow[..., 0], flow[..., 1]), cmap="cividis")
            fig.colorbar(im, ax=ax[7], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        else:
            ax[7].text(0.5, 0.5, "static", ha="center", va="center", fontsize=9, transform=ax[7].transAxes)
        label = (f"#{attrs['index']} {'dynamic' if attrs['is_dynamic'] else 'static'}\n"
                 f"f={attrs['focal_length_mm']:.0f}mm f/{attrs['f_number']:.1f}\n"
                 f"w={attrs['sensor_width_mm']:.0f}mm\n{attrs['near_m']:.2f}-{attrs['far_m']:.2f} m")
        ax[0].set_ylabel(label, fontsize=7)
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return Path(path)
