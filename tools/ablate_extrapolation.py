"""Does SweepNet's extrapolation head help? Scores one checkpoint trained with the head
(runs/sweepnet_v2_stage1/checkpoints/last.pt) as trained, with a higher floor behind the farthest
focus (the head may reach at most 1/floor times the farthest focus distance), and with the head
switched off (zeroed: the pure focus-distance vote), on every third sequence of the held-out
test sets and on 7 DFD indoor scenes (every 12th; DSLR 35 mm f/2.8, cover/inner/wide 5-frame
sweeps synthesised as in focaldepth.rgbd_eval, at half resolution).

  OMP_NUM_THREADS=1 python tools/ablate_extrapolation.py runs/sweepnet_v2_stage1/checkpoints/last.pt \
      data/cpu_test_blender:5 dfd data/cpu_test_v2:10 data/cpu_test:5 > results/extrapolation_head/output.txt
"""
import sys, copy, torch, numpy as np
torch.set_num_threads(1)
from focaldepth.data import FocusSweepDataset
from focaldepth.metrics import depth_metrics
from focaldepth.predict import load_model
from focaldepth.models import sweepnet as S
from focaldepth import rgbd_eval as R
from focaldepth.optics import Camera, dioptric_ramp
base = load_model(sys.argv[1]).eval()
def zero_head(m):
    m = copy.deepcopy(m); torch.nn.init.zeros_(m.offset_head.weight); torch.nn.init.zeros_(m.offset_head.bias); return m
VARIANTS = {"as_trained": (base, 0.25), "floor0.5": (base, 0.5), "floor0.8": (base, 0.8), "head_off": (zero_head(base), 0.25)}
def run_all(frames, focus, cam, gt, valid, res):
    for name, (m, floor) in VARIANTS.items():
        S.FARTHEST_FRACTION = floor
        with torch.no_grad():
            p = m(frames, focus, cam)["depth_m"]
        if p.shape[-2:] != gt.shape[-2:]:
            p = torch.nn.functional.interpolate(p, size=gt.shape[-2:], mode="bilinear")
        mm = depth_metrics(p, gt, valid); res.setdefault(name, []).append([float(mm[k]) for k in ("absrel", "rmse", "delta1")])
def report(title, res):
    print(title, flush=True); [print(f"  {k:12s} AbsRel {np.mean([r[0] for r in v]):.3f} RMSE {np.mean([r[1] for r in v]):.3f} d1 {np.mean([r[2] for r in v]):.3f}", flush=True) for k, v in res.items()]
for spec in sys.argv[2:]:
    res = {}
    if spec == "dfd":
        for pair in R.select_pairs(R.dfd_data_root(), 12):
            sc = R.load_dfd_scene(pair); cam = Camera(35.0, 2.8, 23.6, sc.rgb.shape[1])
            for proto in ("cover", "inner", "wide"):
                near, far = R.sweep_range_m(sc.depth_m, sc.valid, proto)
                focus = [float(f) for f in dioptric_ramp(near, far, 5)]
                fr = R.render_sweeps(sc.rgb, sc.depth_m, cam, [focus], seed=0)[0]
                frames = torch.nn.functional.interpolate(torch.from_numpy(fr).permute(0,3,1,2).float()/255, scale_factor=0.5, mode="area")[None]
                camt = torch.tensor([[cam.focal_length_m, cam.f_number, cam.pixel_pitch_m * 2]])
                run_all(frames, torch.tensor([focus]), camt, torch.from_numpy(sc.depth_m)[None,None], torch.from_numpy(sc.valid)[None,None], res)
    else:
        root, n = spec.split(":"); ds = FocusSweepDataset(root, num_frames=int(n), sample="ramp", random_crop=False)
        for i in range(0, len(ds), 3):
            it = ds[i]; run_all(it["frames"][None], it["focus_distance_m"][None], it["camera"][None], it["depth_m"][None], it["valid"][None], res)
    report(spec, res)
