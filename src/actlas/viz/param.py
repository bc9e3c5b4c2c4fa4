"""Image parameterisations: tensors to optimise and a function that turns them into images.

A parameterisation returns ``(params, image_fn)``: ``params`` is a list of leaf tensors and
``image_fn()`` gives RGB images, float (B, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

# Square root of ImageNet's colour correlation (Lucid's ``color_correlation_svd_sqrt``).
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
COLOR_MEAN = (0.48, 0.46, 0.41)


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """Frequency magnitude of each rfft2 coefficient, shape (h, w // 2 + 1)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def fft_image(spectrum: torch.Tensor, size: int, decay_power: float = 1.0):
    """Image from a scaled spectrum (B, 3, size, size // 2 + 1, 2) by an orthonormal inverse FFT.

    Scaling by 1 / frequency ** decay_power makes low frequencies cheap (Lucid's ``fft_image``);
    with ``norm="ortho"`` the result has unit scale whatever the size.
    """
    freqs = rfft2d_freqs(size, size)
    scale = 1.0 / np.maximum(freqs, 1.0 / size) ** decay_power
    scale_t = torch.tensor(scale, dtype=spectrum.dtype, device=spectrum.device)[None, None, :, :, None]

    def image() -> torch.Tensor:
        scaled = torch.view_as_complex((scale_t * spectrum).contiguous())
        return torch.fft.irfftn(scaled, s=(size, size), norm="ortho") / 4.0

    return image


def to_valid_rgb(image_fn, decorrelate: bool = True):
    """Decorrelated colour space -> RGB, squashed to [0, 1] with a sigmoid."""
    matrix = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))

    def rgb() -> torch.Tensor:
        x = image_fn()
        if decorrelate:
            m = torch.tensor(matrix, dtype=x.dtype, device=x.device)
            x = torch.einsum("bchw,dc->bdhw", x, m)
        return torch.sigmoid(x)

    return rgb


def image(
    batch: int,
    size: int,
    *,
    seeds: list[int] | None = None,
    sd: float = 0.01,
    decay_power: float = 1.0,
    device: torch.device | str = "cpu",
):
    """FFT-parameterised, colour-decorrelated images: (params, image_fn) with image_fn() (B, 3, S, S).

    ``seeds`` (one per image) make each image's start independent of the batch it is in.
    """
    shape = (3, size, size // 2 + 1, 2)
    seeds = seeds if seeds is not None else list(range(batch))
    init = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]) * sd
    spectrum = init.to(device).requires_grad_(True)
    return [spectrum], to_valid_rgb(fft_image(spectrum, size, decay_power))


def maco_image(
    batch: int,
    size: int,
    *,
    seeds: list[int] | None = None,
    decay_power: float = 1.0,
    device: torch.device | str = "cpu",
):
    """MaCo-style images (Fel et al. 2023): only the Fourier phase is optimised; the magnitude stays
    a natural-image spectrum, 1 / frequency ** decay_power. Each image is standardised (zero mean,
    unit deviation) in decorrelated colour, then mapped to RGB with a sigmoid, so its contrast and
    colourfulness are fixed by the spectrum rather than by how far the optimiser went.

    Returns (params, image_fn) with image_fn() (B, 3, S, S) in [0, 1]; ``seeds`` (one per image)
    make each image's start phase independent of the batch it is in.
    """
    freqs = rfft2d_freqs(size, size)
    magnitude = 1.0 / np.maximum(freqs, 1.0 / size) ** decay_power
    magnitude[0, 0] = 0.0  # no DC: the mean is set by standardising
    mag_t = torch.tensor(magnitude, dtype=torch.float32, device=device)[None, None]
    seeds = seeds if seeds is not None else list(range(batch))
    shape = (3, size, size // 2 + 1)
    init = torch.stack(
        [(torch.rand(shape, generator=torch.Generator().manual_seed(int(s))) * 2 - 1) * np.pi for s in seeds]
    )
    phase = init.to(device).requires_grad_(True)
    matrix = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))

    def rgb() -> torch.Tensor:
        spectrum = torch.polar(mag_t.expand_as(phase), phase)
        x = torch.fft.irfftn(spectrum, s=(size, size), norm="ortho")
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-6)
        m = torch.tensor(matrix, dtype=x.dtype, device=x.device)
        return torch.sigmoid(torch.einsum("bchw,dc->bdhw", x, m) * 2.0)

    return [phase], rgb


def low_pass(spectrum: torch.Tensor, size: int, cycles: float) -> torch.Tensor:
    """A 0/1 mask of a parameterisation's spectrum-shaped tensor, (B, 3, S, S // 2 + 1) or
    (B, 3, S, S // 2 + 1, 2): 1 at frequencies of at most ``cycles`` cycles an image, broadcastable."""
    mask = torch.tensor(rfft2d_freqs(size, size) * size <= cycles + 1e-9, dtype=spectrum.dtype, device=spectrum.device)
    return mask[..., None] if spectrum.dim() == 5 else mask


# RenderParams.param -> the parameterisation's constructor
PARAMETERISATIONS = {"fft": image, "maco": maco_image}
