"""Builds an int8 .tflite of the tinycnn network and times LiteRT on it, 1 thread.

The network is the one `shared` runs: 3 x [conv 3x3 SAME + bias + ReLU -> max-pool 2x2 SAME]
(32, 32, 64 filters), dense fc_width + ReLU, dense classes. Tensors are int8 with TFLite's
quantization (per-channel symmetric conv weights, int32 biases, input scale 1/255 and zero point
-128). The weights are random integers: the time of an int8 kernel does not depend on their
values. The flatbuffer is written with the schema bindings LiteRT ships
(`ai_edge_litert.schema_py_generated`); no TensorFlow is needed.

    python bench/litert_bench.py --preset tutorial --seconds 5
"""

import argparse
import statistics
import sys
import time

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb
from ai_edge_litert.interpreter import Interpreter

PRESETS = {
    # name: (height, width, channels, filters, fc_width, classes), as `Arch::tutorial(2)` and
    # `Arch::fashion()` in shared/src/arch.rs.
    "tutorial": (128, 128, 3, (32, 32, 64), 128, 2),
    "fashion": (28, 28, 1, (32, 32, 64), 128, 10),
}

CONV_2D, MAX_POOL_2D, FULLY_CONNECTED = 3, 17, 9


def options(cls, **fields):
    """A builtin-options object of the schema class `cls` with `fields` set."""
    o = cls()
    for name, value in fields.items():
        setattr(o, name, value)
    return o


