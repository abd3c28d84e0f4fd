#!/usr/bin/env python3
"""Runs a .tflite model over int8 inputs with LiteRT (pip package ai-edge-litert).

usage: run.py MODEL INPUTS OUT_DIR

INPUTS is raw int8: N inputs back to back, each the model input's element count (HWC order).
For each op resolver, BUILTIN_REF (TFLite's reference kernels), BUILTIN (its optimized kernels)
and AUTO (the default: optimized kernels with the XNNPACK delegate), the script writes
OUT_DIR/<RESOLVER>/<name>.bin for every subgraph output: raw int8, N outputs back to back.
A model written by tinycnn_tflite::to_tflite_traced has every conv block, fc1 and the logits
as outputs. It prints one line per resolver and writes OUT_DIR/version.txt (LiteRT's version).
"""

import os
import sys

import numpy as np
from ai_edge_litert import interpreter as litert

RESOLVERS = ("BUILTIN_REF", "BUILTIN", "AUTO")


def run(model_path, inputs_path, out_dir):
    raw = np.fromfile(inputs_path, dtype=np.int8)
    os.makedirs(out_dir, exist_ok=True)
    for name in RESOLVERS:
        resolver = getattr(litert.OpResolverType, name)
        interp = litert.Interpreter(
            model_path=model_path, experimental_op_resolver_type=resolver
        )
        interp.allocate_tensors()
        (inp,) = interp.get_input_details()
        if inp["dtype"] != np.int8:
            sys.exit(f"run.py: the model input is {inp['dtype']}, this runner feeds int8")
        shape = inp["shape"]
        per = int(np.prod(shape))
        if raw.size % per:
            sys.exit(f"run.py: {raw.size} input bytes are not a multiple of {per}")
        n = raw.size // per
        outputs = interp.get_output_details()
        results = {o["name"]: [] for o in outputs}
        for i in range(n):
            interp.set_tensor(inp["index"], raw[i * per:(i + 1) * per].reshape(shape))
            interp.invoke()
            for o in outputs:
                results[o["name"]].append(interp.get_tensor(o["index"]).reshape(-1).copy())
        sub = os.path.join(out_dir, name)
        os.makedirs(sub, exist_ok=True)
        for key, values in results.items():
            np.concatenate(values).astype(np.int8).tofile(
                os.path.join(sub, key.replace("/", "_") + ".bin")
            )
        print(f"{name}: {n} inputs, outputs {', '.join(results)}")
    with open(os.path.join(out_dir, "version.txt"), "w") as f:
        from importlib.metadata import version

        f.write(version("ai-edge-litert") + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    run(*sys.argv[1:])
