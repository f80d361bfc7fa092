"""A heavier stand-in model for bench/modelserver_throughput.py `--model digits_wide`.

`digits` (one 64-unit hidden layer) costs TensorFlow ~0.1 ms a request, less than any server's own
work, so its benchmark compares servers, not serving. Real models cost more, and that is where
batching pays: `digits_wide` takes the same 8x8 images and answers the same outputs
(`probabilities`, `classes`) through three 2048-unit ReLU layers (8.5 M weights, 34 MB). Its
weights are seeded random, not trained: the benchmark measures serving, and a prediction costs
the same whatever the weights. Built into the benchmark's temporary folder, never committed.

    python -m bench.wide_model DEST   # writes DEST/1 (a SavedModel with serving_default)
"""

from __future__ import annotations

import sys
from pathlib import Path

WIDTH = 2048
LAYERS = 3


def build(dest: Path, width: int = WIDTH, layers: int = LAYERS) -> Path:
    import keras
    import tensorflow as tf

    from tfstack.model_repo.examples import IMAGES, export_keras

    keras.utils.set_random_seed(0)
    hidden = [keras.layers.Dense(width, activation="relu") for _ in range(layers)]
    model = keras.Sequential(
        [keras.Input(shape=(8, 8), name="images"), keras.layers.Rescaling(1.0 / 16.0),
         keras.layers.Flatten(), *hidden, keras.layers.Dense(10, activation="softmax")],
        name=f"digits_wide_{layers}x{width}",
    )

    def serve(images):
        probabilities = model(images, training=False)
        classes = tf.argmax(probabilities, axis=1, output_type=tf.int64)
        return {"probabilities": probabilities, "classes": classes}

    version = dest / "1"
    export_keras(version, model, serve, IMAGES)
    return version


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
