"""The corruption benchmark's image corruptions (Michaelis et al. 2019, after Hendrycks & Dietterich's
ImageNet-C), applied by the ``imagecorruptions`` package, made deterministic per (image, corruption,
severity).

The 15 benchmark corruptions in their four groups are the package's ``get_corruption_names(group)`` (a test
holds this table to it; it is written out here so that argument checking does not import scikit-image). The
four held-out corruptions are not part of mPC and are not offered.

Determinism: the package draws from numpy's global RandomState. :func:`corrupt_image` seeds it with a hash of
(seed, image id, corruption, severity) for the one call and restores the previous state afterwards, so the
same image under the same corruption and severity is the same array in every model's pass, in any order.
"""

from __future__ import annotations

import hashlib
import inspect
import types
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from mnc_bench.errors import UserError

CORRUPTION_GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
CORRUPTIONS: tuple[str, ...] = tuple(name for group in CORRUPTION_GROUPS.values() for name in group)
SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_SEED = 0


def resolve_corruptions(names: Sequence[str]) -> tuple[str, ...]:
    """Corruption names from ``all``, group names and corruption names (benchmark order, no repeats)."""
    if not names:
        raise UserError("--corruptions: give at least one of all, " + ", ".join(CORRUPTION_GROUPS)
                        + " or a corruption name")
    wanted: set[str] = set()
    for name in names:
        if name == "all":
            wanted.update(CORRUPTIONS)
        elif name in CORRUPTION_GROUPS:
            wanted.update(CORRUPTION_GROUPS[name])
        elif name in CORRUPTIONS:
            wanted.add(name)
        else:
            raise UserError(f"--corruptions: unknown corruption {name!r}; choose from all, "
                            f"{', '.join(CORRUPTION_GROUPS)} or {', '.join(CORRUPTIONS)}")
    return tuple(name for name in CORRUPTIONS if name in wanted)


def check_severities(severities: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct severities; each must be 1..5."""
    if not severities:
        raise UserError("--severities: give at least one severity from 1 to 5")
    for severity in severities:
        if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
            raise UserError(f"--severities: severity {severity!r} is out of range; choose from 1 to 5")
    return tuple(sorted(set(severities)))


def corruption_seed(seed: int, image_id: int, corruption: str, severity: int) -> int:
    """The numpy seed of one corrupted image: a stable hash (not Python's salted ``hash``) of its four
    keys."""
    digest = hashlib.sha256(f"{seed}/{image_id}/{corruption}/{severity}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def corrupt_image(image: np.ndarray, corruption: str, severity: int, *, image_id: int,
                  seed: int = DEFAULT_SEED) -> np.ndarray:
    """``image`` ((H, W, 3) uint8 RGB, H and W >= 32) under ``corruption`` at ``severity``; (H, W, 3)
    uint8."""
    corrupt = _corrupt_function()
    state = np.random.get_state()
    np.random.seed(corruption_seed(seed, image_id, corruption, severity))
    try:
        return corrupt(image, severity=severity, corruption_name=corruption)
    finally:
        np.random.set_state(state)


_CORRUPT: Any = None


def _corrupt_function() -> Any:
    """``imagecorruptions.corrupt``, made to run on this stack, deterministically. Release 1.1.2 calls
    scikit-image's ``gaussian`` with ``multichannel=True`` (removed in scikit-image 0.19+; ``channel_axis=-1``
    says the same), uses ``np.float_`` (removed in numpy 2; ``np.float64`` is the same type), and its impulse
    noise calls ``skimage.util.random_noise``, which since scikit-image 0.19 draws from a fresh unseeded
    generator unless given ``rng``: it gets one seeded from numpy's global generator, which we seed. Each is
    patched inside the package's module only, and only where the installed versions need it."""
    global _CORRUPT
    if _CORRUPT is None:
        try:
            with warnings.catch_warnings():
                # it imports pkg_resources, which warns about its own deprecation
                warnings.simplefilter("ignore")
                import imagecorruptions
                from imagecorruptions import corruptions
        except ImportError:
            raise UserError("corrupted test passes need the imagecorruptions package "
                            "(pip install imagecorruptions)") from None
        if "multichannel" not in inspect.signature(corruptions.gaussian).parameters:
            corruptions.gaussian = _gaussian_with_multichannel(corruptions.gaussian)
        if not hasattr(np, "float_"):
            corruptions.np = _NumpyWithFloat("numpy")
        if "rng" in inspect.signature(corruptions.sk.util.random_noise).parameters:
            corruptions.sk = _SkimageWithSeededNoise(corruptions.sk)
        _CORRUPT = imagecorruptions.corrupt
    return _CORRUPT


def _gaussian_with_multichannel(gaussian: Any) -> Any:
    def patched(image: np.ndarray, *args: Any, multichannel: bool | None = None, **kwargs: Any) -> np.ndarray:
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(image, *args, **kwargs)

    return patched


class _NumpyWithFloat(types.ModuleType):
    """numpy with the ``float_`` alias numpy 2 removed, for the imagecorruptions module alone."""

    float_ = np.float64

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


class _SkimageWithSeededNoise:
    """scikit-image whose ``util.random_noise`` takes its ``rng`` from numpy's global generator, as the
    package's other corruptions do, for the imagecorruptions module alone."""

    def __init__(self, skimage: Any) -> None:
        self._skimage = skimage
        self.util = types.SimpleNamespace(random_noise=self._random_noise)

    def _random_noise(self, image: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        kwargs.setdefault("rng", np.random.randint(2**32, dtype=np.uint64))
        return self._skimage.util.random_noise(image, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._skimage, name)
