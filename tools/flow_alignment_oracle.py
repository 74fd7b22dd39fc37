"""Does the optical flow limit moving scenes? predict's default (sweepnet_temporal_v8) through its
streaming path (tools/eval_temporal.py's scoring) on a validation set's moving or static clips,
with predict's DIS preset swapped for another one or for the ground-truth flow (an oracle:
what perfect alignment would give).

  OMP_NUM_THREADS=1 python tools/flow_alignment_oracle.py {fast,medium,ultrafast,gt} {dynamic,static} [data/cpu_val_v2]

Session 10's runs are in results/default_selection/flow_preset.txt."""
import sys, json, time
from pathlib import Path
import numpy as np, torch, cv2
sys.path.insert(0, "tools")
torch.set_num_threads(1)
from train_temporal import read_clip
import eval_temporal
from focaldepth import predict
from focaldepth.data import load_records

mode = sys.argv[1]; group = sys.argv[2]; data = sys.argv[3] if len(sys.argv) > 3 else "data/cpu_val_v2"
model = predict.load_model("sweepnet_temporal_v8")
current = {}

class GTAligner(predict.FlowAligner):
    def __init__(self):
        super().__init__(); self.calls = 0
    def displacement(self, ref, other):
        self.calls += 1
        flow = current["flow"][self.calls]  # frame t -> t-1, full resolution
        h, w = ref.shape[:2]; H, W = flow.shape[:2]
        small = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) * np.array([w / W, h / H], np.float32)
        return np.ascontiguousarray(small, np.float32)

presets = {"fast": cv2.DISOPTICAL_FLOW_PRESET_FAST, "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
           "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST}
if mode == "gt":
    predict.FlowAligner = GTAligner
elif mode in presets:
    base = predict.FlowAligner
    predict.FlowAligner = lambda: base(presets[mode])
rows = []
t0 = time.time()
for record in load_records(Path(data)):
    clip = read_clip(Path(data) / record["file"], static_sweeps=3, sweep_noise_std=2.0 / 255.0)
    if clip["is_dynamic"] != (group == "dynamic"):
        continue
    current["flow"] = clip["flow"]
    rows.append(eval_temporal.score_sequence(model, clip))
keys = ("absrel", "delta1", "temporal_err_rel", "tae_capped", "absrel_top50") if group == "dynamic" else \
    ("absrel", "delta1", "flicker_rel", "sweep_change_rel", "absrel_top50")
print(mode, group, data, len(rows), {k: round(float(np.nanmean([r[k] for r in rows])), 4) for k in keys}, f"{time.time()-t0:.0f}s", flush=True)
