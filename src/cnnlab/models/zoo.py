"""The catalogue of built-in models: it imports the registry (the mechanism) and the builders, and
registers each under its name. ``cnnlab.models`` imports this module, so the registry is full whenever
the package is imported, and no builder module needs to know the registry (no import cycle).

The tutorial's four are layer specs, so their structure reads as in the post's table: 3x3 'valid'
convolutions, ReLU, 2x2 max pooling, dropout 0.25, Dense 128, logits. The residual nets for the fast and
best recipes are built in resnet.py. Registration order is the order `list_models()` shows.
"""

from __future__ import annotations

from cnnlab.models.registry import register_model, register_spec
from cnnlab.models.resnet import resnet_f, resnet_s, resnet_w

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
register_spec(
    "speednet",
    "conv64psame-bn-gelu-conv64psame-bn-gelu-pool-conv128psame-bn-gelu-conv128psame-bn-gelu-pool"
    "-conv256psame-bn-gelu-conv256psame-bn-gelu-pool-gap",
    "Three stages of two conv-BN-GELU and a max-pool, 64/128/256 wide, GAP: the fast recipe's GPU model",
)
register_model(
    "resnet_s",
    description="Small residual net (stem 24, blocks 32/64/128, BN, GAP): the fast recipe's model",
    min_size=8,
)(resnet_s)
register_model(
    "resnet_w",
    description="Wide residual net (stem 64, blocks 96/192/384, BN, GAP): the best recipe's model",
    min_size=8,
)(resnet_w)
register_model(
    "resnet_f",
    description="resnet_s for your own folders: max-pooled to at most 32 px after the stem, so the last "
    "block sees whole objects (the folder recipe's model)",
    min_size=8,
)(resnet_f)
