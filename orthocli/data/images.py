"""Folders of images, one subfolder per class (`root/<class>/*.png|jpg|jpeg|bmp|gif`, classes
sorted by name, labels 0..K-1 in that order); reading them needs Pillow. Grayscale images give 1
channel, colour ones 3 (if any image is colour, grayscale ones are repeated to 3 channels); pixel
values are kept as stored.

`load_images` decodes the whole folder (all images must share one size); `ImageFolderSource` reads
only the headers up front (the same checks, before any training) and decodes each image when it is
read, optionally resized and centre-cropped to `image_size`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from orthocli.data.checks import Arrays, make_arrays
from orthocli.data.source import Source
from orthocli.errors import DataError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def class_folders(root: Path) -> list[tuple[Path, list[Path]]]:
    """The class subfolders of `root`, sorted by name, each with its image files, sorted (hidden
    files and folders left out). A folder of images has at least one image in one of them."""
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
        )
        out.append((d, files))
    return out


def load_images(root: Path, classes: list[tuple[Path, list[Path]]]) -> tuple[Arrays, None]:
    """Every image of the folder `root` (its `class_folders`), decoded; a folder has no test set."""
    Image, unreadable = _pillow()
    xs, ys, size, first = [], [], None, None
    for label, (d, files) in enumerate(classes):
        if not files:
            raise DataError(f"{d}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)}); add some or remove it")
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    if size is None:
                        size, first = im.size, f
                    elif im.size != size:
                        raise DataError(
                            f"{f}: image is {im.size[0]}x{im.size[1]} but {first} is {size[0]}x{size[1]}; "
                            "all images must have one size, resize them"
                        )
                    xs.append(_image_array(im))
            except (*unreadable, OSError, ValueError) as e:
                raise DataError(f"{f}: cannot read the image ({first_line(e)}); fix or remove it") from None
            ys.append(label)
    channels = max(a.shape[0] for a in xs)
    x = np.stack([np.broadcast_to(a, (channels, *a.shape[1:])) for a in xs]).astype(np.float32)
    return make_arrays(x, np.asarray(ys, dtype=np.int64), root), None


def open_images(
    root: Path, classes: list[tuple[Path, list[Path]]], image_size: int | None = None
) -> tuple[ImageFolderSource, None]:
    """The folder `root` (its `class_folders`) read image by image; a folder has no test set."""
    return ImageFolderSource(root, classes, image_size), None


class ImageFolderSource(Source):
    """`root/<class>/<image>`, classes sorted by name (labels 0..K-1); each image decoded when read.
    Without `image_size` all images must share one size; with it, each is resized (shorter side to
    `image_size`, bilinear) and centre-cropped to image_size x image_size."""

    def __init__(self, root: Path, classes: list[tuple[Path, list[Path]]], image_size: int | None = None) -> None:
        Image, unreadable = _pillow()
        self.where, self.image_size = str(root), image_size
        self.files: list[str] = []
        labels, size, first, colour, wide = [], None, None, False, False
        for label, (d, files) in enumerate(classes):
            if not files:
                raise DataError(f"{d}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)}); add some")
            for f in files:
                try:
                    with Image.open(f) as im:  # reads the header only
                        mode, im_size = im.mode, im.size
                        colour = colour or _is_colour(im)
                except (*unreadable, OSError, ValueError) as e:
                    raise DataError(f"{f}: cannot read the image ({first_line(e)}); fix or remove it") from None
                wide = wide or mode in ("I", "F") or mode.startswith("I;16")
                if image_size is None:
                    if size is None:
                        size, first = im_size, f
                    elif im_size != size:
                        raise DataError(
                            f"{f}: image is {im_size[0]}x{im_size[1]} but {first} is {size[0]}x{size[1]}; all images"
                            " must have one size: resize them, or give --image-size N"
                        )
                self.files.append(str(f))
                labels.append(label)
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.channels = 3 if colour else 1
        self.float = wide  # 16-bit or float images: read as float32, else uint8
        self.spatial_shape = (image_size, image_size) if image_size else (size[1], size[0])

    def read(self, i: int) -> torch.Tensor:
        Image, unreadable = _pillow()
        path = self.files[i]
        try:
            with Image.open(path) as im:
                im.load()
                if self.image_size is not None:
                    im = _resize_crop(im, self.image_size)
                a = _image_array(im)
        except (*unreadable, OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read the image ({first_line(e)}); fix or remove it") from None
        if a.shape[1:] != self.spatial_shape:
            raise DataError(
                f"{path}: image is {a.shape[2]}x{a.shape[1]}, the others {self.spatial_shape[1]}x"
                f"{self.spatial_shape[0]} (changed while training?); give --image-size N"
            )
        if a.shape[0] != self.channels:
            a = np.broadcast_to(a, (self.channels, *a.shape[1:]))
        return torch.from_numpy(np.array(a, dtype=np.float32 if self.float else np.uint8))


def _pillow():
    """Pillow's `Image` and the exceptions it raises for a file it cannot identify (an optional
    dependency: imported when an image folder is read)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError("reading an image folder needs Pillow: pip install 'orthocli[images]'") from None
    return Image, (UnidentifiedImageError,)


def _image_array(im) -> np.ndarray:
    """(C, H, W) with C 1 for grayscale, 3 for colour; values as stored."""
    if im.mode in ("1", "L", "LA"):
        return np.asarray(im.convert("L"))[None]
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return np.asarray(im).astype(np.float32)[None]
    rgb = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    if im.mode == "P" and (rgb == rgb[:1]).all():
        return rgb[:1]  # a palette image with a gray palette (common for GIF)
    return rgb


def _is_colour(im) -> bool:
    """From the header: does the image decode to 3 channels (`_image_array`'s rule)?"""
    if im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16"):
        return False
    if im.mode == "P":
        palette = im.getpalette() or []
        return any(palette[k] != palette[k + 1] or palette[k] != palette[k + 2] for k in range(0, len(palette), 3))
    return True


def _resize_crop(im, size: int):
    Image, _ = _pillow()
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if im.mode == "P":  # palette indices cannot be interpolated
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))
