"""A stand-in for the torchvision Inception-v3 classes pytorch_fid builds on.

torchvision is not installed for the tests (nor in CI); ``pytorch_fid.
inception`` needs ``torchvision.models.inception_v3`` and the
``torchvision.models.inception.Inception{A,C,E}`` classes it subclasses.
These are written from torchvision's published architecture (module names
and layer shapes as in its state dicts); the FID-specific parts stay
pytorch_fid's own code. Shared by tests/test_fid_inception.py and
benchmarks/perception_throughput.py.
"""

import sys
import types

import torch

nn = torch.nn
F = torch.nn.functional


class BasicConv2d(nn.Module):

  def __init__(self, cin, cout, **kwargs):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


class InceptionA(nn.Module):

  def __init__(self, cin, pool_features):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
    self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
    self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)


class InceptionB(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

  def forward(self, x):
    b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([self.branch3x3(x), b, F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):

  def __init__(self, cin, channels_7x7):
    super().__init__()
    c7 = channels_7x7
    row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(
        kernel_size=(7, 1), padding=(3, 0))
    self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7_2 = BasicConv2d(c7, c7, **row)
    self.branch7x7_3 = BasicConv2d(c7, 192, **col)
    self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row)
    self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)


class InceptionD(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7),
                                     padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1),
                                     padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

  def forward(self, x):
    a = self.branch3x3_2(self.branch3x3_1(x))
    b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(
        self.branch7x7x3_1(x))))
    return torch.cat([a, b, F.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):

  def __init__(self, cin):
    super().__init__()
    row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(
        kernel_size=(3, 1), padding=(1, 0))
    self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
    self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
    self.branch3x3_2a = BasicConv2d(384, 384, **row)
    self.branch3x3_2b = BasicConv2d(384, 384, **col)
    self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, **row)
    self.branch3x3dbl_3b = BasicConv2d(384, 384, **col)
    self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)


class Inception3(nn.Module):

  def __init__(self, num_classes=1000, aux_logits=True, init_weights=None,
               weights=None):
    super().__init__()
    assert not aux_logits and weights is None
    del init_weights
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
    self.Mixed_5b = InceptionA(192, 32)
    self.Mixed_5c = InceptionA(256, 64)
    self.Mixed_5d = InceptionA(288, 64)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b = InceptionC(768, 128)
    self.Mixed_6c = InceptionC(768, 160)
    self.Mixed_6d = InceptionC(768, 160)
    self.Mixed_6e = InceptionC(768, 192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b = InceptionE(1280)
    self.Mixed_7c = InceptionE(2048)
    self.fc = nn.Linear(2048, num_classes)


def _torchvision_stub():
  stub = types.ModuleType('torchvision')
  stub.__version__ = '0.28.0'
  inception = types.SimpleNamespace(
      Inception3=Inception3, InceptionA=InceptionA, InceptionB=InceptionB,
      InceptionC=InceptionC, InceptionD=InceptionD, InceptionE=InceptionE,
      BasicConv2d=BasicConv2d)
  stub.models = types.SimpleNamespace(inception=inception,
                                      inception_v3=Inception3)
  return stub




def install():
  """Puts the stand-in in ``sys.modules['torchvision']`` unless a real
  torchvision is importable; returns True when it installed the stand-in."""
  if 'torchvision' in sys.modules:
    return False
  try:
    import torchvision  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
    return False
  except ImportError:
    sys.modules['torchvision'] = _torchvision_stub()
    return True
