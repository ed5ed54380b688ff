"""An independent reference for pytorch/examples' fast_neural_style TransformerNet
(fast_neural_style/neural_style/transformer_net.py), written from its published layout, with widths
as parameters so reduced-width variants can be made. It maps 0..255 to 0..255, as the original does.
Test fixture: the project's importer, exporters and parity conventions are checked against it.
"""

import torch
from torch import nn


class ConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        return out + residual


class UpsampleConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = nn.functional.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(nn.Module):
    def __init__(self, c=(32, 64, 128)):
        super().__init__()
        self.conv1 = ConvLayer(3, c[0], kernel_size=9, stride=1)
        self.in1 = nn.InstanceNorm2d(c[0], affine=True)
        self.conv2 = ConvLayer(c[0], c[1], kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(c[1], affine=True)
        self.conv3 = ConvLayer(c[1], c[2], kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(c[2], affine=True)
        self.res1, self.res2, self.res3, self.res4, self.res5 = (ResidualBlock(c[2]) for _ in range(5))
        self.deconv1 = UpsampleConvLayer(c[2], c[1], kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(c[1], affine=True)
        self.deconv2 = UpsampleConvLayer(c[1], c[0], kernel_size=3, stride=1, upsample=2)
        self.in5 = nn.InstanceNorm2d(c[0], affine=True)
        self.deconv3 = ConvLayer(c[0], 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for r in (self.res1, self.res2, self.res3, self.res4, self.res5):
            y = r(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def reference(channels, seed=0):
    torch.manual_seed(seed)
    net = TransformerNet(channels)
    with torch.no_grad():  # non-trivial instance-norm affines, like a trained network
        for name, p in net.named_parameters():
            if ".weight" in name and p.dim() == 1:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.3 * torch.randn_like(p))
    return net.eval()
