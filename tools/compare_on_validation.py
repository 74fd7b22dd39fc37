"""Model selection on validation data only (never the test sets): mean AbsRel / RMSE / δ<1.25 of
each model on every k-th sequence of a generated validation folder and on DFD indoor scenes that the
committed DFD table does not use (pairs[offset::every]; DSLR 35 mm f/2.8 cover/inner/wide 5-frame
sweeps at half resolution, as in focaldepth.rgbd_eval). How v3 was chosen over v2:

  OMP_NUM_THREADS=1 python tools/compare_on_validation.py sweepnet_default_v2,runs/sweepnet_v3/checkpoints/best.pt,classical \
      dfd:6:3 data/cpu_val_v2:10:2 > results/default_selection/v2_vs_v3.txt
  OMP_NUM_THREADS=1 python tools/compare_on_validation.py sweepnet_default_v2,runs/sweepnet_v3/checkpoints/best.pt \
      data/cpu_val:5:2 >> results/default_selection/v2_vs_v3.txt
(at the time v2 was named sweepnet_default.)
"""
import sys, torch, numpy as np
torch.set_num_threads(1)
from focaldepth.data import FocusSweepDataset
from focaldepth.metrics import depth_metrics
from focaldepth.predict import load_model
from focaldepth import rgbd_eval as R
from focaldepth.optics import Camera, dioptric_ramp
specs = sys.argv[1].split(",")
models = {s: load_model(s).eval() for s in specs}
def run_all(frames, focus, cam, gt, valid, res):
    for name, m in models.items():
        with torch.no_grad():
            p = m(frames, focus, cam)["depth_m"]
        if p.shape[-2:] != gt.shape[-2:]:
            p = torch.nn.functional.interpolate(p, size=gt.shape[-2:], mode="bilinear")
        mm = depth_metrics(p, gt, valid); res.setdefault(name, []).append([float(mm[k]) for k in ("absrel", "rmse", "delta1")])
def report(title, res):
    print(title, flush=True); [print(f"  {k[-30:]:30s} AbsRel {np.mean([r[0] for r in v]):.3f} RMSE {np.mean([r[1] for r in v]):.3f} d1 {np.mean([r[2] for r in v]):.3f}", flush=True) for k, v in res.items()]
for spec in sys.argv[2:]:
    res = {}
    if spec.startswith("dfd"):
        _, every, offset = spec.split(":")
        for pair in R.select_pairs(R.dfd_data_root(), 1)[int(offset)::int(every)]:
            sc = R.load_dfd_scene(pair); cam = Camera(35.0, 2.8, 23.6, sc.rgb.shape[1])
            for proto in ("cover", "inner", "wide"):
                near, far = R.sweep_range_m(sc.depth_m, sc.valid, proto)
                focus = [float(f) for f in dioptric_ramp(near, far, 5)]
                fr = R.render_sweeps(sc.rgb, sc.depth_m, cam, [focus], seed=0)[0]
                frames = torch.nn.functional.interpolate(torch.from_numpy(fr).permute(0,3,1,2).float()/255, scale_factor=0.5, mode="area")[None]
                camt = torch.tensor([[cam.focal_length_m, cam.f_number, cam.pixel_pitch_m * 2]])
                run_all(frames, torch.tensor([focus]), camt, torch.from_numpy(sc.depth_m)[None,None], torch.from_numpy(sc.valid)[None,None], res)
    else:
        root, n, step = spec.split(":"); ds = FocusSweepDataset(root, num_frames=int(n), sample="ramp", random_crop=False)
        for i in range(0, len(ds), int(step)):
            it = ds[i]; run_all(it["frames"][None], it["focus_distance_m"][None], it["camera"][None], it["depth_m"][None], it["valid"][None], res)
    report(spec, res)
