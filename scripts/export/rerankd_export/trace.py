"""Tracing the wrapper, saving it as model.pt and loading it back, and the guard against a pinned device.

The trace runs on CPU, on a padded example batch (one row shorter than the others, so the attention
mask stays live in the graph). A saved model must run on any device: check 0 reads the saved code
and every method graph and refuses a model that pins one (issue 13).
Owns: torch.jit.trace / save / load and check 0. Must never: write anywhere but the path it is given
(the staging folder), or let a model that pins a device through.
"""

import os
import re
import warnings
import zipfile

import torch

from .batches import random_batch
from .common import ExportError
from .wrappers import select_inputs


def example_inputs(layout):
    """The batch the trace records: 3 rows of 16 tokens, the last one padded after 9."""
    gen = torch.Generator().manual_seed(1234)
    ex_ids, ex_mask, ex_types, _ = random_batch(gen, 3, 16, layout.vocab, layout.pad_id, layout.cls_id, layout.sep_id)
    # make sure one row is shorter than the others (padded example keeps the mask live)
    ex_lengths = [16, 16, 9]
    for r, n in enumerate(ex_lengths):
        ex_ids[r, n:] = layout.pad_id
        ex_mask[r, n:] = 0
        ex_types[r, n:] = 0
        ex_ids[r, n - 1] = layout.sep_id
        ex_types[r, n // 2:n] = 1
    return select_inputs(layout.uses_tt, ex_ids, ex_mask, ex_types)


def trace(wrapper, example):
    """(traced module, the trace's warnings, each "Category (file:line): first line" once)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            traced = torch.jit.trace(wrapper, example, strict=False, check_trace=False)
    trace_warnings = []
    for w in caught:
        first = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
        key = f"{w.category.__name__} ({os.path.basename(w.filename)}:{w.lineno}): {first[:200]}"
        if key not in trace_warnings:
            trace_warnings.append(key)
    return traced, trace_warnings


def save(traced, pt_path):
    torch.jit.save(traced, pt_path)


def load(pt_path):
    """The saved model loaded back on CPU: what every check runs is the file, not the trace in memory."""
    loaded = torch.jit.load(pt_path, map_location="cpu")
    loaded.eval()
    return loaded


def refuse_pinned_device(pt_path, loaded):
    """Check 0: raises ExportError naming every place that pins a device; else (code files, graphs) read."""
    pinned, n_code_files, n_graphs = device_constants(pt_path, loaded)
    if pinned:
        raise ExportError(
            f"the traced model pins a device in {len(pinned)} place(s), so it would fail on any other "
            "device (e.g. CUDA); refusing to write it:\n    " + "\n    ".join(pinned)
        )
    return n_code_files, n_graphs


# How a device can be frozen into saved TorchScript code: torch.device("cpu") constants (what a trace
# records for arange(device=...), .to(device), .cpu(), .cuda()), device="..." keywords, device-name
# string literals, and .cpu() / .cuda() calls. device=None (zeros_like and friends) is no pin.
DEVICE_CODE_PATTERNS = [
    re.compile(r"torch\.device\("),
    re.compile(r"\bdevice\s*=\s*['\"]"),
    re.compile(r"['\"](?:cpu|cuda|meta|mps|xpu|hip|privateuseone)(?::\d+)?['\"]"),
    re.compile(r"\.(?:cpu|cuda)\("),
]
DEVICE_NAME = re.compile(r"^(?:cpu|cuda|meta|mps|xpu|hip|privateuseone)(?::\d+)?$")


def device_constants(pt_path, module):
    """Every place where saved TorchScript pins a device (none for a device-independent model).

    Two views of the same model, so that neither a new printing form nor a graph detail slips by:
      - the code files in the saved zip (code/**/*.py), line by line, against DEVICE_CODE_PATTERNS;
      - every method graph of every submodule of the loaded module: prim::Constant nodes of type
        Device, device-name string constants, and aten::device calls (a device made from a string).
    Returns (offending "where: what" lines naming the code, code files read, graphs read).
    """
    found = []
    n_files = n_graphs = 0
    with zipfile.ZipFile(pt_path) as z:
        for name in sorted(z.namelist()):
            if "/code/" not in name or not name.endswith(".py"):
                continue
            n_files += 1
            text = z.read(name).decode("utf-8", errors="replace")
            for lineno, line in enumerate(text.splitlines(), 1):
                if any(p.search(line) for p in DEVICE_CODE_PATTERNS):
                    found.append(f"{name}:{lineno}: {line.strip()}")

    def walk(nodes, where):
        for node in nodes:
            what = None
            kind = node.kind()
            if kind == "prim::Constant" and node.outputsSize() == 1:
                out_type = str(node.output().type())
                value = node.output().toIValue() if out_type in ("Device", "str", "Tensor") else None
                if out_type == "Device" or (out_type == "str" and DEVICE_NAME.match(str(value))):
                    what = f"constant {out_type} {value!s}"
                elif isinstance(value, torch.Tensor) and value.dim() > 0:
                    # 0-dim constants (CONSTANTS.cN scalars) combine with tensors on any device; a
                    # frozen tensor with data stays where it was saved unless loaded with map_location.
                    what = f"constant tensor of shape {list(value.shape)} on {value.device}"
            elif kind == "aten::device":
                what = "aten::device (a device built from a string)"
            if what:
                # name the code that takes the constant (a constant node itself has no source line)
                users = [u.user for u in node.output().uses()] if kind == "prim::Constant" else [node]
                for user in users or [node]:
                    found.append(f"{where} graph: {user.kind()} takes {what}{traced_from(user)}")
            for block in node.blocks():
                walk(block.nodes(), where)

    def traced_from(node):
        # A loaded graph's source range holds the Python stack of the trace (innermost frame first)
        # and the serialized code line: ", traced from masking_utils.py(528): sdpa_mask (code/...py:58)".
        text = node.sourceRange()
        frame = next((ln.strip() for ln in text.splitlines() if re.match(r"\s*\S+\.py\(\d+\): ", ln)), None)
        code = re.search(r'Serialized\s+File "([^"]+)", line (\d+)', text)
        parts = [os.path.basename(frame)] if frame else []
        if code:
            parts.append(f"({code.group(1)}:{code.group(2)})")
        return ", traced from " + " ".join(parts) if parts else ""

    for mod_name, sub in module.named_modules():
        for method in sub._c._method_names():
            n_graphs += 1
            walk(sub._c._get_method(method).graph.nodes(), f"{mod_name or '<top>'}.{method}")
    return found, n_files, n_graphs
