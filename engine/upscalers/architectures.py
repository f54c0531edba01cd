"""The super-resolution networks the built-in loader knows, as plain torch modules.

ESRGAN's RRDBNet (Wang et al. 2018; also Real-ESRGAN's x4plus/x2plus and most community
"4x-…" models) and Real-ESRGAN's compact SRVGGNet. Each is built from sizes read off a
state dict (sr_loading.py) and loads it strictly, so a file that does not match fails
loudly instead of producing noise. Parameter names follow the newer BasicSR layout;
sr_loading.py renames the old ESRGAN layout into it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected convolutions; the last one's output, scaled by 0.2, is added
    back to the input."""

    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.conv1 = _conv(features, growth)
        self.conv2 = _conv(features + growth, growth)
        self.conv3 = _conv(features + 2 * growth, growth)
        self.conv4 = _conv(features + 3 * growth, growth)
        self.conv5 = _conv(features + 4 * growth, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            outs.append(F.leaky_relu(conv(torch.cat(outs, 1)), 0.2))
        return self.conv5(torch.cat(outs, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual: three dense blocks, scaled by 0.2, around a skip."""

    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(features, growth)
        self.rdb2 = ResidualDenseBlock(features, growth)
        self.rdb3 = ResidualDenseBlock(features, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator. `unshuffle` > 1 folds the input into channels first (Real-ESRGAN's
    x2 and x1 models), so the scale is 2**len(ups) / unshuffle."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        features: int,
        growth: int,
        blocks: int,
        upsamples: int,
        unshuffle: int = 1,
    ) -> None:
        super().__init__()
        self.unshuffle = unshuffle
        self.conv_first = _conv(in_channels * unshuffle**2, features)
        self.body = nn.Sequential(*(RRDB(features, growth) for _ in range(blocks)))
        self.conv_body = _conv(features, features)
        self.ups = nn.ModuleList(_conv(features, features) for _ in range(upsamples))
        self.conv_hr = _conv(features, features)
        self.conv_last = _conv(features, out_channels)
        self.scale = 2**upsamples // unshuffle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        features = self.conv_first(x)
        features = features + self.conv_body(self.body(features))
        for up in self.ups:
            features = F.leaky_relu(
                up(F.interpolate(features, scale_factor=2, mode="nearest")), 0.2
            )
        return self.conv_last(F.leaky_relu(self.conv_hr(features), 0.2))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact network: a plain stack of convolutions and activations whose
    output is pixel-shuffled up and added to the nearest-neighbour enlarged input.
    `body` alternates conv, activation, … conv, as the files number it."""

    def __init__(
        self, channels: int, features: int, convs: int, scale: int, prelu: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(channels, features), self._act(features, prelu)]
        for _ in range(convs):
            layers += [_conv(features, features), self._act(features, prelu)]
        layers.append(_conv(features, channels * scale * scale))
        self.body = nn.ModuleList(layers)
        self.scale = scale

    @staticmethod
    def _act(features: int, prelu: bool) -> nn.Module:
        return nn.PReLU(features) if prelu else nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = F.pixel_shuffle(out, self.scale)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")
