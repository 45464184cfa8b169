"""Small Keras models for the import tests: one per layer family, plus branchy functional ones.

Each builder returns a fresh model with seeded, non-trivial weights (biases, BatchNorm
statistics and PReLU slopes are random too, so a wrong weight mapping cannot hide).
"""
from __future__ import annotations

import numpy as np


def _seq(keras, shape, *layers, name=None):
    return keras.Sequential([keras.Input(shape)] + list(layers), name=name)


def randomize(model, seed: int = 1):
    """Seeded random weights; BatchNorm/Normalization variances stay positive."""
    rng = np.random.default_rng(seed)
    new = []
    for w in model.weights:
        shape, dt = tuple(w.shape), np.dtype(getattr(w.dtype, "name", None) or str(w.dtype))
        if dt.kind != "f":
            new.append(np.zeros(shape, dt))
            continue
        v = rng.standard_normal(shape).astype(dt) * 0.5
        if "variance" in w.path:
            v = np.abs(v) + 0.5
        new.append(v)
    model.set_weights(new)
    return model


def layer_models(keras) -> dict:
    """name -> zero-argument builder of a small model exercising one layer family."""
    L = keras.layers
    s = lambda *a, **k: (lambda: _seq(keras, *a, **k))   # noqa: E731
    acts = ["relu", "relu6", "sigmoid", "tanh", "hard_sigmoid", "hard_swish", "swish", "silu",
            "gelu", "elu", "selu", "linear", "softplus", "softsign", "mish"]
    return {
        "conv2d": s((9, 9, 3), L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                    L.Conv2D(3, 4, strides=2, padding="same"), L.Conv2D(2, 2)),
        "conv2d_dilation_groups": s((9, 9, 4), L.Conv2D(4, 3, dilation_rate=2, padding="same"),
                                    L.Conv2D(6, 3, groups=2, activation="tanh")),
        "conv2d_channels_first": s((3, 7, 7), L.Conv2D(4, 3, data_format="channels_first"),
                                   L.MaxPooling2D(2, data_format="channels_first"),
                                   L.Flatten(data_format="channels_first")),
        "conv1d": s((12, 3), L.Conv1D(4, 3, padding="causal", dilation_rate=2),
                    L.Conv1D(4, 4, strides=2, padding="same"), L.MaxPooling1D(2),
                    L.GlobalAveragePooling1D()),
        "conv3d": s((5, 5, 5, 2), L.Conv3D(3, 2, padding="same"), L.AveragePooling3D(2)),
        "depthwise": s((8, 8, 3), L.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                                    strides=2, activation="relu6")),
        "separable": s((8, 8, 3), L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same",
                                                    activation="gelu")),
        "separable1d": s((8, 3), L.SeparableConv1D(5, 3, strides=2)),
        "conv_transpose": s((5, 5, 3), L.Conv2DTranspose(4, 3, strides=2, padding="same"),
                            L.Conv2DTranspose(3, 2, strides=3),
                            L.Conv2DTranspose(2, 3, strides=2, padding="same",
                                              output_padding=1)),
        "dense": s((6,), L.Dense(5, activation="relu"), L.Dense(3, use_bias=False)),
        "dense_3d": s((4, 6), L.Dense(5, activation="elu")),
        "pooling": s((9, 9, 3), L.MaxPooling2D(2), L.AveragePooling2D(3, strides=1,
                                                                     padding="same"),
                     L.MaxPooling2D(3, strides=2, padding="same")),
        "average_pool_same_stride": s((9, 9, 3), L.AveragePooling2D(2, padding="same")),
        "global_pooling": s((6, 6, 3), L.GlobalMaxPooling2D(keepdims=True),
                            L.GlobalAveragePooling2D()),
        "batch_norm": s((6, 6, 3), L.Conv2D(4, 3), L.BatchNormalization(), L.ReLU(),
                        L.Conv2D(2, 1), L.BatchNormalization(center=False, epsilon=0.01),
                        L.Flatten(), L.Dense(4), L.BatchNormalization(scale=False)),
        "layer_norm": s((5, 6), L.LayerNormalization(), L.LayerNormalization(axis=[1, 2],
                                                                             center=False)),
        "activations": s((7,), *[L.Activation(a) for a in acts], L.Activation("softmax")),
        "activation_layers": s((7,), L.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.2),
                               L.LeakyReLU(0.2), L.PReLU(), L.ELU(0.5), L.ReLU(6.0),
                               L.Softmax()),
        "prelu_shared_axes": s((4, 4, 3), L.PReLU(shared_axes=[1, 2])),
        "padding_cropping": s((6, 6, 3), L.ZeroPadding2D(((1, 2), (0, 3))),
                              L.Cropping2D(((1, 0), (2, 1))), L.ZeroPadding2D(1)),
        "upsampling": s((4, 4, 3), L.UpSampling2D(2),
                        L.UpSampling2D((1, 3), interpolation="bilinear")),
        "upsampling1d": s((4, 3), L.UpSampling1D(3), L.ZeroPadding1D(2), L.Cropping1D((1, 2))),
        "reshaping": s((4, 6), L.Reshape((2, 12)), L.Permute((2, 1)), L.Reshape((-1, 4)),
                       L.Flatten()),
        "rescaling_dropout": s((4, 3), L.Rescaling(1 / 255.0, offset=-0.5), L.Dropout(0.5),
                               L.SpatialDropout1D(0.3), L.GaussianNoise(1.0)),
        "normalization": s((4, 3), L.Normalization(mean=[1, 2, 3], variance=[4, 5, 6]),
                           L.Normalization(axis=None, mean=2.0, variance=3.0, invert=True)),
        "normalization_adapted": lambda: _seq(keras, (4, 3), _adapted(keras)),
    }


