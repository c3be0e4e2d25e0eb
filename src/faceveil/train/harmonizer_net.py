"""The small U-Net harmonizer (torch): re-colours a pasted face to match its surroundings.

Input: an RGB crop in [0, 1] (N, 3, 128, 128) with the pasted face in it, and the
face's blend mask (N, 1, 128, 128). Output: the harmonized crop, which equals the
input wherever the mask is 0 (the network only predicts a correction of the face,
so the context is never altered by it). The correction is computed at half
resolution and upsampled: harmonization moves colour and light, which are smooth,
and the face's own detail passes through untouched.

A masked global pooling at the bottleneck gives every pixel the mean features of
the context and of the face: the statistics classic colour transfer matches.
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

NET_SIZE = 128


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True))


class HarmonizerUNet(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        c1, c2, c3 = width, 2 * width, 4 * width
        self.e1 = nn.Sequential(_conv(4, c1, 2), _conv(c1, c1))  # 1/2
        self.e2 = nn.Sequential(_conv(c1, c2, 2), _conv(c2, c2))  # 1/4
        self.e3 = nn.Sequential(_conv(c2, c3, 2), _conv(c3, c3))  # 1/8
        self.glob = nn.Sequential(nn.Conv2d(2 * c3, c3, 1), nn.LeakyReLU(0.1, inplace=True))
        self.d2 = _conv(c3 + c3 + c2, c2)
        self.d1 = _conv(c2 + c1, c1)
        self.out = nn.Conv2d(c1, 3, 3, 1, 1)
        nn.init.zeros_(self.out.weight)  # start as the identity: no correction
        nn.init.zeros_(self.out.bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image * 2 - 1, mask * 2 - 1], 1)
        f1 = self.e1(x)
        f2 = self.e2(f1)
        f3 = self.e3(f2)
        m3 = F.avg_pool2d(mask, 8)  # the mask at the bottleneck resolution
        ctx = (f3 * (1 - m3)).sum((2, 3), keepdim=True) / ((1 - m3).sum((2, 3), keepdim=True) + 1e-3)
        face = (f3 * m3).sum((2, 3), keepdim=True) / (m3.sum((2, 3), keepdim=True) + 1e-3)
        g = self.glob(torch.cat([ctx, face], 1)).expand(-1, -1, f3.shape[2], f3.shape[3])
        u = F.interpolate(torch.cat([f3, g], 1), scale_factor=2.0, mode="bilinear", align_corners=False)
        u = self.d2(torch.cat([u, f2], 1))
        u = F.interpolate(u, scale_factor=2.0, mode="bilinear", align_corners=False)
        u = self.d1(torch.cat([u, f1], 1))
        res = F.interpolate(self.out(u), scale_factor=2.0, mode="bilinear", align_corners=False)
        return (image + res * mask).clamp(0, 1)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_onnx(model: HarmonizerUNet, path, opset: int = 17) -> None:
    """ONNX with inputs ``image`` (N,3,128,128) and ``mask`` (N,1,128,128), output ``harmonized``."""
    from ..io.atomic import atomic_path
    from .detector import check_finite

    check_finite(model, path)
    model = copy.deepcopy(model).cpu().eval()
    dummy = (torch.zeros(1, 3, NET_SIZE, NET_SIZE), torch.zeros(1, 1, NET_SIZE, NET_SIZE))
    # The legacy TorchScript exporter: the torch.export-based one needs onnxscript, which faceveil does not install.
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, dummy, str(tmp), input_names=["image", "mask"], output_names=["harmonized"],
                          dynamic_axes={"image": {0: "n"}, "mask": {0: "n"}, "harmonized": {0: "n"}},
                          opset_version=opset, dynamo=False)
