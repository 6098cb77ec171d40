"""tools.bench's command line: variant specs with list values, the reference row, the allocator switch."""
from __future__ import annotations

from tools import bench


def test_variant_spec_keeps_list_values_whole():
    name, over = bench.parse_spec("ff:channels=[32,64,128],kernel_size=5,pool_layers=[1, 2, 3]")
    assert name == "ff"
    assert over == {"channels": [32, 64, 128], "kernel_size": 5, "pool_layers": [1, 2, 3]}


def test_bench_runs_one_net_alone_against_itself(capsys):
    spec = "ff:channels=[8,16],kernel_size=5,pool_layers=[1,2]"
    # no --threads: it would set the thread count of the whole test process
    assert bench.main(["--size", "12", "--in-channels", "1", "--batch", "4", "--repeats", "1",
                       "--warmup", "0", "--cpu-allocator", "default", "--device", "cpu",
                       "--methods", spec, "--reference", "first"]) == 0
    out = capsys.readouterr().out
    assert "1x12x12" in out and "allocator: malloc defaults" in out and f"Ratios (×ref) are to {spec}." in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [r.split(" | ")[0] for r in rows] == [f"| {spec}"]  # no BP row beside it
    assert rows[0].split(" | ")[3] == "1.00"  # its own reference
