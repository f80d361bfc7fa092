"""The data the example models learn from: scikit-learn's bundled 8x8 digits (nothing downloaded).

Imports no TensorFlow, so tests and tools can share the exact split the models were trained on.
"""

from __future__ import annotations

import io

import numpy as np

TEST_FRACTION = 0.25
SPLIT_SEED = 0


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_train, y_test): images float32 [n,8,8] with pixels 0..16, labels int64.

    The split is fixed (stratified, seed 0): every model version is scored on the same held-out set.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)
    labels = digits.target.astype(np.int64)
    return tuple(  # type: ignore[return-value]
        train_test_split(
            images, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
        )
    )


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An 8x8 digit with pixels 0..16 as 0..255 grayscale (what a PNG of it holds)."""
    return np.rint(np.asarray(image, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)


def to_png(image: np.ndarray) -> bytes:
    """PNG bytes of an 8x8 digit (pixels 0..16), encoded with Pillow (not TensorFlow)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG")
    return buf.getvalue()
