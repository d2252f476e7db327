"""stackslim.runtime in one process: device choice and the identity collectives."""
from __future__ import annotations

import pytest
import torch

from stackslim import runtime
from stackslim.runtime import DeviceError, choose_device


def test_one_process_is_rank_0_of_1():
    assert runtime.init_from_env() == (0, 1) and runtime.is_main() and not runtime.is_distributed()
    assert runtime.shard([5, 6, 7]) == [5, 6, 7]
    assert runtime.all_reduce_floats([1.5, 2]) == [1.5, 2.0]
    assert runtime.broadcast_float(3.25) == 3.25
    assert runtime.all_gather_objects({"a": 1}) == [{"a": 1}]
    assert runtime.cpu_group() is None


def test_device_choice():
    assert choose_device("cpu") == torch.device("cpu")
    auto = choose_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("spec", ["tpu", "gpu0", "cuda:99"])
def test_bad_device_is_one_line_error_naming_it(spec):
    if spec == "cuda:99" and not torch.cuda.is_available():
        spec = "cuda"  # no CUDA here: any cuda device is refused
    with pytest.raises(DeviceError, match="--device"):
        choose_device(spec)


def test_analyze_bad_device_exits_2(tone_data, tmp_path, capsys):
    from stackslim.cli import main

    rc = main(["analyze", "random:wav2vec2", str(tone_data), "--out", str(tmp_path / "a"),
               "--device", "tpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("stackslim analyze: error: --device 'tpu'") and "\n" not in err
