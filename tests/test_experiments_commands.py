"""Recorded commands of result files stay runnable after modules or output folders move."""
from focaldepth.experiments import MOVED_OUTPUTS, current_command


def test_moved_modules_and_outputs_are_rewritten():
    old = "python -m focaldepth.rgbd_eval --source dfd --out results/rgbd_dfd_new --methods a b"
    assert current_command(old) == ("python -m focaldepth.experiments.rgbd_eval --source dfd "
                                    "--out results/rgbd_dfd_v6 --methods a b")
    assert current_command("x --out results/rgbd_dfd_new").endswith("--out results/rgbd_dfd_v6")
    # a longer folder name that merely starts with a moved one is left alone
    assert current_command("x --out results/rgbd_dfd_new2 y") == "x --out results/rgbd_dfd_new2 y"
    assert all(new != old for old, new in MOVED_OUTPUTS.items())
