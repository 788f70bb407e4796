"""``benchmarks/embed.py`` measures bf16 by default only where the device has it natively, and says when it did not.

On a CPU without ``avx512_bf16`` / ``amx_bf16`` (e.g. an AVX2-only AMD Zen 3)
PyTorch emulates bf16, and a default run took over 25 minutes. The detector
(``models.precision.native_bf16``, the one ``curation.join`` uses too) is
monkeypatched: the tests do not depend on this machine's CPU.
"""

import importlib.util
import json
import os

import pytest
import torch

from conftest import REPO

BENCHMARKS = os.path.join(REPO, "benchmarks")


@pytest.fixture
def embed(monkeypatch):
    """``benchmarks/embed.py`` as a module (it imports ``machine`` from its own folder)."""
    monkeypatch.syspath_prepend(BENCHMARKS)
    spec = importlib.util.spec_from_file_location("benchmark_embed", os.path.join(BENCHMARKS, "embed.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_detector(native):
    def native_bf16(device="cpu"):
        return native, "CPU with native bf16 (amx_bf16)" if native else "CPU without native bf16 (no flag)"
    return native_bf16


@pytest.mark.parametrize("native", [True, False])
def test_default_precisions_follow_native_bf16(embed, monkeypatch, native):
    monkeypatch.setattr(embed, "native_bf16", fake_detector(native))
    precisions, skipped = embed.choose_precisions(None, "cpu")
    if native:
        assert (precisions, skipped) == (["fp32", "bf16"], None)
    else:
        assert precisions == ["fp32"]
        assert skipped.startswith("CPU without native bf16 (no flag)") and "--precisions=fp32,bf16" in skipped
    # CUDA adds fp16; a GPU without native bf16 skips bf16 the same way.
    assert embed.choose_precisions(None, "cuda")[0] == (["fp32", "bf16", "fp16"] if native else ["fp32", "fp16"])


def test_requested_precisions_are_measured_even_if_emulated(embed, monkeypatch):
    monkeypatch.setattr(embed, "native_bf16", fake_detector(False))
    assert embed.choose_precisions("fp32,bf16", "cpu") == (["fp32", "bf16"], None)


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    """The detector itself: the two flags that mean native bf16, and nothing else (AVX2 / AVX-512F alone)."""
    from models import precision

    for flags, native in [({"avx2", "fma"}, False), ({"avx2", "avx512f"}, False), ({"avx512f", "avx512_bf16"}, True),
                          ({"amx_bf16", "amx_tile"}, True)]:
        monkeypatch.setattr(precision, "cpu_flags", lambda flags=flags: flags)
        got, why = precision.native_bf16("cpu")
        assert got is native and why.startswith("CPU with" if native else "CPU without"), flags


def test_a_run_says_bf16_was_skipped(embed, monkeypatch, capsys):
    """A tiny run (one 1-s clip, one repeat, fp32 only): the line on stderr and the JSON field."""
    pytest.importorskip("msclap")
    monkeypatch.setattr(embed, "native_bf16", fake_detector(False))
    threads = torch.get_num_threads()
    try:
        out = embed.main(["--clips=1", "--seconds=1", "--batch=1", "--num_workers=0", "--repeats=1", "--json",
                          f"--threads={threads}"])
    finally:
        torch.set_num_threads(threads)  # the benchmark sets it for the whole process
    captured = capsys.readouterr()
    assert "bf16 not measured: CPU without native bf16 (no flag)" in captured.err
    printed = json.loads(captured.out)
    assert printed["precisions"] == ["fp32"] and printed["bf16_skipped"].startswith("CPU without native bf16")
    assert "bf16_speedup" not in printed and set(printed["clips_per_s"]) == {
        "model_fp32", "e2e_fp32", "cnn14_ours_fp32", "cnn14_reference_fp32"}
    assert out == printed
