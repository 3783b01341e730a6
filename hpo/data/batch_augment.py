"""Per-sample augmentation of whole batches on the training device (in-memory and cached data).

Every sample draws its own flip, zoom, rotation, shear, crop and colour factors; the geometric
part is one ``affine_grid`` + ``grid_sample`` per batch, so augmenting costs a few kernels, not a
Python loop. Random draws come from a generator on the device that the trainer reseeds each
epoch, so a run (and a resumed run) is reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hpo.data.augment import Augment

#: RGB -> YIQ; hue is a rotation of the (I, Q) chroma plane.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


class BatchTransform:
    """uint8 -> float, colour jitter (train), normalisation, geometric augmentation (train).

    Colour jitter works on [0, 1] pixels when the batch arrives as uint8 (cached files); on
    tensors that are already standardised (digits, fake) it scales those values directly.
    """

    def __init__(
        self,
        aug: Augment | None,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
        device: torch.device,
    ) -> None:
        self.aug = aug if aug is not None and aug.enabled else None
        self.mean = None if mean is None else torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = None if std is None else torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.generator = torch.Generator(device=device)
        self.yiq = _YIQ.to(device)
        self.yiq_inv = torch.linalg.inv(_YIQ).to(device)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __call__(self, x: torch.Tensor, *, train: bool) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        aug = self.aug if train else None
        if aug is not None and (aug.color_jitter > 0 or aug.hue > 0):
            x = self._colour(x, aug)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        if aug is not None and aug.geometric:
            x = self._affine(x, aug)
        elif aug is not None and aug.fliplr > 0:
            flip = self._uniform(len(x), 0, 1) < aug.fliplr
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        return x

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        u = torch.rand(n, generator=self.generator, device=self.generator.device)
        return low + (high - low) * u

    def _colour(self, x: torch.Tensor, aug: Augment) -> torch.Tensor:
        n, c = x.shape[:2]
        j = aug.color_jitter
        if j > 0:
            x = x * self._uniform(n, 1 - j, 1 + j).view(-1, 1, 1, 1)  # brightness
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * self._uniform(n, 1 - j, 1 + j).view(-1, 1, 1, 1) + mean  # contrast
        if c != 3:
            return x  # saturation and hue need colour
        if j > 0:
            grey = (x * self.yiq[0].view(1, 3, 1, 1)).sum(1, keepdim=True)
            x = (x - grey) * self._uniform(n, 1 - j, 1 + j).view(-1, 1, 1, 1) + grey
        if aug.hue > 0:
            angle = self._uniform(n, -aug.hue, aug.hue) * 2 * math.pi
            cos, sin, one, zero = angle.cos(), angle.sin(), torch.ones_like(angle), angle * 0
            rot = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], 1).view(n, 3, 3)
            m = self.yiq_inv @ rot @ self.yiq  # (n, 3, 3): RGB -> YIQ, rotate, back
            x = torch.einsum("nij,njhw->nihw", m, x)
        return x

    def _affine(self, x: torch.Tensor, aug: Augment) -> torch.Tensor:
        """One affine map per sample: output pixel -> input pixel, in [-1, 1] coordinates."""
        n = len(x)
        zoom = self._uniform(n, 1 - aug.scale, 1 + aug.scale)
        angle = self._uniform(n, -aug.degrees, aug.degrees) * math.pi / 180
        shear = torch.tan(self._uniform(n, -aug.shear, aug.shear) * math.pi / 180)
        flip = torch.where(self._uniform(n, 0, 1) < aug.fliplr, -1.0, 1.0)
        cos, sin = angle.cos(), angle.sin()
        # rotation @ shear (x += shear * y) @ flip, divided by the zoom (zoom > 1 magnifies)
        a = torch.stack([cos * flip, cos * shear - sin], 1) / zoom.unsqueeze(1)
        b = torch.stack([sin * flip, sin * shear + cos], 1) / zoom.unsqueeze(1)
        linear = torch.stack([a, b], 1)  # (n, 2, 2)
        offset = torch.zeros(n, 2, device=x.device)
        if aug.random_resized_crop > 0:
            area = self._uniform(n, aug.random_resized_crop, 1.0)
            ratio = torch.exp(self._uniform(n, math.log(3 / 4), math.log(4 / 3)))
            w = torch.sqrt(area * ratio).clamp(max=1.0)
            h = torch.sqrt(area / ratio).clamp(max=1.0)
            linear = torch.diag_embed(torch.stack([w, h], 1)) @ linear
            offset = torch.stack(
                [(1 - w) * self._uniform(n, -1, 1), (1 - h) * self._uniform(n, -1, 1)], 1
            )
        theta = torch.cat([linear, offset.unsqueeze(2)], 2).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
