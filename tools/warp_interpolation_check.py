"""Diagnostic behind results/default_aligned (its output: results/default_aligned/warp_interpolation_check.txt): why does predict's flow alignment change static-scene numbers?
Variants of FlowAligner's warp interpolation on the static or dynamic sequences of data/cpu_test (5-frame ramps, the
accuracy pass of `focaldepth evaluate`), with the sharpness (mean abs Laplacian) the warp leaves in
the non-reference frames and the signed bias mean log(pred/gt).

    OMP_NUM_THREADS=1 .venv/bin/python tools/warp_interpolation_check.py static
    OMP_NUM_THREADS=1 .venv/bin/python tools/warp_interpolation_check.py dynamic
    OMP_NUM_THREADS=1 .venv/bin/python tools/warp_interpolation_check.py evaluate-cubic

The last runs the whole `focaldepth evaluate --align --num-frames 5` (both passes, temporal
metrics included) with predict's aligner switched to bicubic warping, into /tmp.
"""
import cv2, numpy as np, torch, sys
from focaldepth import predict as P
from focaldepth.evaluate import open_test_set, flow_align_frames, model_predictor, load_model_under_test
torch.set_num_threads(1)
which = sys.argv[1]  # static, dynamic or evaluate-cubic
orig_align = P.FlowAligner.align
def make(interp, round_flow=False):
    def align(self, ref_gray, other_gray, other_rgb):
        flow = self.flow.calc(ref_gray, other_gray, None)
        if round_flow: flow = np.round(flow)
        h, w = ref_gray.shape
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        return cv2.remap(other_rgb, gx + flow[..., 0], gy + flow[..., 1], interpolation=interp,
                         borderMode=cv2.BORDER_REPLICATE)
    return align
if which == "evaluate-cubic":
    from focaldepth.evaluate import evaluate
    P.FlowAligner.align = make(cv2.INTER_CUBIC)
    for name, checkpoint in (("sweepnet", "sweepnet_default"), ("classical", "classical")):
        summary = evaluate(checkpoint, "data/cpu_test", f"/tmp/warp_check_cubic_{name}",
                           num_frames=5, align=True, progress=False)
        for motion in ("static", "dynamic"):
            g = summary["by_motion"][motion]
            m, t = g["metres"], g["temporal"]
            print(f"evaluate --align, bicubic warp, {name:9s} {motion:7s} AbsRel {m['absrel']:.3f} "
                  f"RMSE {m['rmse']:.3f} d1 {m['delta1']:.2%}"
                  + (f" temporal err {t['temporal_err_m']:.3f} m (rel {t['temporal_err_rel']:.3f})"
                     if t else ""), flush=True)
    sys.exit(0)
variants = {"raw": None, "predict(linear)": orig_align, "cubic": make(cv2.INTER_CUBIC),
            "lanczos4": make(cv2.INTER_LANCZOS4), "integer-px flow": make(cv2.INTER_NEAREST, True)}
ds = open_test_set("data/cpu_test", num_frames=5, sample="ramp")
items = [i for i, r in enumerate(ds.records) if r["is_dynamic"] == (which == "dynamic")]
models = {n: model_predictor(load_model_under_test(c).model) for n, c in
          (("sweepnet", "src/focaldepth/weights/sweepnet_default.pt"), ("classical", "classical"))}
lap = lambda f: np.abs(cv2.Laplacian(f, cv2.CV_32F)).mean()
for vname, fn in variants.items():
    stats = {n: [] for n in models}; sharp = []
    for i in items:
        it = ds[i]
        frames = it["frames"]
        if fn is not None:
            P.FlowAligner.align = fn
            al = flow_align_frames(frames)
            P.FlowAligner.align = orig_align
            for k in range(4):
                a = al[k].mean(0).numpy(); r = frames[k].mean(0).numpy()
                sharp.append(lap(a) / max(lap(r), 1e-9))
            frames = al
        b = {"frames": frames[None], "focus_distance_m": it["focus_distance_m"][None], "camera": it["camera"][None]}
        gt, v = it["depth_m"], it["valid"]
        for n, m in models.items():
            pred = m(b)[0]
            pv, gv = pred[v].double(), gt[v].double()
            stats[n].append(((pv - gv).abs() / gv).mean().item())
            stats[n].append(torch.log(pv / gv).mean().item())
    out = f"{which:7s} {vname:16s} sharpness(non-ref frames, aligned/raw) {np.mean(sharp) if sharp else 1:.3f}"
    for n, s in stats.items():
        s = np.array(s).reshape(-1, 2)
        out += f" | {n}: AbsRel {s[:,0].mean():.3f} mean log(pred/gt) {s[:,1].mean():+.3f}"
    print(out, flush=True)
