"""Self-supervised fine-tuning of a depth model on unlabeled focal stacks (issue 12, part 5).

No depth is needed: the model's depth re-renders the stack through the thin-lens renderer
(:class:`focaldepth.losses.DefocusReconstructionLoss`, DEReD: Si et al., CVPR 2023) and the
re-rendered frames are compared with the captured ones. The objective per stack is

    L = defocus(render(aif, depth), frames)
        + anchor_weight * mean((u - u_start)^2)            u = inverse depth in sweep widths
        + smooth_weight * edge_aware_smoothness(u, aif)

* ``aif`` (the sharp image the renderer blurs) is the model's own ``all_in_focus`` / ``aif``
  output when it has one, else a focus-measure composite of the frames (:func:`focus_composite`),
  and always **detached**: it is an estimate of the scene, not a free variable. Optimising
  through it lets the model explain blur with a blurred "sharp" image instead of with depth
  (DEReD trains its AIF head jointly, but with a separate network; here the depth head is
  the only thing adapted).
* The **anchor** keeps the answer near the starting prediction: where the stack has no
  texture every depth renders the same frames, so the reconstruction loss gives no gradient
  there and the weights would otherwise drift wherever the textured pixels pull them; with
  weak blur the loss is flat and its minimum need not be the true depth (a rendered stack with
  2 px of blur per dioptre: AbsRel 0.063 -> 0.135 without anchor, 0.061 with; docs/selfsup.md).
  The anchor is on the prediction, in units of the sweep width, so its weight means the same
  for any lens.
* The **edge-aware smoothness** (Monodepth's, as in DEReD) propagates depth from textured
  into flat regions along the sharp image's edges instead of leaving them to noise.
* The model stays in ``eval()`` mode while its weights change: BatchNorm keeps its training
  statistics (one scene's statistics would replace them otherwise and every later scene
  would see the wrong normalisation).

Deterministic given ``seed`` (crops and stack order come from a CPU generator); the device
follows the stacks' tensors (CUDA works; nothing here moves data to the CPU).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace

import kornia
import torch
from torch import Tensor

from focaldepth.errors import UserError
from focaldepth.losses import DEPTH_FLOOR_M, DefocusReconstructionLoss
from focaldepth.models.base import DepthModel, check_inputs

# Blur scales tried by fit_blur_scale (relative mode): 1/4 .. 4 in half octaves.
BLUR_SCALES = tuple(2.0 ** (k / 2.0) for k in range(-4, 5))


@dataclass(frozen=True)
class UnlabeledStack:
    """One window: ``frames`` (1, S, 3, H, W) in [0, 1], ``focus_distance_m`` (1, S),
    ``camera`` (1, 3) as the model sees it, and ``loss_camera`` (1, 3) the lens the renderer
    uses (None = ``camera``; differs only when the blur scale was fitted, relative mode)."""

    frames: Tensor
    focus_distance_m: Tensor
    camera: Tensor
    loss_camera: Tensor | None = None

    def render_camera(self) -> Tensor:
        return self.camera if self.loss_camera is None else self.loss_camera


@dataclass(frozen=True)
class AdaptSettings:
    """Knobs of :func:`adapt`; defaults chosen on DFD *training* scenes (docs/selfsup.md)."""

    steps: int = 60
    lr: float = 1e-4
    anchor_weight: float = 1.0
    smooth_weight: float = 0.01
    crop_px: int | None = 128  # random square crops per step (None: whole frames)
    num_layers: int = 16  # renderer layers of the loss
    linear_light: bool = True  # blur in linear light, as a lens does (sRGB frames)
    seed: int = 0


@dataclass
class AdaptLog:
    """Per-step losses (``steps``: dicts of floats) and the cost."""

    settings: dict
    steps: list[dict] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# --- pure pieces ----------------------------------------------------------------------------


def check_stack(stack: UnlabeledStack) -> None:
    """Shapes of one stack, with a message saying what was expected."""
    check_inputs(stack.frames, stack.focus_distance_m, stack.camera)
    if stack.frames.shape[0] != 1:
        raise ValueError(f"UnlabeledStack: one window per stack (batch 1), got {tuple(stack.frames.shape)}")
    if stack.frames.shape[1] < 2:
        raise UserError(f"self-supervised adaptation needs at least 2 frames per stack, got {stack.frames.shape[1]}")
    if not bool(torch.isfinite(stack.focus_distance_m).all()):
        raise UserError("self-supervised adaptation needs focus distances (the loss renders blur from them)")


def focus_composite(frames: Tensor, window: int = 9, power: float = 4.0) -> Tensor:
    """All-in-focus estimate ``(B, C, H, W)`` from ``frames`` ``(B, S, C, H, W)``: per pixel
    the frames weighted by their sum-modified-Laplacian focus measure to the ``power``
    (soft, so no seams where the argmax flips between two equally sharp slices)."""
    from focaldepth.classical import focus_measure

    measure = focus_measure(frames, window).clamp_min(0.0) + 1e-8
    weights = measure**power
    weights = weights / weights.sum(dim=1, keepdim=True)
    return (weights[:, :, None] * frames).sum(dim=1)


def all_in_focus_estimate(outputs: dict, frames: Tensor) -> Tensor:
    """The sharp image the renderer blurs (detached): the model's own all-in-focus output
    if it has one, else :func:`focus_composite`."""
    image = outputs.get("all_in_focus", outputs.get("aif"))
    if image is None:
        image = focus_composite(frames)
    return image.detach().clamp(0.0, 1.0)


def sweep_normalised_inverse_depth(depth_m: Tensor, focus_distance_m: Tensor) -> Tensor:
    """Inverse depth in sweep widths: 0 at the farthest focus, 1 at the nearest."""
    focus_dpt = 1.0 / focus_distance_m
    far = focus_dpt.amin(dim=1).view(-1, 1, 1, 1)
    width = (focus_dpt.amax(dim=1).view(-1, 1, 1, 1) - far).clamp_min(1e-6)
    return (1.0 / depth_m.clamp_min(DEPTH_FLOOR_M) - far) / width


def anchor_term(inverse_sweep: Tensor, start_inverse_sweep: Tensor) -> Tensor:
    return ((inverse_sweep - start_inverse_sweep) ** 2).mean()


def smoothness_term(inverse_sweep: Tensor, image: Tensor) -> Tensor:
    """Edge-aware smoothness (Monodepth, as in DEReD): gradients of inverse depth weighted
    by exp(-|image gradient|)."""
    return kornia.losses.inverse_depth_smoothness_loss(inverse_sweep, image)


def reconstruction_loss(depth_m: Tensor, stack: UnlabeledStack, aif: Tensor, settings: AdaptSettings) -> Tensor:
    """The defocus-reconstruction loss of ``depth_m`` on ``stack`` (in linear light if asked:
    sRGB frames and sharp image linearised, so the blur mixes light as a lens does)."""
    frames = stack.frames
    if settings.linear_light:
        frames = kornia.color.rgb_to_linear_rgb(frames.flatten(0, 1).clamp(0, 1)).unflatten(0, frames.shape[:2])
        aif = kornia.color.rgb_to_linear_rgb(aif.clamp(0, 1))
    loss = DefocusReconstructionLoss(aif="batch", num_layers=settings.num_layers, layout="window")
    batch = {"frames": frames, "focus_distance_m": stack.focus_distance_m,
             "camera": stack.render_camera(), "aif": aif}
    return loss({"depth_m": depth_m}, batch)


def crop(stack: UnlabeledStack, targets: dict[str, Tensor], size_px: int | None,
         generator: torch.Generator) -> tuple[UnlabeledStack, dict[str, Tensor]]:
    """The same random square crop of the stack and of its per-pixel targets."""
    height, width = stack.frames.shape[-2:]
    if size_px is None or (size_px >= height and size_px >= width):
        return stack, targets
    crop_h, crop_w = min(size_px, height), min(size_px, width)
    top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
    rows, cols = slice(top, top + crop_h), slice(left, left + crop_w)
    return (replace(stack, frames=stack.frames[..., rows, cols]),
            {key: value[..., rows, cols] for key, value in targets.items()})


def stack_targets(model: DepthModel, stack: UnlabeledStack) -> dict[str, Tensor]:
    """What stays fixed while adapting: the sharp image and the starting prediction."""
    with torch.no_grad():
        outputs = model(stack.frames, stack.focus_distance_m, stack.camera)
    return {"aif": all_in_focus_estimate(outputs, stack.frames),
            "start": sweep_normalised_inverse_depth(outputs["depth_m"], stack.focus_distance_m).detach()}


def objective(model: DepthModel, stack: UnlabeledStack, targets: dict[str, Tensor],
              settings: AdaptSettings) -> tuple[Tensor, dict[str, float]]:
    """Total loss (with gradient) and its unweighted parts (floats, for the log)."""
    depth = model(stack.frames, stack.focus_distance_m, stack.camera)["depth_m"]
    inverse = sweep_normalised_inverse_depth(depth, stack.focus_distance_m)
    parts = {"defocus": reconstruction_loss(depth, stack, targets["aif"], settings),
             "anchor": anchor_term(inverse, targets["start"]),
             "smooth": smoothness_term(inverse, targets["aif"])}
    total = parts["defocus"] + settings.anchor_weight * parts["anchor"] + settings.smooth_weight * parts["smooth"]
    return total, {key: float(value.detach()) for key, value in parts.items()}


# --- the loop -------------------------------------------------------------------------------


def adapt(model: DepthModel, stacks: list[UnlabeledStack], *, settings: AdaptSettings | None = None,
          **overrides) -> tuple[DepthModel, AdaptLog]:
    """Fine-tune a copy of ``model`` on unlabeled ``stacks`` (see the module docstring);
    returns ``(adapted model in eval mode, log)``. ``overrides`` replace fields of
    ``settings`` (``steps=``, ``lr=``, ...). ``model`` itself is not changed."""
    settings = replace(settings or AdaptSettings(), **overrides)
    if settings.steps < 0:
        raise UserError(f"steps must be >= 0, got {settings.steps}")
    if not settings.lr > 0:
        raise UserError(f"lr must be positive, got {settings.lr}")
    if not stacks:
        raise UserError("no stacks to adapt on")
    for stack in stacks:
        check_stack(stack)
    adapted = copy.deepcopy(model).eval()  # eval: BatchNorm statistics stay (module doc)
    parameters = [p for p in adapted.parameters() if p.requires_grad]
    if not parameters:
        raise UserError(f"{type(model).__name__} has no trainable weights to adapt")
    targets = [stack_targets(adapted, stack) for stack in stacks]
    optimiser = torch.optim.Adam(parameters, lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)  # CPU: same crops on any device
    log = AdaptLog(settings=asdict(settings))
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    order: list[int] = []
    for step in range(settings.steps):
        if not order:  # every stack once per pass, in a seeded order
            order = torch.randperm(len(stacks), generator=generator).tolist()
        index = order.pop()
        stack, stack_target = crop(stacks[index], targets[index], settings.crop_px, generator)
        total, parts = objective(adapted, stack, stack_target, settings)
        if not math.isfinite(float(total.detach())):
            raise UserError(f"adaptation diverged at step {step} (loss {float(total)}); lower --lr")
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        optimiser.step()
        log.steps.append({"step": step, "stack": index, "total": float(total.detach()), **parts})
    log.cpu_s = time.process_time() - cpu_start
    log.wall_s = time.perf_counter() - wall_start
    return adapted.eval(), log


def reconstruction_error(model: DepthModel, stacks: list[UnlabeledStack],
                         settings: AdaptSettings | None = None) -> float:
    """Mean defocus-reconstruction loss of ``model`` over whole ``stacks`` (no crops, no
    gradient): the before / after number. The sharp image is the model's own estimate
    (:func:`all_in_focus_estimate`), so for a model without one it is the same for both."""
    settings = settings or AdaptSettings()
    values = []
    with torch.no_grad():
        for stack in stacks:
            outputs = model.eval()(stack.frames, stack.focus_distance_m, stack.camera)
            aif = all_in_focus_estimate(outputs, stack.frames)
            values.append(float(reconstruction_loss(outputs["depth_m"], stack, aif, settings)))
    return sum(values) / len(values)


def with_blur_scale(stack: UnlabeledStack, scale: float) -> UnlabeledStack:
    """``stack`` whose renderer lens blurs ``scale`` times as much per dioptre
    (CoC = f^2 / (N p) |1/d - 1/F|: the f-number divided by ``scale``)."""
    camera = stack.camera.clone()
    camera[:, 1] = camera[:, 1] / scale
    return replace(stack, loss_camera=camera)


def fit_blur_scale(model: DepthModel, stacks: list[UnlabeledStack], settings: AdaptSettings | None = None,
                   scales: tuple[float, ...] = BLUR_SCALES) -> tuple[float, dict[float, float]]:
    """Relative mode (lens and focus unknown, pseudo focus distances): the blur per pseudo
    dioptre is unknown, so try ``scales`` of the stand-in lens's blur and keep the one whose
    rendering of the *starting* prediction matches the frames best. If the real sweep is
    linear in dioptres (a focus motor's usual schedule), real and pseudo dioptres differ by
    an affine map and one scale is all that is missing. Returns (scale, loss per scale)."""
    losses = {scale: reconstruction_error(model, [with_blur_scale(s, scale) for s in stacks], settings)
              for scale in scales}
    return min(losses, key=losses.get), losses
