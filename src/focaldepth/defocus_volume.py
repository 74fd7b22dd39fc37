"""Depth from defocus by a plane sweep over depth hypotheses that reach beyond the focus sweep.

A vote over focus distances (depth from *focus*: the classical argmax, SweepNet's softmax) can
only answer between the nearest and farthest focus. But every frame's thin-lens blur is a known
function of depth on both sides of the swept range (:mod:`focaldepth.optics`): beyond the
farthest focus the blur keeps growing with the dioptric distance, and frames focused at
different distances see different amounts of it. This module scores that directly.

For each hypothesis ``h`` of inverse depth (a fronto-parallel plane, as in plane-sweep stereo
and in DDFS, Fujimura et al., IJCV 2024) the camera predicts every frame's blur. For two frames
``i``, ``j`` the one predicted sharper, blurred by the *relative* blur, should equal the other
(Subbarao's relative-blur constraint; Gaussian PSFs compose exactly, disks nearly):

    G(sqrt(s_j^2 - s_i^2)) * I_i  ~  I_j,      s = CoC / 4 (std of a disk of diameter CoC)

The matching cost of ``h`` at a pixel is the windowed energy of that residual, summed over the
pairs of frames adjacent in focus (small relative blurs keep the high frequencies that carry the
cue). No texture model is needed: the unknown scene texture is the observed sharper frame
itself. The cost is computed on luminance in linear light (blur is linear in radiance, not in
sRGB code values), with the relative blur applied in the Fourier domain for all hypotheses at
once.

Output: the cost minimum, refined between hypotheses by a parabola, as inverse depth; a
confidence from how distinct the minimum is (flat cost = textureless or unobservable); an
all-in-focus image composited from the frames the chosen depth predicts sharpest; and the
per-hypothesis cost volume for fusion with a learned model (:mod:`focaldepth.models.hybrid`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import ClassVar

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from focaldepth.classical import edge_aware_smooth, to_grey, window_mean
from focaldepth.filters import gaussian_blur
from focaldepth.models.base import DepthModel, ModelInfo, check_inputs
from focaldepth.render import fast_fft_size

# Hypotheses reach this many sweep widths (in dioptres) past the nearest focus, and past the
# farthest down to FAR_LIMIT_FRACTION of its inverse distance (0.25: four times the farthest
# focus; an answer "twice the farthest focus" must be inside the hypothesis range).
NEAR_MARGIN_SWEEPS = 0.5
FAR_MARGIN_SWEEPS = 1.0
FAR_LIMIT_FRACTION = 0.25
BASE_BLUR_PX = 0.5  # std of the blur every frame has at best focus (lens, demosaicing, resizing)


def hypotheses_dpt(focus_distance_m: Tensor, num_hypotheses: int) -> Tensor:
    """``(B, K)`` inverse depths, evenly spaced in dioptres from beyond the farthest focus to
    before the nearest one (see the margins above)."""
    focus_dpt = 1.0 / focus_distance_m
    near_dpt, far_dpt = focus_dpt.amax(dim=1), focus_dpt.amin(dim=1)
    span_dpt = (near_dpt - far_dpt).clamp_min(1e-3 * near_dpt)
    low = torch.maximum(far_dpt - FAR_MARGIN_SWEEPS * span_dpt, FAR_LIMIT_FRACTION * far_dpt)
    high = near_dpt + NEAR_MARGIN_SWEEPS * span_dpt
    steps = torch.linspace(0.0, 1.0, num_hypotheses, dtype=focus_dpt.dtype, device=focus_dpt.device)
    return low[:, None] + steps[None] * (high - low)[:, None]


def coc_px_at(hypothesis_dpt: Tensor, focus_distance_m: Tensor, camera: Tensor) -> Tensor:
    """``(B, S, K)`` thin-lens CoC diameter in pixels of every frame at every hypothesis,
    ``(f^2/N) |1/F - h| F/(F - f) / p``."""
    focal_length_m, f_number, pixel_pitch_m = (c[:, None, None] for c in camera.unbind(dim=1))
    focus_m = focus_distance_m[:, :, None]
    coc_px = (focal_length_m**2 / (f_number * pixel_pitch_m)) * (1.0 / focus_m - hypothesis_dpt[:, None]).abs() \
        * focus_m / (focus_m - focal_length_m)
    return coc_px


def blur_std_px(coc_px: Tensor, base_blur_px: float = BASE_BLUR_PX) -> Tensor:
    """Gaussian-equivalent blur std: CoC / 4 (a uniform disk's) in quadrature with the base blur."""
    return ((coc_px / 4.0) ** 2 + base_blur_px**2).sqrt()


def radial_frequency(fft_h: int, fft_w: int, like: Tensor) -> Tensor:
    """``(fft_h, fft_w // 2 + 1)`` radial frequency in cycles per pixel on an rfft2 grid."""
    fy = torch.fft.fftfreq(fft_h, dtype=like.dtype, device=like.device)
    fx = torch.fft.rfftfreq(fft_w, dtype=like.dtype, device=like.device)
    return (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()


def psf_transfer(coc_px: Tensor, frequency: Tensor, psf: str = "disk") -> Tensor:
    """``(..., fh, fw)`` optical transfer function of PSFs of diameter ``coc_px`` ``(...)``:
    a uniform disk, ``2 J1(pi c rho) / (pi c rho)`` (real, with negative lobes), or a Gaussian
    of std ``c / 4`` (the disk's second moment)."""
    if psf == "gaussian":
        variance = (coc_px / 4.0) ** 2
        return torch.exp(-2.0 * math.pi**2 * variance[..., None, None] * frequency**2)
    if psf != "disk":
        raise ValueError(f"psf must be 'disk' or 'gaussian', got {psf!r}")
    x = math.pi * coc_px[..., None, None] * frequency
    safe = torch.where(x > 1e-4, x, torch.ones_like(x))
    return torch.where(x > 1e-4, 2.0 * torch.special.bessel_j1(safe) / safe, 1.0 - x**2 / 8.0)


# Wiener regularisation of the relative blur D_j / D_i: where the sharper frame's own blur
# has removed a frequency, that frequency cannot be blurred "further" and is left out.
RELATIVE_BLUR_EPS = 0.05


# Relative-blur filters by (FFT grid, CoC pair, window, PSF): a streaming sweep repeats its
# focus schedule, so the same filters come back every ramp. Bessel functions over K x grid
# values are a third of the plane sweep's time. The cache holds the most recent filters up to
# a byte budget (a few windows' worth at predict's working resolution).
_FILTER_CACHE: OrderedDict[tuple, tuple] = OrderedDict()
FILTER_CACHE_BYTES = 256 * 2**20


def _cache_bytes() -> int:
    def size(t: Tensor) -> int:
        return t.numel() * t.element_size()

    return sum(size(entry[1]) + sum(size(g[2]) for g in entry[0]) for entry in _FILTER_CACHE.values())


def relative_blur_filters(fft_h: int, fft_w: int, coc_i_px: Tensor, coc_j_px: Tensor, window: int,
                          psf: str, like: Tensor) -> tuple:
    """``(groups, high-pass (fh, fw'), target noise gain ())`` of :func:`pair_costs`: per source
    frame (0 = i, 1 = j) the hypotheses where it is predicted sharper, their relative blur
    times the high-pass ``(k, fh, fw')`` and noise gains ``(k, 1, 1)``. Memoised; exact, since
    the key holds the CoC values bit for bit."""
    key = (fft_h, fft_w, window, psf, like.dtype, str(like.device),
           coc_i_px.detach().cpu().numpy().tobytes(), coc_j_px.detach().cpu().numpy().tobytes())
    hit = _FILTER_CACHE.get(key)
    if hit is not None:
        _FILTER_CACHE.move_to_end(key)
        return hit
    frequency = radial_frequency(fft_h, fft_w, like)
    i_sharper = coc_i_px <= coc_j_px
    sharp_coc = torch.where(i_sharper, coc_i_px, coc_j_px)
    blurry_coc = torch.where(i_sharper, coc_j_px, coc_i_px)
    sharp_otf = psf_transfer(sharp_coc, frequency, psf)
    relative = psf_transfer(blurry_coc, frequency, psf) * sharp_otf / (sharp_otf**2 + RELATIVE_BLUR_EPS)
    relative = relative * (1.0 + RELATIVE_BLUR_EPS)  # unit gain at frequency 0
    # Local-mean removal of the residual as a high-pass on both frames (it commutes with the
    # blur, so it is one multiplication in the Fourier domain): brightness that varies slowly
    # across the image and between frames (vignetting, exposure, motion of large smooth
    # regions) is not a blur cue. A Gaussian of the box window's second moment (w^2 / 12).
    highpass = 1.0 - torch.exp(-2.0 * math.pi**2 * (window**2 / 12.0) * frequency**2)
    filtered = relative * highpass
    # Noise gains of the two filtered frames: mean squared transfer over the (half) spectrum.
    gain = (filtered**2).mean(dim=(-2, -1))[:, None, None]  # (K, 1, 1)
    target_gain = (highpass**2).mean()
    groups = []
    for source, mask in ((0, i_sharper), (1, ~i_sharper)):
        index = mask.nonzero()[:, 0]
        groups.append((source, index, filtered[index].contiguous(), gain[index]))
    entry = (groups, highpass, target_gain)
    _FILTER_CACHE[key] = entry
    while len(_FILTER_CACHE) > 1 and _cache_bytes() > FILTER_CACHE_BYTES:
        _FILTER_CACHE.popitem(last=False)
    return entry


def pair_costs(grey_i: Tensor, grey_j: Tensor, coc_i_px: Tensor, coc_j_px: Tensor, window: int,
               psf: str = "disk", noise_var_i: Tensor | None = None, noise_var_j: Tensor | None = None) -> Tensor:
    """``(K, H, W)`` per-pixel relative-blur residual energy of frames ``i`` and ``j`` (``(H, W)``
    linear luminance) for K hypotheses with predicted CoC diameters ``coc_i_px``, ``coc_j_px``
    ``(K,)``.

    Per hypothesis the predicted-sharper frame is blurred by the relative blur (the ratio of
    the two transfer functions, Wiener-regularised) and the residual high-passed at the
    ``window``'s scale (aggregation over the window happens once over the sum of pairs, in
    :func:`cost_volume`).

    With per-pixel noise variances ``noise_var_*`` ``(H, W)`` the energy that noise alone
    leaves is subtracted: ``var_target + gain * var_source`` with ``gain`` the relative blur's
    noise gain (mean squared transfer). Without it, hypotheses that blur the source more look
    better merely because blurring removes the source's noise (a bias towards depths whose
    frames differ most in blur)."""
    height, width = grey_i.shape
    pad = int(min(0.75 * float(torch.maximum(coc_i_px, coc_j_px).max()) + 2, min(height, width) - 1))
    # The far side is padded further, up to an FFT size with only small prime factors: at
    # 90 x 160 a 124 x 194 grid (2 x 97) took 2.5x as long as 125 x 200.
    pad_h = min(fast_fft_size(height + 2 * pad), 2 * height - 1) - height - pad
    pad_w = min(fast_fft_size(width + 2 * pad), 2 * width - 1) - width - pad
    both = F.pad(torch.stack([grey_i, grey_j])[:, None], (pad, pad_w, pad, pad_h), mode="reflect")[:, 0]
    fft_h, fft_w = both.shape[-2:]
    spectra = torch.fft.rfft2(both)  # (2, fft_h, fft_w//2+1)
    groups, highpass, target_gain = relative_blur_filters(fft_h, fft_w, coc_i_px, coc_j_px, window, psf, grey_i)
    targets = spectra * highpass  # each frame high-passed, as the target of the other
    noise = (noise_var_i, noise_var_j) if noise_var_i is not None and noise_var_j is not None else None
    out = torch.empty(len(coc_i_px), height, width, dtype=grey_i.dtype, device=grey_i.device)
    # Hypotheses where frame i is predicted sharper (source i, target j), then the others:
    # two dense groups instead of a per-hypothesis choice over whole spectra.
    for source, index, filtered, gain in groups:
        if index.numel() == 0:
            continue
        residual = torch.fft.irfft2(spectra[source] * filtered - targets[1 - source], s=(fft_h, fft_w))
        energy = residual[:, pad:pad + height, pad:pad + width] ** 2
        if noise is not None:
            energy = energy - (target_gain * noise[1 - source] + gain * noise[source])
        out[index] = energy
    return out


def cost_volume(linear: Tensor, focus_distance_m: Tensor, camera: Tensor, hypothesis_dpt: Tensor,
                window: int = 7, psf: str = "disk", noise_var: Tensor | None = None, pair_gap: int = 1,
                guide: Tensor | None = None, guide_eps: float = 1e-3) -> Tensor:
    """``(B, K, H, W)`` matching cost of every hypothesis: the sum over channels and over pairs
    of frames up to ``pair_gap`` apart in focus order of :func:`pair_costs`, aggregated over a
    ``window`` x ``window`` neighbourhood: a box mean, or with ``guide`` ``(B, 1, H, W)`` a
    guided filter of every cost slice (edge-aware aggregation, as cost-volume filtering in
    stereo: the window does not mix the two sides of a depth edge).

    ``linear`` is ``(B, S, C, H, W)`` linear intensities (``noise_var`` alike); each frame is
    first scaled to the stack's mean brightness (exposure changes along a sweep are not blur)."""
    linear = linear * (linear.mean(dim=(1, 2, 3, 4), keepdim=True)
                       / linear.mean(dim=(2, 3, 4), keepdim=True).clamp_min(1e-6))
    cocs = coc_px_at(hypothesis_dpt, focus_distance_m, camera)  # (B, S, K)
    order = (1.0 / focus_distance_m).argsort(dim=1)
    volumes = []
    for b in range(linear.shape[0]):
        idx = order[b].tolist()
        pairs = [(idx[a], idx[a + gap]) for gap in range(1, pair_gap + 1) for a in range(len(idx) - gap)]
        total = torch.zeros(hypothesis_dpt.shape[1], *linear.shape[-2:], dtype=linear.dtype, device=linear.device)
        for i, j in pairs:
            for c in range(linear.shape[2]):
                noise = (noise_var[b, i, c], noise_var[b, j, c]) if noise_var is not None else ()
                total = total + pair_costs(linear[b, i, c], linear[b, j, c], cocs[b, i], cocs[b, j], window, psf,
                                           *noise)
        if guide is None:
            volumes.append(window_mean(total, window))
        else:
            volumes.append(kornia.filters.guided_blur(guide[b:b + 1], total[None], window, guide_eps)[0])
    return torch.stack(volumes)


def refine_minimum(cost: Tensor, hypothesis_dpt: Tensor) -> tuple[Tensor, Tensor]:
    """Sub-hypothesis minimum of ``cost`` ``(B, K, H, W)`` over evenly spaced ``hypothesis_dpt``
    ``(B, K)``: a parabola through the minimum and its neighbours (clamped to the grid).
    Returns inverse depth ``(B, 1, H, W)`` and the argmin index ``(B, 1, H, W)``."""
    num = cost.shape[1]
    best = cost.argmin(dim=1, keepdim=True)
    centre = best.clamp(1, num - 2)
    c0, c1, c2 = (cost.gather(1, centre + d) for d in (-1, 0, 1))
    curvature = c0 - 2.0 * c1 + c2
    shift = torch.where(curvature > 1e-12, 0.5 * (c0 - c2) / curvature.clamp_min(1e-12), torch.zeros_like(c1))
    position = (centre.to(cost.dtype) + shift.clamp(-1.0, 1.0)).clamp(0, num - 1)
    low, high = hypothesis_dpt[:, :1, None, None], hypothesis_dpt[:, -1:, None, None]
    return low + position / (num - 1) * (high - low), best


def cost_confidence(cost: Tensor, noise_floor: Tensor) -> Tensor:
    """``(B, 1, H, W)`` in [0, 1]: how much lower the best hypothesis is than the typical one,
    ``(median - min) / (median + noise_floor)``; flat (textureless) costs give 0."""
    low = cost.amin(dim=1, keepdim=True)
    typical = cost.median(dim=1, keepdim=True).values
    return ((typical - low) / (typical + noise_floor)).clamp(0.0, 1.0)


def noise_floor(grey_linear: Tensor, window: int) -> Tensor:
    """``(B, 1, 1, 1)`` a cost level that sensor noise alone produces: twice the median over
    pixels of the windowed energy of each frame's finest-scale detail (a robust noise
    variance), per pair of frames."""
    fine = grey_linear - gaussian_blur(grey_linear, 5, 1.0, border_type="replicate")
    energy = window_mean(fine.flatten(0, 1)[:, None] ** 2, window).view(*grey_linear.shape)
    per_frame = energy.flatten(2).median(dim=2).values  # (B, S)
    pairs = max(grey_linear.shape[1] - 1, 1)
    return (2.0 * pairs * per_frame.mean(dim=1)).view(-1, 1, 1, 1)


def noise_std_srgb(grey_srgb: Tensor) -> Tensor:
    """``(B,)`` sensor noise std in sRGB code values (0..1) of a stack ``(B, S, H, W)``:
    Immerkaer's Laplacian-difference mask with a median instead of a mean (robust to
    texture), the least over frames (the most defocused frame has the least texture)."""
    mask = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], dtype=grey_srgb.dtype,
                        device=grey_srgb.device)
    response = F.conv2d(grey_srgb.flatten(0, 1)[:, None], mask[None, None])
    sigma = 1.4826 * response.abs().flatten(1).median(dim=1).values / 6.0  # |mask| = 6
    return sigma.view(grey_srgb.shape[:2]).amin(dim=1)


