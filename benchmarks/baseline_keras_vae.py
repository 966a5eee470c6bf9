"""The design documents' Keras image VAE, repaired to run, as the baseline for issue 6's image figure.

This is the documents' network (Conv2D 32/64 stride 2, Dense 16, latent 2; decoder Dense 7x7x64,
Conv2DTranspose 64/32 stride 2 and 1 with a sigmoid) trained the way their recipe trains it: Keras's custom
``train_step`` with binary cross-entropy summed over pixels plus the KL divergence, Adam, batch 128. The
documents' own code fails to build; the repair follows the Keras example it was taken from
(keras.io/examples/generative/vae, Keras 3).

TensorFlow is not a vaekit dependency: run this in its own environment, beside vaekit's, on the same machine
in the same hour, so that the two figures compare:

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu
    /tmp/tfenv/bin/python benchmarks/baseline_keras_vae.py --data ../shared/data/mnist --epochs 5

It prints one JSON line: images trained (epochs x 60,000) per second of the whole command (start-up and data
loading included, as bench_speed.py's image figure counts vaekit's) and per second of ``fit`` alone.
"""
from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

try:
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402
    from keras import layers, ops  # noqa: E402
except ImportError:
    print("error: TensorFlow is not installed here: run this in its own environment (see the top of "
          "benchmarks/baseline_keras_vae.py)", file=sys.stderr)
    sys.exit(2)


def idx_images(path: Path) -> np.ndarray:
    raw = gzip.open(path).read()
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols, 1)


class Sampling(layers.Layer):
    """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(shape=ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * eps


def build(latent_dim: int = 2) -> tuple[keras.Model, keras.Model]:
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim)(x)
    z_log_var = layers.Dense(latent_dim)(x)
    encoder = keras.Model(inputs, [z_mean, z_log_var, Sampling()([z_mean, z_log_var])])
    latent = keras.Input(shape=(latent_dim,))
    x = layers.Dense(7 * 7 * 64, activation="relu")(latent)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    return encoder, keras.Model(latent, outputs)


class VAE(keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            rec = ops.mean(ops.sum(keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
            kl = ops.mean(ops.sum(-0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var)), axis=1))
            loss = rec + kl
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with MNIST's train-images-idx3-ubyte.gz")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    images = (idx_images(args.data / "train-images-idx3-ubyte.gz").astype("float32") / 255.0)
    keras.utils.set_random_seed(0)
    vae = VAE(*build())
    vae.compile(optimizer=keras.optimizers.Adam())
    fit_start = time.perf_counter()
    history = vae.fit(images, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    fit_s = time.perf_counter() - fit_start
    trained = len(images) * args.epochs
    wall = time.perf_counter() - START
    print(json.dumps({"bench": "keras_recipe_image", "tensorflow": tf.__version__, "keras": keras.__version__,
                      "batch_size": args.batch_size, "epochs": args.epochs, "wall_s": round(wall, 1),
                      "images_per_s_whole_command": round(trained / wall),
                      "images_per_s_fit": round(trained / fit_s),
                      "final_loss": round(float(history.history["loss"][-1]), 2)}), flush=True)


if __name__ == "__main__":
    main()
