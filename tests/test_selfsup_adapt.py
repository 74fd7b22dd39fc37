"""The selfsup_adapt experiment keeps to validation / training scenes and writes its tables."""

import pytest

from focaldepth.experiments import selfsup_adapt
from focaldepth.experiments.selfsup_adapt import main, split_name, table


def test_split_names_follow_the_dfd_protocol():
    assert split_name(6, 3) == "validation"
    assert split_name(12, 1) == split_name(6, 4) == "training"
    assert split_name(6, 0) == split_name(3, 0) == split_name(1, 0) == "mixed"


@pytest.mark.parametrize("argv", [["--every", "6", "--offset", "0"], ["--every", "3", "--offset", "0"],
                                  ["--every", "1", "--offset", "0"]])
def test_test_scenes_are_refused(argv, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["--out", str(tmp_path / "o"), *argv])
    assert info.value.code == 2 and not (tmp_path / "o").exists()


def test_table_counts_improved_sweeps():
    rows = [{"protocol": p, "absrel_before": 0.2, "absrel_after": a, "delta1_before": 0.5, "delta1_after": 0.6,
             "recon_before": 0.01, "recon_after": 0.009} for p, a in zip(selfsup_adapt.PROTOCOLS, (0.1, 0.3, 0.2))]
    text = "\n".join(table("t", rows))
    assert "| **all** | 3 | 0.200 | 0.200 |" in text and "on 1 of 3 sweeps" in text
