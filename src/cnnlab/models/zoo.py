"""Built-in models. The tutorial's four are layer specs, so their structure reads as in the post's table:
3x3 'valid' convolutions, ReLU, 2x2 max pooling, dropout 0.25, Dense 128, logits. The residual nets for
the fast and best recipes live in resnet.py."""

from __future__ import annotations

from cnnlab.models.registry import register_spec

register_spec(
    "mlp", "flatten-dense128", "Tutorial MLP: Flatten, Dense 128, Dense 10 (101,770 params on 28x28x1)"
)
register_spec(
    "cnn1",
    "conv64-pool-drop.25-flatten-dense128",
    "Tutorial CNN with 1 conv layer (1,386,506 params on 28x28x1)",
)
register_spec(
    "cnn2",
    "conv64-pool-drop.25-conv128-pool-drop.25-flatten-dense128",
    "Tutorial CNN with 2 conv layers (485,514 params on 28x28x1)",
)
register_spec(
    "cnn4",
    "conv64-conv64-pool-drop.25-conv128-conv128-pool-drop.25-flatten-dense128",
    "Tutorial CNN with 4 conv layers, two convs before each pool (522,570 params on 28x28x1)",
)
register_spec(
    "fastcnn",
    "conv32-bn-pool-conv64-bn-pool-dense128-drop.2",
    "Small BN CNN for the fast recipe on CPU: 91% of Fashion-MNIST in a few epochs",
)

import cnnlab.models.resnet  # noqa: E402, F401  (registers resnet_s, resnet_w after the tutorial's four)
