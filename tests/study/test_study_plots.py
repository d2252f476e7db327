"""The trade-off figure: writes a PNG atomically, skips rows it cannot place."""
from stackslim.study.plots import plot_tradeoff


def test_tradeoff_plot_writes_a_png_and_skips_unplaceable_rows(tmp_path):
    rows = [{"variant": "teacher", "kind": "teacher", "capacity": 1.0, "stack_ratio": 1.0, "speedup": 1.0},
            {"variant": "mimic: linear-1-512", "kind": "mimic", "capacity": 0.9, "stack_ratio": 0.03,
             "speedup": 11.0},
            {"variant": "shared: K3-r16", "kind": "shared", "capacity": None, "stack_ratio": 0.4,
             "speedup": 0.8}]
    path = plot_tradeoff(rows, tmp_path / "t.png")
    assert path == tmp_path / "t.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.png"]  # no temporary left behind
