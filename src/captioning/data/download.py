"""Getting COCO onto disk: resumable HTTP downloads, verified archives, safe extraction, per-image fetch.

Everything here writes atomically: a download grows in `<name>.part` (resumed with an HTTP Range
request after an interruption) and is renamed only once its size and checksum are right; an archive is
extracted into a temporary folder and moved into place only when every entry came out.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

from tqdm import tqdm

from captioning.io import InputError

OFFICIAL_COCO_URL = "http://images.cocodataset.org"
COCO_BASE_URL = os.environ.get("COCO_BASE_URL", OFFICIAL_COCO_URL)   # a mirror, or a test server
CHUNK = 1 << 20
# MD5s published alongside the official archives (and repeated by torchvision, Detectron, Paddle).
# train2014.zip is left out: public copies of its checksum disagree; size and zip integrity still apply.
KNOWN_MD5 = {
    "annotations_trainval2017.zip": "f4bbac642086de4f52a3fdda2de5fa2c",
    "train2017.zip": "cced6f7f71b7629ddf16f17bbcfab6b2",
    "val2017.zip": "442b8da7639aecaf257c1dceb8ba8c80",
    "annotations_trainval2014.zip": "0a379cfc70b0e71301e0f377548639bd",
    "val2014.zip": "a3d79f5ed8d289b7a7554ce06a5782b3",
}


class DownloadError(InputError):
    """A download or archive that cannot be used; the message says which and what to do."""


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "captioning-pipeline"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _retrying(what: str, attempt: Callable[[], object], retries: int, backoff: float):
    """Retry transient network errors with exponential backoff; HTTP 4xx is final."""
    for n in range(retries + 1):
        try:
            return attempt()
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500 and e.code not in (408, 429):
                raise DownloadError(f"{what}: HTTP {e.code} {e.reason}") from None
            error = e
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            error = e
        if n < retries:
            time.sleep(backoff * 2 ** n)
    reason = getattr(error, "reason", error)
    raise DownloadError(f"{what}: failed after {retries + 1} attempts ({reason}). Are you offline? "
                        "Put a local copy in data.root (COCO layout) to skip the download.")


def download_file(url: str, target: str | Path, md5: Optional[str] = None, retries: int = 4,
                  backoff: float = 1.0, timeout: float = 60.0, progress: bool = True) -> Path:
    """Fetch url to target, resuming a previous `.part`; verify size and MD5; idempotent when complete."""
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")

    def attempt() -> None:
        start = part.stat().st_size if part.exists() else 0
        with _open(url, start, timeout) as response:
            if start and response.status != 206:       # the server ignored Range: start again
                start = 0
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            if response.status == 206:
                content_range = response.headers.get("Content-Range", "")
                if content_range.rpartition("/")[2].isdigit():
                    total = int(content_range.rpartition("/")[2])
            with open(part, "ab" if start else "wb") as out, \
                    tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=target.name,
                         disable=not progress, leave=False) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        if total is not None and part.stat().st_size != total:
            raise ConnectionError(f"got {part.stat().st_size} of {total} bytes")

    try:
        _retrying(url, attempt, retries, backoff)
    except DownloadError:
        if part.exists() and part.stat().st_size == 0:
            part.unlink()
        raise
    if md5 is not None:
        digest = file_md5(part)
        if digest != md5:
            part.unlink()
            raise DownloadError(f"{url}: checksum mismatch (MD5 {digest}, expected {md5}); the damaged file "
                                "was deleted, run the stage again to download it afresh")
    os.replace(part, target)
    return target


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_member(info: zipfile.ZipInfo, archive: Path) -> str:
    name = info.filename
    mode = info.external_attr >> 16
    if (mode & 0o170000) == 0o120000:
        raise DownloadError(f"{archive}: entry {name!r} is a symbolic link; refused")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DownloadError(f"{archive}: entry {name!r} would be written outside the target folder; refused")
    return str(path)


def extract_zip(archive: str | Path, target: str | Path) -> Path:
    """Check the whole archive, then extract it into target; nothing is left in target on failure."""
    archive, target = Path(archive), Path(target)
    try:
        with zipfile.ZipFile(archive) as z:
            members = [(info, _safe_member(info, archive)) for info in z.infolist()]
            bad = z.testzip()
            if bad is not None:
                raise DownloadError(f"{archive}: entry {bad!r} is damaged (CRC mismatch); delete the archive "
                                    "and run again")
            target.mkdir(parents=True, exist_ok=True)
            staging = Path(target) / f".extracting-{archive.stem}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                for info, name in members:
                    destination = staging / name
                    if info.is_dir():
                        destination.mkdir(parents=True, exist_ok=True)
                        continue
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src, open(destination, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                for child in staging.iterdir():
                    final = target / child.name
                    if final.exists():
                        shutil.rmtree(final) if final.is_dir() else final.unlink()
                    os.replace(child, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{archive}: not a valid zip archive ({e}); delete it and run again") from None
    return target


def coco_layout_present(source: str, root: Path, images: str) -> bool:
    year = source[-4:]
    needed = [root / "annotations" / f"captions_{s}{year}.json" for s in ("train", "val")]
    if images == "full":
        needed += [root / f"{s}{year}" for s in ("train", "val")]
    return all(p.exists() for p in needed)


def ensure_coco(source: str, root: str | Path, images: str = "full", base_url: str | None = None,
                progress: bool = True) -> Path:
    """Make root hold COCO `source` (coco2014|coco2017) in its own layout; download only what is missing.

    images = "full" fetches the image zips; "per_image" only the annotations (the resize stage then
    fetches the subset's images one by one, see fetch_images).
    """
    root, year = Path(root), source[-4:]
    base_url = (base_url or COCO_BASE_URL).rstrip("/")
    if coco_layout_present(source, root, images):
        return root
    downloads = root / "downloads"
    wanted = [("annotations", f"annotations/annotations_trainval{year}.zip")]
    if images == "full":
        wanted += [(f"{s}{year}", f"zips/{s}{year}.zip") for s in ("train", "val")]
    for folder, path in wanted:
        check = root / folder if folder != "annotations" else root / "annotations" / f"captions_train{year}.json"
        if check.exists():
            continue
        name = PurePosixPath(path).name
        md5 = KNOWN_MD5.get(name) if base_url == OFFICIAL_COCO_URL else None   # mirrors may repackage
        archive = download_file(f"{base_url}/{path}", downloads / name, md5, progress=progress)
        extract_zip(archive, root)
    if not coco_layout_present(source, root, images):
        raise DownloadError(f"{root}: the downloaded archives did not give the COCO {year} layout "
                            f"(annotations/captions_train{year}.json, train{year}/, val{year}/)")
    return root


def fetch_images(images: list[dict], workers: int = 8, retries: int = 4, backoff: float = 1.0,
                 progress: bool = True) -> dict:
    """Download each image's `coco_url` to its `path` unless already there; returns counts and failures."""
    missing = [im for im in images if not Path(im["path"]).exists()]

    def fetch(im: dict) -> Optional[str]:
        if not im.get("coco_url"):
            return "no coco_url to fetch it from"
        try:
            download_file(im["coco_url"], im["path"], retries=retries, backoff=backoff, progress=False)
            return None
        except DownloadError as e:
            return str(e)

    failed = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(fetch, missing)
        for im, error in tqdm(zip(missing, results), total=len(missing), desc="fetch images", unit="img",
                              disable=not progress or not missing):
            if error:
                failed.append({"image_id": im["id"], "path": im["path"], "reason": error})
    return {"already_present": len(images) - len(missing), "fetched": len(missing) - len(failed),
            "failed": len(failed), "failed_images": failed}


def manifest(root: str | Path, patterns: list[str]) -> dict:
    """What defines a local dataset, small enough for source.json: annotation files by MD5, image
    folders by a digest of names and sizes (hashing gigabytes of JPEGs on every run would be too slow)."""
    root = Path(root)
    summary = {}
    for pattern in patterns:
        files = sorted(p for p in root.glob(pattern) if p.is_file())
        if pattern.endswith((".json", ".txt")):
            summary[pattern] = {str(p.relative_to(root)): file_md5(p) for p in files}
        else:
            digest = hashlib.md5()
            for p in files:
                digest.update(f"{p.relative_to(root)}\0{p.stat().st_size}\n".encode())
            summary[pattern] = {"files": len(files), "names_and_sizes_md5": digest.hexdigest()}
    return summary
