import platform

import pytest
import torch

from sdlib import runtime


@pytest.mark.parametrize("value, quick", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False),
                                          ("off", False)])
def test_quick_mode_is_read_from_the_environment(monkeypatch, value, quick):
    monkeypatch.setenv(runtime.QUICK_ENV, value)
    assert runtime.is_quick() is quick


def test_unclear_quick_value_is_an_error(monkeypatch):
    monkeypatch.setenv(runtime.QUICK_ENV, "maybe")
    with pytest.raises(ValueError, match="SDLIB_QUICK='maybe'"):
        runtime.is_quick()


def test_device_choice(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    assert runtime.pick_device() == torch.device("cpu")
    assert runtime.pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            runtime.pick_device("cuda")


def test_setup_seeds_and_picks(monkeypatch, capsys):
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    rt = runtime.setup(seed=3, quick=True)
    a = torch.rand(3)
    runtime.setup(seed=3, quick=True, verbose=False)
    assert torch.equal(a, torch.rand(3))
    assert rt.quick and rt.pick(full=10, quick=1) == 1
    assert "mode=QUICK" in capsys.readouterr().out
    assert rt.generator().initial_seed() == 3 and rt.generator(5).initial_seed() == 5


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_allocator_tuning_is_applied_on_glibc():
    assert runtime.tune_cpu_allocator() is True
    assert runtime.tune_cpu_allocator() is True          # idempotent


def test_bf16_is_fast_asks_the_device_it_is_given():
    assert runtime.bf16_is_fast("mps") is False                       # never bfloat16 on MPS
    if not torch.cuda.is_available():
        assert runtime.bf16_is_fast("cuda") is False
    cpu = runtime.bf16_is_fast("cpu")
    assert isinstance(cpu, bool) and cpu == runtime.bf16_is_fast()      # the CPU is the default
    if cpu:                                                             # and where it says so, bfloat16 works
        a = torch.randn(64, 64, dtype=torch.bfloat16)
        torch.testing.assert_close((a @ a).float(), a.float() @ a.float(), atol=0.5, rtol=0.05)
