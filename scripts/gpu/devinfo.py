#!/usr/bin/env python3
"""What machine the device kit runs on, and NVML's memory readings from three sides.

    devinfo.py env --out FILE.json            versions (python, torch, CUDA, transformers, tokenizers,
                                              numpy, grpcio, nvidia-ml-py), CPU, GPU name and driver
    devinfo.py nvml --addr ADDR --out FILE.json
        rerankd's Stats (its NVML probe: free and total bytes) against nvidia-ml-py's
        nvmlDeviceGetMemoryInfo and `nvidia-smi --query-gpu`, read back to back while the server is
        idle (its free reading is taken after each batch, so an idle server's is its last one).
    devinfo.py clocks --out FILE.jsonl [--interval-secs 0.25]
        until stopped (SIGTERM): one line per reading of the SM clock, power draw, temperature,
        utilisation and the clock-throttle reasons, so that a throughput figure can be read next to
        the clock it ran at (a GPU held busy for half a minute may clock lower than in a 2 s burst).

Owns: measurement (1)'s NVML half. Must never: allocate GPU memory (it would move what it measures).
"""
import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MIB = 1 << 20
# Free memory read by two tools a moment apart may differ by what the driver did in between; 256 MiB
# is well above that on an idle device and far below anything the batcher would notice.
FREE_TOLERANCE_BYTES = 256 * MIB


def version(pkg):
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def nvidia_smi():
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {"error": "nvidia-smi not found on PATH"}
    fields = "name,driver_version,memory.total,memory.used,memory.free"
    try:
        out = subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError) as e:
        return {"error": str(e)[:300]}
    rows = []
    for line in out.strip().splitlines():
        name, driver, total, used, free = [x.strip() for x in line.split(",")]
        rows.append({"name": name, "driver": driver, "total_bytes": int(float(total)) * MIB,
                     "used_bytes": int(float(used)) * MIB, "free_bytes": int(float(free)) * MIB})
    return {"exe": exe, "gpus": rows}


def pynvml_reading(index=0):
    try:
        import pynvml
    except ImportError as e:
        return {"error": f"nvidia-ml-py not importable: {e}"}
    try:
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        m = pynvml.nvmlDeviceGetMemoryInfo(h)
        name = pynvml.nvmlDeviceGetName(h)
        driver = pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlShutdown()
    except Exception as e:  # noqa: BLE001  (pynvml raises NVMLError subclasses, or OSError without a driver)
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    as_text = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
    return {"name": as_text(name), "driver": as_text(driver), "total_bytes": m.total, "used_bytes": m.used,
            "free_bytes": m.free}


def env(args):
    info = {
        "python": sys.version.split()[0],
        "python_exe": sys.executable,
        "packages": {p: version(p) for p in ("torch", "transformers", "tokenizers", "numpy", "grpcio",
                                              "nvidia-ml-py", "sentence-transformers", "safetensors")},
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    import torch

    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    info["torch_lib"] = os.path.join(os.path.dirname(torch.__file__), "lib")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "total_bytes": props.total_memory,
                       "capability": f"{props.major}.{props.minor}", "count": torch.cuda.device_count()}
        info["nvidia_smi"] = nvidia_smi()
        info["nvml"] = pynvml_reading()
    with open(args.out, "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps({"gpu": info.get("gpu"), "torch": info["packages"]["torch"], "cpu": info["cpu"]}))
    return 0


def nvml(args):
    import rpc

    client = rpc.Client(args.addr)
    before = client.stats()
    py = pynvml_reading()
    smi = nvidia_smi()
    after = client.stats()
    client.close()
    dev = (before["devices"] or [{}])[0]
    result = {"rerankd_before": dev, "rerankd_after": (after["devices"] or [{}])[0], "nvml_python": py,
              "nvidia_smi": smi, "free_tolerance_bytes": FREE_TOLERANCE_BYTES}
    reasons = []
    if not dev.get("memory_known"):
        reasons.append("rerankd says device memory is unknown (its NVML probe did not open)")
    if "error" in py:
        reasons.append(f"nvidia-ml-py: {py['error']}")
    smi0 = (smi.get("gpus") or [None])[0]
    if smi0 is None:
        reasons.append(f"nvidia-smi: {smi.get('error', 'no GPU listed')}")
    if not reasons:
        comparisons = {
            "total_rerankd_minus_nvml": dev["total_bytes"] - py["total_bytes"],
            "free_rerankd_minus_nvml": dev["free_bytes"] - py["free_bytes"],
            "free_nvml_minus_smi": py["free_bytes"] - smi0["free_bytes"],
            "total_nvml_minus_smi": py["total_bytes"] - smi0["total_bytes"],
            "used_nvml_minus_smi": py["used_bytes"] - smi0["used_bytes"],
        }
        result["differences_bytes"] = comparisons
        if comparisons["total_rerankd_minus_nvml"] != 0:
            reasons.append("rerankd's total differs from nvidia-ml-py's")
        if abs(comparisons["free_rerankd_minus_nvml"]) > FREE_TOLERANCE_BYTES:
            reasons.append("rerankd's free differs from nvidia-ml-py's by more than the tolerance")
        if abs(comparisons["free_nvml_minus_smi"]) > FREE_TOLERANCE_BYTES:
            reasons.append("nvidia-ml-py's free differs from nvidia-smi's by more than the tolerance")
    result["status"] = "pass" if not reasons else "fail: " + "; ".join(reasons)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({"status": result["status"], "differences_bytes": result.get("differences_bytes")}))
    return 0


def clocks(args):
    import signal
    import time

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    with open(args.out, "a") as f:
        try:
            import pynvml

            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception as e:  # noqa: BLE001  (no nvidia-ml-py, or no driver: say so and stop)
            f.write(json.dumps({"error": f"{type(e).__name__}: {e}"[:300]}) + "\n")
            return 0
        while not stop:
            row = {"t": round(time.time(), 3)}
            for key, read in (
                ("sm_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
                ("power_w", lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0),
                ("temp_c", lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
                ("util", lambda: pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
                ("throttle", lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)),
            ):
                try:
                    row[key] = read()
                except Exception:  # noqa: BLE001  (a reading this driver lacks is left out)
                    pass
            f.write(json.dumps(row) + "\n")
            f.flush()
            time.sleep(args.interval_secs)  # the sampling period, not synchronisation
    pynvml.nvmlShutdown()
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="Machine facts and NVML readings for the device kit.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env")
    e.add_argument("--out", required=True)
    n = sub.add_parser("nvml")
    n.add_argument("--addr", required=True)
    n.add_argument("--out", required=True)
    c = sub.add_parser("clocks")
    c.add_argument("--out", required=True)
    c.add_argument("--interval-secs", type=float, default=0.25)
    args = ap.parse_args(argv)
    return {"env": env, "nvml": nvml, "clocks": clocks}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