def linear_noise_var(grey_srgb: Tensor, sigma_srgb: Tensor) -> Tensor:
    """``(B, S, H, W)`` noise variance of linear luminance: sRGB-domain noise through the slope
    of the sRGB-to-linear curve at each pixel's local mean (noise is roughly constant in code
    values; linearising amplifies it in bright pixels)."""
    local = window_mean(grey_srgb.flatten(0, 1)[:, None], 5).view(grey_srgb.shape).clamp(0, 1)
    slope = torch.where(local > 0.04045, 2.4 / 1.055 * ((local + 0.055) / 1.055) ** 1.4,
                        torch.full_like(local, 1.0 / 12.92))
    return (sigma_srgb.view(-1, 1, 1, 1) * slope) ** 2


def sharpness_composite(frames: Tensor, stds_px: Tensor) -> Tensor:
    """All-in-focus image ``(B, C, H, W)``: per pixel a soft choice of the frames the estimated
    depth predicts sharpest (``stds_px`` ``(B, S, H, W)``), weights ``exp(-((s - s_min) / 0.5 px)^2)``
    (a half-pixel more blur costs a factor e: frames about
    as sharp as the best are averaged, which also averages their noise)."""
    excess = (stds_px - stds_px.amin(dim=1, keepdim=True)) / 0.5
    weights = torch.softmax(-(excess**2), dim=1)
    return (weights[:, :, None] * frames).sum(dim=1)


