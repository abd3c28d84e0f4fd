"""Per-op profile of one `tinycnn train` step of the tutorial net (batch 32, 2 threads), with
libtorch's profiler. It drives the same libtorch (2.13, the project venv's torch) with the op
sequence of `host/src/train/model.rs` and `bench_train`: u8 NHWC batch -> float / 255 ->
channels-last NCHW view, 3 x [conv2d padding 1 -> max_pool2d 2x2/2 ceil_mode -> relu] ->
contiguous flatten -> linear + relu -> linear -> cross entropy -> backward -> Adam (not fused,
like tch's). Prints milliseconds per step by op and input shape.

    /work/main/.venv/bin/python bench/profile_train_step.py [--steps 10]
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824 \\
        /work/main/.venv/bin/python bench/profile_train_step.py
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

B, H, W, C, N = 32, 128, 128, 3, 10
convs, cin, h = [], C, H
for f in (32, 32, 64):
    convs.append(((torch.randn(f, cin, 3, 3) * 0.05).requires_grad_(), torch.full((f,), 0.05).requires_grad_()))
    cin, h = f, (h + 1) // 2
fc1 = ((torch.randn(128, cin * h * h) * 0.05).requires_grad_(), torch.full((128,), 0.05).requires_grad_())
fc2 = ((torch.randn(N, 128) * 0.05).requires_grad_(), torch.full((N,), 0.05).requires_grad_())
params = [p for layer in convs + [fc1, fc2] for p in layer]
opt = torch.optim.Adam(params, lr=1e-4, foreach=False)
pixels = torch.randint(0, 256, (B, H, W, C), dtype=torch.uint8)
targets = torch.arange(B) % N


def step():
    x = pixels.float().div(255).permute(0, 3, 1, 2)
    for w, b in convs:
        x = F.relu(F.max_pool2d(F.conv2d(x, w, b, padding=1), 2, 2, 0, 1, True))
    x = x.contiguous().flatten(1)
    x = F.linear(F.relu(F.linear(x, *fc1)), *fc2)
    loss = F.cross_entropy(x, targets)
    opt.zero_grad()
    loss.backward()
    opt.step()
    loss.item()


for _ in range(3):
    step()
start = time.perf_counter()
for _ in range(args.steps):
    step()
print(f"unprofiled: {B * args.steps / (time.perf_counter() - start):.1f} img/s")
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(args.steps):
        step()
# Inclusive time of the ops that make up a step (autograd nodes for the backward pass).
PARTS = [
    ("batch: u8 -> float", "aten::_to_copy", (B, H, W, C)),
    ("batch: / 255", "aten::div", (B, H, W, C)),
    ("conv forward", "aten::mkldnn_convolution"),
    ("conv backward", "aten::convolution_backward"),
    ("max-pool forward", "aten::max_pool2d_with_indices"),
    ("max-pool backward (with its zero fill)", "aten::max_pool2d_with_indices_backward"),
    ("ReLU forward", "aten::relu"),
    ("ReLU backward", "aten::threshold_backward"),
    ("NHWC -> NCHW copy before flatten", "aten::contiguous", (B, 64, H // 8, W // 8)),
    ("dense forward", "aten::linear"),
    ("dense backward", "autograd::engine::evaluate_function: AddmmBackward0"),
    ("loss forward", "aten::cross_entropy_loss"),
    ("loss backward", "autograd::engine::evaluate_function: NllLossBackward0"),
    ("loss backward", "autograd::engine::evaluate_function: LogSoftmaxBackward0"),
    ("Adam step", "Optimizer.step#Adam.step"),
    ("zero_grad", "Optimizer.zero_grad#Adam.zero_grad"),
]
events = prof.key_averages(group_by_input_shape=True)
wall = sum(e.self_cpu_time_total for e in events) / 1000 / args.steps
print(f"profiled: {wall:.1f} ms/step of self time")
covered = 0.0
for part in PARTS:
    label, key = part[0], part[1]
    for e in events:
        if e.key != key:
            continue
        shapes = [s for s in e.input_shapes if s]
        if len(part) > 2 and (not shapes or tuple(shapes[0]) != part[2]):
            continue
        ms = e.cpu_time_total / 1000 / args.steps
        covered += ms
        first = "x".join(map(str, shapes[0])) if shapes and key.startswith("aten::") else ""
        print(f"{ms:8.2f} ms {100 * ms / wall:5.1f}%  {label:40} {first}")
print(f"{wall - covered:8.2f} ms {100 * (wall - covered) / wall:5.1f}%  {'rest (autograd bookkeeping, small ops)':40}")
