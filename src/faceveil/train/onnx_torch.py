"""CenterFace's ONNX graph run as torch ops, so training can back-propagate through it.

Hand-written because ``onnx2torch`` pulls in torchvision, which breaks with the
local torch build; the CenterFace graph uses only Conv, Relu, Add, ConvTranspose,
BatchNormalization and Sigmoid, so walking its nodes in order is a few lines.
The weights are frozen buffers: CenterFace is the fixed detector ``f``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = {"Conv", "Relu", "Add", "ConvTranspose", "BatchNormalization", "Sigmoid"}


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxGraphModule(nn.Module):
    """A feed-forward ONNX graph of the ops in ``SUPPORTED`` as a torch module (eval-mode batch norm).

    ``forward(x)`` returns a dict of every graph output plus, for each Sigmoid, its input under
    ``"logit:<output name>"`` (a focal loss wants logits, not probabilities).
    """

    def __init__(self, path: str | Path):
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        graph = model.graph
        ops = {n.op_type for n in graph.node}
        if not ops <= SUPPORTED:
            raise ValueError(f"{path}: unsupported ONNX ops {sorted(ops - SUPPORTED)}")
        # Initializers are also listed as graph inputs in this file; the real input is the one left.
        inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.input_name = next(i.name for i in graph.input if i.name not in inits)
        self.output_names = [o.name for o in graph.output]
        self._names: dict[str, str] = {}
        used = {i for n in graph.node for i in n.input}
        for k, (name, arr) in enumerate(inits.items()):
            if name in used:
                self._names[name] = f"w{k}"
                self.register_buffer(f"w{k}", torch.from_numpy(np.array(arr, np.float32)))
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n)) for n in graph.node]

    def _w(self, name: str) -> torch.Tensor:
        return getattr(self, self._names[name])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        env: dict[str, torch.Tensor] = {self.input_name: x}
        get = lambda n: env[n] if n in env else self._w(n)  # noqa: E731
        out: dict[str, torch.Tensor] = {}
        for op, ins, outs, a in self.nodes:
            if op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                if pads[0] != pads[2] or pads[1] != pads[3]:
                    raise ValueError("asymmetric Conv padding is not supported")
                y = F.conv2d(get(ins[0]), get(ins[1]), get(ins[2]) if len(ins) > 2 else None,
                             a.get("strides", [1, 1]), pads[:2], a.get("dilations", [1, 1]), a.get("group", 1))
            elif op == "ConvTranspose":
                pads = a.get("pads", [0, 0, 0, 0])
                y = F.conv_transpose2d(get(ins[0]), get(ins[1]), get(ins[2]) if len(ins) > 2 else None,
                                       a.get("strides", [1, 1]), pads[:2], a.get("output_padding", [0, 0]),
                                       a.get("group", 1), a.get("dilations", [1, 1]))
            elif op == "BatchNormalization":
                y = F.batch_norm(get(ins[0]), get(ins[3]), get(ins[4]), get(ins[1]), get(ins[2]),
                                 training=False, eps=a.get("epsilon", 1e-5))
            elif op == "Relu":
                y = F.relu(get(ins[0]))
            elif op == "Add":
                y = get(ins[0]) + get(ins[1])
            else:  # Sigmoid
                out[f"logit:{outs[0]}"] = get(ins[0])
                y = torch.sigmoid(get(ins[0]))
            env[outs[0]] = y
        out.update({n: env[n] for n in self.output_names})
        return out


class TorchCenterFace(nn.Module):
    """CenterFace in torch with outputs in the compact detector's layout, so ``detector.l_det`` applies.

    Returns (heatmap logits 1ch, log size as (log w/4, log h/4), offset as (x, y) in cell units in the
    compact decoder's convention). CenterFace decodes a centre as (cell + offset + 0.5) * 4, the compact
    decoder as (cell + offset) * 4, hence the + 0.5.
    """

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        if path is None:
            from ..detect.centerface import centerface_model_path

            path = centerface_model_path()
        self.graph = OnnxGraphModule(path)
        self.requires_grad_(False)
        self.eval()

    def raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four CenterFace outputs (heatmap probability, scale, offset, landmarks) plus the heat logit."""
        return self.graph(x)

    def forward(self, x: torch.Tensor):
        o = self.graph(x)
        heat_name, scale_name, off_name = self.graph.output_names[:3]
        logit = o[f"logit:{heat_name}"]
        scale, off = o[scale_name], o[off_name]
        return logit, scale.flip(1), off.flip(1) + 0.5

    def train(self, mode: bool = True):  # always frozen, eval-mode batch norm
        return super().train(False)