def defocus_volume_depth(frames: Tensor, focus_distance_m: Tensor, camera: Tensor, *,
                         num_hypotheses: int = 32, window: int = 7, smooth: bool = True,
                         smooth_window: int = 15, smooth_eps: float = 1e-3, psf: str = "disk",
                         denoise: bool = True, colour: bool = False, pair_gap: int = 1,
                         guided_aggregation: bool = False) -> dict[str, Tensor]:
    """Depth from defocus over hypotheses beyond the sweep (module docstring).

    Args:
        frames: ``(B, S, C, H, W)`` sRGB in [0, 1], S >= 2 with at least two focus distances.
        focus_distance_m: ``(B, S)``; camera: ``(B, 3)`` ``[focal_length_m, f_number, pixel_pitch_m]``.
        num_hypotheses: planes of the sweep over inverse depth.
        window: cost aggregation window (odd, pixels).
        smooth: confidence-weighted edge-aware smoothing of inverse depth (as the classical
            baseline does), guided by the all-in-focus image.

    Returns ``depth_m``, ``confidence`` ``(B, 1, H, W)``, ``all_in_focus`` ``(B, C, H, W)``,
    ``cost`` ``(B, K, H, W)`` and ``hypotheses_dpt`` ``(B, K)``.
    """
    check_inputs(frames, focus_distance_m, camera)
    if frames.shape[1] < 2:
        raise ValueError(f"depth from defocus needs at least 2 frames, got {frames.shape[1]}")
    with torch.no_grad():
        focus_distance_m = focus_distance_m.to(frames.dtype)
        camera = camera.to(frames.dtype)
        linear = kornia.color.rgb_to_linear_rgb(frames.flatten(0, 1).clamp(0, 1)) if frames.shape[2] == 3 \
            else frames.flatten(0, 1)
        linear = linear.unflatten(0, frames.shape[:2])
        grey = to_grey(linear)[:, :, 0]  # (B, S, H, W)
        grey_srgb = to_grey(frames.clamp(0, 1))[:, :, 0]
        sigma_srgb = noise_std_srgb(grey_srgb)
        if colour:
            srgb = frames.clamp(0, 1).flatten(1, 2)  # (B, S*C, H, W): every channel its own noise
            noise_var = linear_noise_var(srgb, noise_std_srgb(srgb)).view(frames.shape) if denoise else None
            matched = linear
        else:
            noise_var = linear_noise_var(grey_srgb, sigma_srgb)[:, :, None] if denoise else None
            matched = grey[:, :, None]
        hypotheses = hypotheses_dpt(focus_distance_m, num_hypotheses)
        guide = grey_srgb[:, -1:] if guided_aggregation else None
        cost = cost_volume(matched, focus_distance_m, camera, hypotheses, window, psf, noise_var, pair_gap, guide)
        inverse_depth, _ = refine_minimum(cost, hypotheses)
        num_frames = frames.shape[1]
        num_pairs = sum(max(num_frames - gap, 0) for gap in range(1, pair_gap + 1))
        scale = num_pairs * matched.shape[2] / max(num_frames - 1, 1)
        confidence = cost_confidence(cost, scale * noise_floor(grey, window))
        stds = blur_std_px(coc_px_at(inverse_depth.flatten(1), focus_distance_m, camera))  # (B, S, H*W)
        aif = sharpness_composite(frames, stds.view(*frames.shape[:2], *frames.shape[-2:]))
        if smooth:
            inverse_depth = edge_aware_smooth(inverse_depth, aif, confidence, smooth_window, smooth_eps)
            inverse_depth = torch.minimum(torch.maximum(inverse_depth, hypotheses[:, :1, None, None]),
                                          hypotheses[:, -1:, None, None])
    return {"depth_m": 1.0 / inverse_depth, "confidence": confidence, "all_in_focus": aif,
            "cost": cost, "hypotheses_dpt": hypotheses}


