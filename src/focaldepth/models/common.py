"""Building blocks shared by the zoo's architectures.

Everything here is small and architecture-neutral: the :class:`ZooModel` base (input checks,
output depth mapping, checkpoint conventions), per-slice application of 2-D modules to
``(B, S, C, H, W)`` stacks, the set operations of permutation-invariant networks, the focus
distance input channel, conv/BN/activation layers and weight initialisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from focaldepth.errors import UserError
from focaldepth.models.base import DepthModel, check_inputs, depth_from_unit, unit_from_depth

#: Margin that :func:`focaldepth.models.base.depth_range_dpt` widens the swept range by.
STACK_RANGE_MARGIN = 0.25


def check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    """Raise a UserError unless ``value`` is one of ``allowed`` (constructor arguments come
    from user configs, so a bad value is the user's to fix)."""
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def check_depth_range(depth_range_m: Sequence[float] | None) -> tuple[float, float] | None:
    """Validate an optional fixed ``(near_m, far_m)`` output range."""
    if depth_range_m is None:
        return None
    if len(depth_range_m) != 2:
        raise UserError(f"depth_range_m must be (near_m, far_m), got {depth_range_m!r}")
    near_m, far_m = float(depth_range_m[0]), float(depth_range_m[1])
    if not 0 < near_m < far_m < float("inf"):
        raise UserError(f"depth_range_m must satisfy 0 < near < far < inf, got {depth_range_m!r}")
    return near_m, far_m


def depth_from_unit_fixed(unit: torch.Tensor, depth_range_m: tuple[float, float]) -> torch.Tensor:
    """Like :func:`base.depth_from_unit` but over a fixed metric range: 0 = far, 1 = near,
    linear in inverse depth. Used where the stack gives no range (one image, one focus)."""
    near_m, far_m = depth_range_m
    low_dpt, high_dpt = 1.0 / far_m, 1.0 / near_m
    return 1.0 / (low_dpt + unit.clamp(0, 1) * (high_dpt - low_dpt))


def focus_unit_channel(
    focus_distance_m: torch.Tensor, height_px: int, width_px: int
) -> torch.Tensor:
    """The focus-distance input channel ``(B, S, 1, H, W)``: each frame's focus distance as its
    position on the stack's own output scale, ``base.unit_from_depth(F_s, stack)``, i.e. inverse
    focus normalised by the stack's dioptric range widened by 25 % on each side (nearest focus
    -> 5/6, farthest -> 1/6 for S >= 2). It is camera- and unit-free, computed from the set of
    focus distances only (so it keeps permutation invariance), and in the same units as the
    network's normalised depth output, so "in focus" means "output = channel value"."""
    batch, slices = focus_distance_m.shape
    unit = unit_from_depth(focus_distance_m.view(batch, slices, 1, 1), focus_distance_m)
    return unit.view(batch, slices, 1, 1, 1).expand(batch, slices, 1, height_px, width_px)


def per_slice(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every slice of ``(B, S, C, H, W)`` with shared weights."""
    batch, slices = x.shape[:2]
    y = module(x.flatten(0, 1))
    return y.view(batch, slices, *y.shape[1:])


def max_over_slices(x: torch.Tensor) -> torch.Tensor:
    """Global max-pool across the slice axis: ``(B, S, C, H, W) -> (B, C, H, W)``. Symmetric in
    the slices and defined for any S, which is what makes the pooling networks order- and
    length-agnostic (Aittala & Durand 2018)."""
    return x.amax(dim=1)


def with_slice_max(x: torch.Tensor) -> torch.Tensor:
    """Concatenate each slice's features with the max over all slices: ``C -> 2C`` channels."""
    pooled = max_over_slices(x).unsqueeze(1).expand_as(x)
    return torch.cat([x, pooled], dim=2)


def coc_px_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """CoC diameters in pixels are non-negative; softplus keeps gradients alive near zero."""
    return F.softplus(logits)


def activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky":
        return nn.LeakyReLU(0.2, inplace=True)
    raise ValueError(f"unknown activation {kind!r}")


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int | None = None,
    batch_norm: bool = True,
    act: str | None = "relu",
    transpose: bool = False,
    bn_eps: float = 1e-5,
    bias: bool | None = None,
) -> nn.Sequential:
    """Convolution (or transposed convolution), optional BatchNorm, optional activation. The
    conv has no bias when BatchNorm follows (the BN shift makes it redundant)."""
    if padding is None:
        padding = (kernel_size - 1) // 2
    if bias is None:
        bias = not batch_norm
    conv_type = nn.ConvTranspose2d if transpose else nn.Conv2d
    layers: list[nn.Module] = [
        conv_type(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels, eps=bn_eps))
    if act is not None:
        layers.append(activation(act))
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """He-normal convolutions and linear layers, zero biases, unit BatchNorm: the seed code's
    initialisation, except that it drew BatchNorm weights from N(0, 1) (we keep PyTorch's 1)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def positive_ints(name: str, values: Sequence[int], length: int | None = None) -> tuple[int, ...]:
    """Validate a channel-width list from a config."""
    values = tuple(values)
    if length is not None and len(values) != length:
        raise UserError(f"{name} must have {length} entries, got {len(values)}: {values!r}")
    if not values or not all(isinstance(v, int) and v > 0 for v in values):
        raise UserError(f"{name} must be positive integers, got {values!r}")
    return values


class ZooModel(DepthModel):
    """Base of the zoo's architectures: shape checks, the output depth mapping and the input
    conventions written into checkpoints.

    Subclasses set ``in_channels`` (colour channels per frame), ``size_multiple_px`` (H and W
    must be multiples of it), optionally ``num_frames`` (fixed stack size) and
    ``image_size_px`` (fixed H, W), ``focus_channel`` (frames get :func:`focus_unit_channel`
    appended) and ``depth_range_m`` (None: map the normalised output over the stack's swept
    range with :func:`base.depth_from_unit`; a pair: a fixed metric range).
    """

    in_channels: int = 3
    size_multiple_px: int = 1
    num_frames: int | None = None
    image_size_px: tuple[int, int] | None = None
    depth_range_m: tuple[float, float] | None = None
    focus_channel: bool = False

    def check(
        self, frames: torch.Tensor, focus_distance_m: torch.Tensor, camera: torch.Tensor
    ) -> None:
        """Raise ValueError with the expected layout when the inputs do not fit this model."""
        check_inputs(frames, focus_distance_m, camera, self.num_frames)
        channels, height, width = frames.shape[2:]
        if channels != self.in_channels:
            raise ValueError(
                f"frames: this model takes {self.in_channels} channels per frame, got {channels}"
            )
        if self.image_size_px is not None and (height, width) != tuple(self.image_size_px):
            raise ValueError(
                f"frames: this model takes exactly H x W = {self.image_size_px[0]} x "
                f"{self.image_size_px[1]} px (fixed by its fully connected layers), "
                f"got {height} x {width}"
            )
        multiple = self.size_multiple_px
        if height % multiple or width % multiple:
            raise ValueError(
                f"frames: H and W must be multiples of {multiple} px for this model, "
                f"got {height} x {width}"
            )

    def depth_from_unit(self, unit: torch.Tensor, focus_distance_m: torch.Tensor) -> torch.Tensor:
        """Metric depth from the network's normalised output in [0, 1]."""
        if self.depth_range_m is not None:
            return depth_from_unit_fixed(unit, self.depth_range_m)
        return depth_from_unit(unit, focus_distance_m)

    def depth_output_convention(self) -> dict:
        """How the normalised output becomes metres (stored in checkpoints)."""
        if self.depth_range_m is not None:
            return {
                "unit": "sigmoid in [0, 1], 0 = far, 1 = near, linear in inverse depth",
                "range": "fixed",
                "depth_range_m": list(self.depth_range_m),
            }
        return {
            "unit": "sigmoid in [0, 1], 0 = far, 1 = near, linear in inverse depth",
            "range": "focus distances of the stack, widened on each side",
            "margin": STACK_RANGE_MARGIN,
            "function": "focaldepth.models.base.depth_from_unit",
        }

    def conventions(self) -> dict:
        """Model-specific input conventions (merged into the checkpoint's conventions)."""
        conventions: dict = {
            "in_channels": self.in_channels,
            "size_multiple_px": self.size_multiple_px,
            "depth_mapping": self.depth_output_convention(),
            "focus_channel": (
                "focaldepth.models.common.focus_unit_channel" if self.focus_channel else None
            ),
        }
        if self.num_frames is not None:
            conventions["num_frames"] = self.num_frames
        if self.image_size_px is not None:
            conventions["image_size_px"] = list(self.image_size_px)
        return conventions
