"""Research experiments: the scripts behind the real-data tables, kept apart from the core.

Each module is run with ``python -m focaldepth.experiments.<name>`` and writes one folder of
``results/``; the core package never imports from here.

* :mod:`focaldepth.experiments.rgbd_eval` — depth from focus sweeps synthesised from real RGB-D
  (Middlebury *Motorcycle* per camera preset, DFD indoor per camera / protocol / frame count).
* :mod:`focaldepth.experiments.realcheck` — the renderer against real f/2.8 photographs (DFD indoor).
* :mod:`focaldepth.experiments.blender_vs_procedural` — the layered renderer against Blender Cycles
  path tracing on one generated scene (needs the optional ``bpy`` extra).
* :mod:`focaldepth.experiments.selfsup_adapt` — self-supervised adaptation (``focaldepth adapt``)
  before / after on DFD validation sweeps and the real phone stack (docs/selfsup.md).
"""

import re

# Result files written before the move record the old module paths; the pages that tell a
# user what to run (tools/update_readme.py, tools/headline_table.py) show the current ones.
MOVED_MODULES = {
    "focaldepth.rgbd_eval": "focaldepth.experiments.rgbd_eval",
    "focaldepth.realcheck": "focaldepth.experiments.realcheck",
}


#: Result folders renamed after their run (the recorded command names the old ``--out``).
MOVED_OUTPUTS = {
    "results/rgbd_dfd_new": "results/rgbd_dfd_v6",  # session 4: the v6 DFD table, run before v6 had its name
}


def current_command(text: str) -> str:
    """``text`` with every ``python -m`` module path that has moved replaced by its new one, and
    every renamed ``--out`` folder by its current name."""
    for old, new in MOVED_MODULES.items():
        text = text.replace(f"-m {old}", f"-m {new}")
    for old, new in MOVED_OUTPUTS.items():
        text = re.sub(rf"--out {re.escape(old)}(?=\s|$)", f"--out {new}", text)
    return text
