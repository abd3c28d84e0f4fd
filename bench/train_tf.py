"""Training throughput of the tinycnn network in TensorFlow/Keras, for side-by-side runs with
`tinycnn bench-train` (bench/train_vs_tf.sh). Same network, optimizer and batch: 3 x [conv 3x3
SAME + bias -> max-pool 2x2 SAME -> ReLU] -> dense 128 + ReLU -> dense N, Adam lr 1e-4, whole
training steps on synthetic u8 images scaled by 1/255 inside the model. XLA jit is off.
Prints one line: `tf-train preset=... : <img/s> img/s`.
"""
import argparse
import os
import time

PRESETS = {"tutorial": (128, 128, 3), "fashion": (28, 28, 1)}

parser = argparse.ArgumentParser()
parser.add_argument("--preset", choices=sorted(PRESETS), default="tutorial")
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--classes", type=int, default=10)
parser.add_argument("--warmup", type=int, default=5)
parser.add_argument("--steps", type=int, default=50)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(args.threads)
keras.utils.set_random_seed(0)

h, w, c = PRESETS[args.preset]
init = keras.initializers.TruncatedNormal(stddev=0.05)
bias = keras.initializers.Constant(0.05)
layers = [keras.Input((h, w, c), dtype="uint8"), keras.layers.Rescaling(1 / 255)]
for filters in (32, 32, 64):
    layers += [
        keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer=init, bias_initializer=bias),
        keras.layers.MaxPooling2D(2, 2, padding="same"),
        keras.layers.ReLU(),
    ]
layers += [
    keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu", kernel_initializer=init, bias_initializer=bias),
    keras.layers.Dense(args.classes, kernel_initializer=init, bias_initializer=bias),
]
model = keras.Sequential(layers)
model.compile(
    optimizer=keras.optimizers.Adam(1e-4),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    jit_compile=False,
)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (args.batch, h, w, c), dtype=np.uint8)
y = (np.arange(args.batch) % args.classes).astype(np.int64)
data = tf.data.Dataset.from_tensors((x, y)).repeat()
model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)
start = time.perf_counter()
model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
rate = args.batch * args.steps / (time.perf_counter() - start)
print(f"tf-train preset={args.preset} {h}x{w}x{c} batch={args.batch} threads={args.threads} tf={tf.__version__}: {rate:.1f} img/s")
