"""What the benchmarks print about the machine they ran on (``cpu_flags`` is ``models.precision``'s)."""

import json
import os
import platform

from models.precision import cpu_flags

# CPU flags that decide which precisions have native matrix instructions.
_RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_tile")


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device="cpu") -> dict:
    """The machine in a benchmark's JSON: CPU model, its relevant flags, logical CPUs, torch, GPU name."""
    import torch

    out = {
        "cpu": cpu_model(),
        "cpu_flags": sorted(cpu_flags() & set(_RELEVANT_FLAGS)),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "device": str(device),
    }
    if str(device).startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def synchronize(device) -> None:
    """Waits for the device's queued work (CUDA), so that timings cover it."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def emit_json(result, out=None, to_stdout=False) -> None:
    """Writes ``result`` as indented JSON to the file ``out`` (if given) and to stdout (if ``to_stdout``)."""
    text = json.dumps(result, indent=1)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if to_stdout:
        print(text)