def _adapted(keras):
    layer = keras.layers.Normalization(axis=-1)
    layer.adapt(np.random.default_rng(3).standard_normal((16, 4, 3)).astype(np.float32) * 3 + 1)
    return layer


def functional_models(keras) -> dict:
    """Branchy functional models: residual blocks, shared inputs and layers, nested models,
    several (and dict) outputs."""
    L = keras.layers

    def resnet():
        inp = keras.Input((8, 8, 3), name="image")
        x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
        x = L.ReLU()(L.BatchNormalization()(x))
        for _ in range(2):
            y = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(x)))
            y = L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(y))
            x = L.ReLU()(L.Add()([x, y]))
        a, b = L.Conv2D(4, 1)(x), L.Conv2D(4, 3, padding="same", activation="swish")(x)
        x = L.MaxPooling2D()(L.Concatenate()([a, b]))
        x = L.GlobalAveragePooling2D()(x)
        return keras.Model(inp, L.Dense(3, activation="softmax")(x), name="resnet_like")

    def shared_nested_multi():
        a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
        shared = L.Dense(4, name="shared")
        x, y = shared(a), shared(b)
        inner = keras.Sequential([keras.Input((4,)), L.Dense(3, name="inner_dense"), L.ReLU()],
                                 name="inner_seq")
        fi = keras.Input((3,), name="fi")
        finner = keras.Model(fi, L.Dense(2, name="fd")(fi), name="inner_functional")
        s, t = inner(x), inner(y)
        u = finner(s)
        z = L.Concatenate(name="cat")([s, t, u])
        w = L.Subtract()([x, y])
        v = L.Multiply()([x, y, w])
        mx = L.Maximum()([x, L.Average()([x, y])])
        return keras.Model([a, b], {"z": z, "u": u, "v": v, "mn": L.Minimum()([x, mx])},
                           name="shared_nested_multi")

    def squeeze_excite():
        inp = keras.Input((6, 6, 4), name="features")
        x = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
        s = L.GlobalAveragePooling2D()(x)
        s = L.Dense(4, activation="sigmoid")(L.Dense(2, activation="relu")(s))
        x = L.Multiply()([x, L.Reshape((1, 1, 4))(s)])
        return keras.Model(inp, [x, L.Flatten()(x)], name="squeeze_excite")

    def shared_input_branches():
        inp = keras.Input((7, 7, 2), name="x")
        p = L.Conv2D(3, 1)(inp)
        q = L.Conv2D(3, 3, padding="same", activation="relu")(inp)
        r = L.DepthwiseConv2D(3, padding="same")(inp)
        cat = L.Concatenate(axis=-1)([p, q, r])
        up = L.UpSampling2D()(L.MaxPooling2D()(cat))
        return keras.Model(inp, [L.Add()([up, L.Cropping2D(((1, 0), (1, 0)))(cat)]),
                                 L.Softmax(axis=1)(cat)], name="shared_input_branches")

    def keras_ops():
        """Operations applied to symbolic tensors (x + 3.0, keras.ops.*), as MobileNetV3's
        hard-sigmoid is written."""
        ops, x = keras.ops, keras.Input((5,), name="v")
        h = L.Dense(5)(x)
        outs = [ops.relu(h), ops.sigmoid(h), ops.divide(h, 2.0), 1.0 - h, ops.negative(h),
                ops.square(h), ops.sqrt(ops.abs(h)), h / 3, ops.hard_sigmoid(h), ops.silu(h),
                ops.maximum(h, 0.5), ops.abs(h) ** 1.5, ops.relu6(h), ops.tanh(h), ops.exp(h),
                ops.softmax(h), ops.gelu(h), ops.gelu(h, approximate=False), h * h + 2,
                ops.leaky_relu(h), ops.elu(h), ops.hard_silu(h),
                L.ReLU()(h + 3.0) * (1.0 / 6.0)]
        return keras.Model(x, L.Concatenate()(outs), name="keras_ops")

    return {"resnet_like": resnet, "shared_nested_multi": shared_nested_multi,
            "squeeze_excite": squeeze_excite, "shared_input_branches": shared_input_branches,
            "keras_ops": keras_ops}
