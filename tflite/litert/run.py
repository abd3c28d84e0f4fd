#!/usr/bin/env python3
"""Runs a .tflite model over int8 inputs with LiteRT (pip package ai-edge-litert).

usage: run.py MODEL INPUTS OUT_DIR
       run.py --tflm MODEL INPUTS OUT_DIR

INPUTS is raw int8: N inputs back to back, each the model input's element count (HWC order).
For each op resolver, BUILTIN_REF (TFLite's reference kernels), BUILTIN (its optimized kernels)
and AUTO (the default: optimized kernels with the XNNPACK delegate), the script writes
OUT_DIR/<RESOLVER>/<name>.bin for every subgraph output: raw int8, N outputs back to back.
A model written by tinycnn_tflite::to_tflite_traced has every conv block, fc1 and the logits
as outputs. It prints one line per resolver and writes OUT_DIR/version.txt (LiteRT's version).

With --tflm it runs TensorFlow Lite for Microcontrollers instead (pip package tflite-micro, its
Python interpreter with the reference kernels) and writes OUT_DIR/TFLM/output<i>.bin for
subgraph output i (TFLM's Python API does not give output names), and OUT_DIR/version.txt.
"""

import os
import sys

import numpy as np

RESOLVERS = ("BUILTIN_REF", "BUILTIN", "AUTO")


def run(model_path, inputs_path, out_dir):
    from ai_edge_litert import interpreter as litert

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


def run_tflm(model_path, inputs_path, out_dir):
    from importlib.metadata import version

    from tflite_micro.python.tflite_micro import runtime

    raw = np.fromfile(inputs_path, dtype=np.int8)
    with open(model_path, "rb") as f:
        model = runtime.convert_bytearray_to_object(bytearray(f.read()))
    outputs = len(model.subgraphs[0].outputs)
    # The arena holds the activations; 16 MiB covers every tinycnn preset's plan.
    interp = runtime.Interpreter.from_file(model_path, arena_size=16 << 20)
    inp = interp.get_input_details(0)
    shape = inp["shape"]
    per = int(np.prod(shape))
    if raw.size % per:
        sys.exit(f"run.py: {raw.size} input bytes are not a multiple of {per}")
    n = raw.size // per
    results = {}
    for i in range(n):
        interp.set_input(raw[i * per:(i + 1) * per].reshape(shape), 0)
        interp.invoke()
        for o in range(outputs):
            value = np.asarray(interp.get_output(o)).reshape(-1).copy()
            results.setdefault(o, []).append(value)
    sub = os.path.join(out_dir, "TFLM")
    os.makedirs(sub, exist_ok=True)
    for o, values in results.items():
        np.concatenate(values).astype(np.int8).tofile(os.path.join(sub, f"output{o}.bin"))
    with open(os.path.join(out_dir, "version.txt"), "w") as f:
        f.write(version("tflite-micro") + "\n")
    print(f"TFLM: {n} inputs, {len(results)} outputs")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--tflm"] and len(args) == 4:
        run_tflm(*args[1:])
    elif len(args) == 3:
        run(*args)
    else:
        sys.exit(__doc__)
