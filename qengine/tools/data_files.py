"""Input data from files, for the command line and the tools: arrays from .npy/.npz (never
unpickled) and a directory of images shaped for a model's one image input (needs Pillow)."""
from __future__ import annotations

import os

import numpy as np

__all__ = ["load_array_file", "image_batch", "load_inputs"]


def load_array_file(path: str):
    """.npy -> array; .npz -> {name: array} (allow_pickle=False: no code runs)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    raise ValueError(f"{path}: expected a .npy or .npz file")


def image_batch(directory: str, model) -> np.ndarray:
    """The images of a directory as a float32 batch in [0, 1] shaped for the model's input."""
    try:
        from PIL import Image
    except ImportError:
        raise RuntimeError("reading a directory of images needs Pillow: pip install pillow") \
            from None
    (inp,) = model.inputs if len(model.inputs) == 1 else (None,)
    if inp is None or len(inp.shape) != 4:
        raise ValueError("a directory of images calibrates one 4-D image input; pass a .npy/.npz")
    shape = inp.shape
    nchw = shape[1] in (1, 3) and not (shape[3] in (1, 3))
    c, h, w = (shape[1], shape[2], shape[3]) if nchw else (shape[3], shape[1], shape[2])
    if not all(isinstance(d, int) for d in (c, h, w)):
        raise ValueError(f"the model input {inp} has no static image size")
    names = sorted(f for f in os.listdir(directory)
                   if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")))
    if not names:
        raise ValueError(f"{directory}: no image files (.png, .jpg, .bmp, .ppm, .webp)")
    batch = []
    for n in names:
        with Image.open(os.path.join(directory, n)) as im:
            im = im.convert("L" if c == 1 else "RGB").resize((w, h))
            a = np.asarray(im, dtype=np.float32) / 255.0
        a = a[..., None] if a.ndim == 2 else a
        batch.append(a.transpose(2, 0, 1) if nchw else a)
    return np.stack(batch)


def load_inputs(path: str, model_path: str):
    """A .npy/.npz file's arrays, or a directory's images shaped for the model at model_path."""
    if os.path.isdir(path):
        from ..api import load
        return image_batch(path, load(model_path))
    return load_array_file(path)