class DefocusVolume(DepthModel):
    """The plane-sweep depth from defocus behind the common model interface (no parameters)."""

    info: ClassVar[ModelInfo] = ModelInfo(
        consumes="stack_any", uses_focus_distance=True, uses_camera=True,
        paper="relative-blur plane sweep (Subbarao 1988 relative blur; plane sweep over depth as in "
              "DDFS, Fujimura et al., IJCV 2024); focaldepth implementation")
    #: Frames are sorted by focus into pairs (models.base.order_equivariant).
    frame_order_equivariant = True

    def __init__(self, num_hypotheses: int = 32, window: int = 7, smooth: bool = True, **options):
        super().__init__()
        self.num_hypotheses, self.window, self.smooth = num_hypotheses, window, smooth
        self.options = options  # further keywords of defocus_volume_depth (colour, pair_gap, ...)

    def forward(self, frames: Tensor, focus_distance_m: Tensor, camera: Tensor) -> dict[str, Tensor]:
        outputs = defocus_volume_depth(frames, focus_distance_m, camera, num_hypotheses=self.num_hypotheses,
                                       window=self.window, smooth=self.smooth, **self.options)
        return {k: outputs[k] for k in ("depth_m", "confidence", "all_in_focus")}

    def extra_repr(self) -> str:
        return f"num_hypotheses={self.num_hypotheses}, window={self.window}, smooth={self.smooth}"
