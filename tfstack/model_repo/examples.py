"""The example SavedModels: how each one is made and exported (TensorFlow is imported here only).

Every function writes one version directory `dest` (TF Serving's `<base>/<name>/<version>/`) and
returns a short summary for the build log. `tfstack.model_repo.build` decides what needs building.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from tfstack.model_repo.data import digits_split

LABELS = [str(d) for d in range(10)]
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


# --- half_plus_two --------------------------------------------------------------------------------


def export_half_plus_two(dest: Path) -> str:
    """y = 0.5·x + 2 with TF Serving's classic signatures (predict, regress, classify).

    Built as a TF1 graph with `tf.compat.v1.saved_model.Builder`: TF2's `tf.saved_model.save`
    writes every signature with the predict method name, while this model must carry real
    `tensorflow/serving/classify` and `tensorflow/serving/regress` signatures, as TF Serving's own
    half_plus_two does (its `--enable_signature_method_name_check` rejects anything else).
    """
    v1 = tf.compat.v1
    sig = v1.saved_model.signature_def_utils
    with tf.Graph().as_default() as graph:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        x = v1.placeholder(tf.float32, shape=[None], name="x")
        y = tf.add(a * x, b, name="y")

        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        parsed = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([1], tf.float32)})
        scores = tf.add(a * parsed["x"], b, name="y_from_examples")  # [-1, 1]
        outputs = tf.reshape(scores, [-1], name="y_regression")  # [-1]

        signatures = {
            "serving_default": sig.predict_signature_def(inputs={"x": x}, outputs={"y": y}),
            "regress_x_to_y": sig.regression_signature_def(serialized, outputs),
            "classify_x_to_y": sig.classification_signature_def(serialized, None, scores),
        }
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(dest))
            builder.add_meta_graph_and_variables(
                sess, [v1.saved_model.tag_constants.SERVING], signature_def_map=signatures
            )
            builder.save()
    return "y = 0.5*x + 2; signatures serving_default, regress_x_to_y, classify_x_to_y"


# --- digits ---------------------------------------------------------------------------------------


def train_digits(seed: int, epochs: int, hidden: int):
    """A small Keras classifier of sklearn's 8x8 digits; returns (model, train_acc, test_acc)."""
    import keras

    keras.utils.set_random_seed(seed)
    x_train, x_test, y_train, y_test = digits_split()
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8), name="images"),
            keras.layers.Rescaling(1.0 / 16.0),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name=f"digits_h{hidden}_s{seed}",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, shuffle=True, verbose=0)
    return model, _accuracy(model, x_train, y_train), _accuracy(model, x_test, y_test)


def _accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    probs = model(tf.constant(images), training=False).numpy()
    return float(np.mean(np.argmax(probs, axis=1) == labels))


IMAGES = tf.TensorSpec([None, 8, 8], tf.float32, name="images")
IMAGE_BYTES = tf.TensorSpec([None], tf.string, name="image_bytes")


def export_keras(dest: Path, model, serve, input_spec: tf.TensorSpec) -> None:
    """Write `serve` (one named input -> dict of outputs) as signature `serving_default`.

    Uses Keras 3's own `ExportArchive`, not `tf.saved_model.save` of a `tf.Module` holding the
    model: the latter writes a MetaGraph whose variable ops do not match the names its restore op
    fills, so TF Serving's C++ loader (graph mode: import the MetaGraph into a Session, run the
    saver's restore op, run the signature) fails with `FAILED_PRECONDITION: Could not find variable
    ...` although `tf.saved_model.load` works (keras-team/keras#19274, #20095,
    tensorflow/serving#2226). The archive loads both ways; the signature's input key is the
    spec's name, its output keys those of the dict `serve` returns, its method `.../predict`.
    """
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[input_spec])
    _order_archive_variables(archive)
    archive.write_out(str(dest), verbose=False)


def _order_archive_variables(archive) -> None:
    """Make the archive's checkpoint byte-identical from run to run.

    `write_out` lists the variables the endpoints use from the traced function, whose order follows
    object ids (memory addresses), and saves that list as `_all_variables/<i>`: the same weights
    land under different checkpoint keys in every process. Sorting the list by variable name (unique
    within a model) fixes the order. Relies on Keras's private `_filter_and_track_resources`; the
    determinism test (`test_build_is_deterministic`) notices if that ever stops working.
    """
    collect = archive._filter_and_track_resources

    def collect_in_order() -> None:
        collect()
        tracked = archive._tf_trackable
        ordered = sorted(tracked._all_variables, key=lambda v: v.name)
        names = [v.name for v in ordered]
        if len(set(names)) != len(names):
            raise ValueError(f"variable names are not unique: {names}")
        tracked._all_variables = ordered

    archive._filter_and_track_resources = collect_in_order


def export_digits(dest: Path, model, train_acc: float, test_acc: float) -> str:
    def serve(images):
        probabilities = model(images, training=False)
        classes = tf.argmax(probabilities, axis=1, output_type=tf.int64)
        return {"probabilities": probabilities, "classes": classes}

    export_keras(dest, model, serve, IMAGES)
    _, x_test, _, _ = digits_split()
    write_warmup(dest, "digits", {"images": x_test[:4]})
    return f"{model.name}: train accuracy {train_acc:.3f}, test accuracy {test_acc:.3f}"


def write_warmup(dest: Path, model_name: str, batches: dict[str, np.ndarray]) -> None:
    """`assets.extra/tf_serving_warmup_requests`: PredictionLog records, TF Serving's warmup format.

    One request per batch size 1..n, so a server that traces per shape warms the common ones.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = dest / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    count = min(len(v) for v in batches.values())
    with tf.io.TFRecordWriter(str(path)) as writer:
        for size in range(1, count + 1):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
            )
            for key, value in batches.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value[:size]))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


# --- digits_png -----------------------------------------------------------------------------------


def export_digits_png(dest: Path, model, source: str) -> str:
    """PNG bytes in, label/score/thumbnail out: exercises DT_STRING inputs and `_bytes` outputs."""

    def serve(image_bytes):
        pixels = tf.map_fn(_decode_digit, image_bytes, fn_output_signature=tf.uint8)  # [n,8,8,1]
        images = tf.cast(pixels[..., 0], tf.float32) * (16.0 / 255.0)
        probabilities = model(images, training=False)
        big = tf.image.resize(pixels, [32, 32], method="nearest")
        thumbnails = tf.map_fn(
            tf.io.encode_png, tf.cast(big, tf.uint8), fn_output_signature=tf.string
        )
        return {
            "label": tf.gather(tf.constant(LABELS), tf.argmax(probabilities, axis=1)),
            "score": tf.reduce_max(probabilities, axis=1),
            "thumbnail_bytes": thumbnails,
        }

    export_keras(dest, model, serve, IMAGE_BYTES)
    return f"classifier weights from {source}; PNG in, label/score/thumbnail_bytes out"


def _decode_digit(png):
    image = tf.io.decode_png(png, channels=1, dtype=tf.uint8)
    return tf.ensure_shape(image, [8, 8, 1])
