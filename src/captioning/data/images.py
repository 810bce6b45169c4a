"""The resize stage: open any image safely as RGB, resize to one size, skip and count bad ones (up to a limit)."""
from __future__ import annotations

import math
import os
import warnings
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from captioning.io import InputError, atomic_path

JPEG_QUALITY = 90


class BadImage(Exception):
    """An image that cannot be used; the message is the reason shown in the skip report."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB (16-bit greys scaled, transparency composited on white)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):       # 16/32-bit greyscale: scale to 8 bits
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / top)).clip(0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):                   # composite transparency on white
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """EXIF orientation applied, any mode converted to RGB; BadImage with a reason otherwise."""
    path = Path(path)
    if not path.exists():
        raise BadImage("missing file")
    if path.stat().st_size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()                                 # decode now: truncation raises here
                image = ImageOps.exif_transpose(image)
                return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"refused: larger than Pillow's decompression-bomb limit ({e})") from None
    except UnidentifiedImageError:
        raise BadImage("not an image (Pillow cannot identify it)") from None
    except OSError as e:
        raise BadImage(f"corrupt or truncated image ({e})") from None
    except (ValueError, SyntaxError) as e:
        raise BadImage(f"corrupt image ({e})") from None


def resize_image(image: Image.Image, size: int, mode: str) -> Image.Image:
    if mode == "squash":
        return image.resize((size, size), Image.BICUBIC)
    if mode == "crop":
        return ImageOps.fit(image, (size, size), Image.BICUBIC, centering=(0.5, 0.5))
    raise ValueError(f"resize.mode = {mode!r}: choose squash or crop")


def _resize_one(job: tuple[int, str, str, int, str]) -> tuple[int, str, str | None]:
    image_id, source, target, size, mode = job
    try:
        image = resize_image(load_rgb(source), size, mode)
        with atomic_path(target, ".jpg") as tmp:
            image.save(tmp, format="JPEG", quality=JPEG_QUALITY)
        return image_id, source, None
    except BadImage as e:
        return image_id, source, str(e)


def usable_cores() -> int:
    """The cores this process may run on (os.sched_getaffinity exists on Linux only)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resize_split(images: list[dict], out_dir: str | Path, size: int, mode: str, workers: int | None = None) -> dict:
    """Write out_dir/<id>.jpg for every usable image, using `workers` processes (None = every core)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(im["id"], im["path"], str(out_dir / f"{im['id']}.jpg"), size, mode) for im in images]
    workers = workers or usable_cores()
    if workers > 1 and len(jobs) > 1:
        # The platform's default start method: fork does not exist on Windows and is unsafe on macOS,
        # where spawn is the default. Jobs are plain tuples and _resize_one a module-level function, so
        # spawned workers can take them.
        with get_context().Pool(min(workers, len(jobs))) as pool:
            results = pool.map(_resize_one, jobs, chunksize=max(1, len(jobs) // (workers * 8)))
    else:
        results = [_resize_one(job) for job in jobs]
    skipped = [{"image_id": i, "path": p, "reason": r} for i, p, r in results if r is not None]
    return {"written": len(results) - len(skipped), "skipped": len(skipped), "skipped_images": skipped}


def skipped_share(report: dict) -> float:
    total = report["written"] + report["skipped"]
    return report["skipped"] / total if total else 0.0


def skip_problem(split: str, report: dict, max_skipped: float) -> str | None:
    """Why a split's skips stop the pipeline, or None when they are within resize.max_skipped.

    A split with no image left would let features and training run on nothing until evaluation fails;
    a share of skips above the limit quietly makes the split another one than the subset chose.
    """
    if report["skipped"] == 0:
        return None
    total, share = report["written"] + report["skipped"], skipped_share(report)
    counted = f"{split}: {report['skipped']} of {total} images skipped ({share:.1%})"
    if report["written"] == 0:
        return f"{counted}, no image left{_fetch_failures(report)}"
    if share > max_skipped:
        return f"{counted}, above the limit resize.max_skipped = {max_skipped:g}{_fetch_failures(report)}"
    return None


def _fetch_failures(report: dict) -> str:
    """The download failures behind the skips (data.images=per_image offline: every image missing)."""
    fetch = report.get("fetch") or {}
    if not fetch.get("failed"):
        return ""
    return f"; {fetch['failed']} could not be downloaded (first: {fetch['failed_images'][0]['reason']})"


def check_skips(reports: dict[str, dict], max_skipped: float, report_file: str | Path) -> None:
    """InputError naming each split whose skips are over the limit, the file that lists the skipped images,
    and how to accept them."""
    failing = {split: problem for split, report in reports.items()
               if (problem := skip_problem(split, report, max_skipped)) is not None}
    if not failing:
        return
    advice = []
    shares = [skipped_share(reports[split]) for split in failing if reports[split]["written"]]
    if shares:
        limit = math.ceil(max(shares) * 100) / 100
        advice.append(f"to go on without them, raise the limit: `dvc exp run -S resize.max_skipped={limit:g}`")
    if len(shares) < len(failing):
        advice.append("a split with no image left is refused at any limit: its images must be readable")
    raise InputError(f"resize: {'; '.join(failing.values())}. {report_file} lists each skipped image with "
                     f"the reason; {'; '.join(advice)}")
