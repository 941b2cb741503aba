"""Small PyTorch networks on object features plus 3D crops (CPU, or CUDA when present).

``torch`` is imported inside the functions, so importing this module costs nothing.

* :func:`make_classifier` builds the artefact, merge and tracking networks: a multilayer
  perceptron on the standardised feature vector, concatenated with a small 3D convolutional
  encoder of the crop (two conv blocks and global pooling), and a two-layer head giving one
  logit.
* :func:`make_boundary_net` builds the split network's boundary predictor: a fully
  convolutional 3D network (dilated convolutions, same-size output) giving a boundary
  logit per voxel of a crop of the label (channels: intensity, mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["device", "make_boundary_net", "make_classifier", "to_tensor"]

_THREADS_SET = False


def device() -> Any:
    """``torch.device("cuda")`` when a CUDA GPU is usable, else the CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    global _THREADS_SET
    if not _THREADS_SET:  # small convolutions: oversubscribed threads cost more than they give
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
        _THREADS_SET = True
    return torch.device("cpu")


def to_tensor(a: np.ndarray, dev: Any = None) -> Any:
    """A float32 tensor of ``a`` on ``dev``."""
    import torch

    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32), device=dev)


def make_classifier(n_features: int, in_channels: int, crop_zyx: Sequence[int],
                    hidden: int = 32, first_stride: Sequence[int] = (2, 2, 2),
                    feature_dropout: float = 0.3, crop_dropout: float = 0.5) -> Any:
    """Binary classifier on ``(features, crop)``; ``forward(x, c) -> logits (B,)``.

    Parameters
    ----------
    n_features : int
        Length of the feature vector.
    in_channels : int
        Channels of the crop (0: features only).
    crop_zyx : sequence of int
        Crop size in voxels (only its length matters: 3D).
    hidden : int
        Width of the hidden layers.
    first_stride : sequence of int
        Stride of the crop encoder's first convolution (``(1, 2, 2)`` in weights saved
        before version 2).
    feature_dropout : float
        Probability of dropping each input feature in training.
    crop_dropout : float
        Probability of dropping an example's whole crop branch in training.
    """
    import torch
    from torch import nn

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # dropout of whole input features (to their mean, 0) and, per example, of the
            # whole crop branch: with a handful of positives the network must decide from
            # any subset of the features, crop or not (as a forest's random subspaces),
            # instead of memorising the few positives
            self.feat_drop = nn.Dropout(feature_dropout)
            self.crop_drop = crop_dropout
            self.mlp = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(0.2),
                                     nn.Linear(hidden, hidden), nn.ReLU())
            self.use_crop = in_channels > 0
            width = hidden
            if self.use_crop:
                self.enc = nn.Sequential(  # strided from the first layer: cheap on CPU
                    nn.Conv3d(in_channels, 8, 3, padding=1, stride=tuple(first_stride)),
                    nn.ReLU(),
                    nn.Conv3d(8, 16, 3, padding=1, stride=(2, 2, 2)), nn.ReLU(),
                    nn.AdaptiveAvgPool3d(1), nn.Flatten())
                width += 16
            self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(width, hidden), nn.ReLU(),
                                      nn.Linear(hidden, 1))

        def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
            h = self.mlp(self.feat_drop(x))
            if self.use_crop and c is not None:
                e = self.enc(c)
                if self.training and self.crop_drop > 0:
                    keep = (torch.rand(e.shape[0], 1, device=e.device) >= self.crop_drop)
                    e = e * keep / (1.0 - self.crop_drop)
                h = torch.cat([h, e], dim=1)
            return self.head(h).squeeze(1)

    return Classifier()


def make_boundary_net(in_channels: int = 2, width: int = 8) -> Any:
    """Per-voxel boundary logits of a crop ``(B, C, Z, Y, X) -> (B, Z, Y, X)``."""
    from torch import nn

    class BoundaryNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv3d(in_channels, width, 3, padding=1), nn.ReLU(),
                nn.Conv3d(width, width, 3, padding=(1, 2, 2), dilation=(1, 2, 2)), nn.ReLU(),
                nn.Conv3d(width, width, 3, padding=(1, 4, 4), dilation=(1, 4, 4)), nn.ReLU(),
                nn.Conv3d(width, width, 3, padding=1), nn.ReLU(),
                nn.Conv3d(width, 1, 1))

        def forward(self, c: Any) -> Any:
            return self.net(c).squeeze(1)

    return BoundaryNet()