class Builder:
    def __init__(self, rng):
        self.rng = rng
        self.buffers = [fb.BufferT()]  # buffer 0: the empty sentinel
        self.tensors = []
        self.operators = []
        self.codes = []

    def buffer(self, array):
        b = fb.BufferT()
        b.data = np.frombuffer(array.tobytes(), dtype=np.uint8).tolist()
        self.buffers.append(b)
        return len(self.buffers) - 1

    def tensor(self, name, shape, dtype, scale, zero_point, data=None, axis=0):
        t = fb.TensorT()
        t.name = name
        t.shape = list(shape)
        t.type = dtype
        t.buffer = 0 if data is None else self.buffer(data)
        q = fb.QuantizationParametersT()
        q.scale = list(np.atleast_1d(scale).astype(np.float32))
        q.zeroPoint = list(np.atleast_1d(zero_point).astype(np.int64))
        q.quantizedDimension = axis
        t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code, version, inputs, outputs, options_type, options):
        if (code, version) not in self.codes:
            self.codes.append((code, version))
        o = fb.OperatorT()
        o.opcodeIndex = self.codes.index((code, version))
        o.inputs = inputs
        o.outputs = outputs
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.operators.append(o)

    def weights(self, shape):
        return self.rng.integers(-127, 128, size=shape, dtype=np.int8)

    def conv_block(self, x, h, w, c_in, c_out, s_in, i):
        w_scale = self.rng.uniform(0.002, 0.01, size=c_out).astype(np.float32)
        wt = self.tensor(f"conv{i}/w", (c_out, 3, 3, c_in), fb.TensorType.INT8, w_scale,
                         np.zeros(c_out), self.weights((c_out, 3, 3, c_in)), axis=0)
        bias = self.rng.integers(-2000, 2000, size=c_out, dtype=np.int32)
        bt = self.tensor(f"conv{i}/b", (c_out,), fb.TensorType.INT32, s_in * w_scale,
                         np.zeros(c_out), bias, axis=0)
        s_out, zp_out = 0.05, -100
        y = self.tensor(f"conv{i}/out", (1, h, w, c_out), fb.TensorType.INT8, s_out, zp_out)
        opt = options(fb.Conv2DOptionsT, padding=fb.Padding.SAME, strideW=1, strideH=1,
                      dilationWFactor=1, dilationHFactor=1,
                      fusedActivationFunction=fb.ActivationFunctionType.RELU)
        self.op(CONV_2D, 3, [x, wt, bt], [y], fb.BuiltinOptions.Conv2DOptions, opt)
        ph, pw = -(-h // 2), -(-w // 2)
        p = self.tensor(f"pool{i}/out", (1, ph, pw, c_out), fb.TensorType.INT8, s_out, zp_out)
        popt = options(fb.Pool2DOptionsT, padding=fb.Padding.SAME, strideW=2, strideH=2,
                       filterWidth=2, filterHeight=2,
                       fusedActivationFunction=fb.ActivationFunctionType.NONE)
        self.op(MAX_POOL_2D, 2, [y], [p], fb.BuiltinOptions.Pool2DOptions, popt)
        return p, ph, pw, s_out

    def dense(self, x, n_in, n_out, s_in, relu, name):
        w_scale = 0.004
        wt = self.tensor(f"{name}/w", (n_out, n_in), fb.TensorType.INT8, w_scale, 0,
                         self.weights((n_out, n_in)))
        bias = self.rng.integers(-2000, 2000, size=n_out, dtype=np.int32)
        bt = self.tensor(f"{name}/b", (n_out,), fb.TensorType.INT32, s_in * w_scale, 0, bias)
        y = self.tensor(f"{name}/out", (1, n_out), fb.TensorType.INT8, 0.1, -20)
        opt = fb.FullyConnectedOptionsT()
        opt.fusedActivationFunction = (fb.ActivationFunctionType.RELU if relu
                                       else fb.ActivationFunctionType.NONE)
        self.op(FULLY_CONNECTED, 4, [x, wt, bt], [y],
                fb.BuiltinOptions.FullyConnectedOptions, opt)
        return y, 0.1

    def finish(self, inputs, outputs):
        sg = fb.SubGraphT()
        sg.tensors = self.tensors
        sg.operators = self.operators
        sg.inputs = inputs
        sg.outputs = outputs
        sg.name = "main"
        m = fb.ModelT()
        m.version = 3
        m.description = "tinycnn network, random int8 weights (bench/litert_bench.py)"
        codes = []
        for code, version in self.codes:
            c = fb.OperatorCodeT()
            c.builtinCode = code
            c.deprecatedBuiltinCode = code
            c.version = version
            codes.append(c)
        m.operatorCodes = codes
        m.subgraphs = [sg]
        m.buffers = self.buffers
        b = flatbuffers.Builder(1 << 20)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def build(preset, seed=42):
    h, w, c, filters, fc_width, classes = PRESETS[preset]
    bld = Builder(np.random.default_rng(seed))
    x = bld.tensor("input", (1, h, w, c), fb.TensorType.INT8, 1.0 / 255.0, -128)
    y, s, c_in = x, 1.0 / 255.0, c
    for i, f in enumerate(filters):
        y, h, w, s = bld.conv_block(y, h, w, c_in, f, s, i + 1)
        c_in = f
    y, s = bld.dense(y, h * w * c_in, fc_width, s, True, "fc1")
    y, _ = bld.dense(y, fc_width, classes, s, False, "fc2")
    return bld.finish([x], [y])


def time_invoke(model, seconds, batch):
    it = Interpreter(model_content=model, num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    rng = np.random.default_rng(1)
    it.set_tensor(inp["index"], rng.integers(-128, 128, size=inp["shape"], dtype=np.int8))
    for _ in range(batch):
        it.invoke()
    per_call = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            it.invoke()
        per_call.append((time.perf_counter_ns() - t0) / batch)
    per_call.sort()
    q = lambda f: per_call[min(len(per_call) - 1, int(f * len(per_call)))]
    return statistics.median(per_call), q(0.1), q(0.9), len(per_call) * batch


def report(name, model, seconds, batch):
    """Times `model` and prints its `litert/NAME` line."""
    med, lo, hi, n = time_invoke(model, seconds, batch)
    print(f"litert/{name}: median {med / 1e3:.1f} us per invoke "
          f"[p10 {lo / 1e3:.1f}, p90 {hi / 1e3:.1f}], {n} invokes, 1 thread")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), action="append")
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring time per preset")
    ap.add_argument("--save", metavar="DIR", help="also write <preset>.tflite into DIR")
    ap.add_argument("--model", metavar="FILE", action="append", default=[],
                    help="also time this .tflite (e.g. a run's model.tflite from tinycnn quantize)")
    args = ap.parse_args()
    for path in args.model:
        with open(path, "rb") as f:
            model = f.read()
        report(path, model, args.seconds, 200)
    if args.model and not args.preset:
        return
    for preset in args.preset or ["fashion", "tutorial"]:
        model = build(preset)
        if args.save:
            with open(f"{args.save}/{preset}.tflite", "wb") as f:
                f.write(model)
        batch = 200 if preset == "fashion" else 10
        report(preset, model, args.seconds, batch)


if __name__ == "__main__":
    main()
