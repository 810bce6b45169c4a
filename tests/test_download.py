"""Downloads against a real HTTP server on 127.0.0.1 serving archives built from coco_mini."""
from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

from captioning.data.download import DownloadError, download_file, ensure_coco, extract_zip, fetch_images
from captioning.data.subset import build_subsets


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with Range support; `cut_after` bytes then a dropped connection, once per path."""
    cut_after: dict[str, int] = {}
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        RangeHandler.requests.append(self.path)
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if (r := self.headers.get("Range")) and r.startswith("bytes="):
            start = int(r[6:].split("-")[0])
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = RangeHandler.cut_after.pop(self.path, None)
        if cut is not None:           # simulate a dropped connection mid-file
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    RangeHandler.cut_after, RangeHandler.requests = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def zip_folder(zip_path: Path, folder: Path, arcroot: str) -> None:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f"{arcroot}/{f.relative_to(folder)}")


def coco_site(www: Path, coco_mini: Path) -> None:
    """The official layout: annotations/annotations_trainval2017.zip and zips/{train,val}2017.zip."""
    zip_folder(www / "annotations" / "annotations_trainval2017.zip", coco_mini / "annotations", "annotations")
    for split in ("train", "val"):
        zip_folder(www / "zips" / f"{split}2017.zip", coco_mini / f"{split}2017", f"{split}2017")


def test_interrupted_download_resumes_byte_identical(server, tmp_path, shared_data):
    www, url = server
    coco_site(www, shared_data / "coco_mini")
    original = (www / "zips" / "train2017.zip").read_bytes()
    RangeHandler.cut_after["/zips/train2017.zip"] = len(original) // 3
    target = download_file(f"{url}/zips/train2017.zip", tmp_path / "dl" / "train2017.zip", backoff=0.01, progress=False)
    assert target.read_bytes() == original
    assert not (tmp_path / "dl" / "train2017.zip.part").exists()
    assert RangeHandler.requests.count("/zips/train2017.zip") == 2      # the second asked for the rest only
    download_file(f"{url}/zips/train2017.zip", target, progress=False)    # complete: not fetched again
    assert RangeHandler.requests.count("/zips/train2017.zip") == 2


def test_full_coco_download_gives_the_layout_and_is_idempotent(server, tmp_path, shared_data):
    www, url = server
    coco_site(www, shared_data / "coco_mini")
    root = ensure_coco("coco2017", tmp_path / "coco", "full", base_url=url, progress=False)
    assert sorted(p.name for p in (root / "val2017").iterdir()) == sorted(
        p.name for p in (shared_data / "coco_mini" / "val2017").iterdir())
    assert (root / "annotations" / "captions_train2017.json").read_bytes() == \
        (shared_data / "coco_mini" / "annotations" / "captions_train2017.json").read_bytes()
    before = len(RangeHandler.requests)
    ensure_coco("coco2017", root, "full", base_url=url, progress=False)
    assert len(RangeHandler.requests) == before


def test_damaged_archive_is_detected_and_never_extracted(tmp_path, shared_data):
    archive = tmp_path / "val2017.zip"
    zip_folder(archive, shared_data / "coco_mini" / "val2017", "val2017")
    data = bytearray(archive.read_bytes())
    data[200:260] = bytes(60)                     # inside the first member's compressed bytes
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="val2017.zip"):
        extract_zip(archive, tmp_path / "out")
    assert not any((tmp_path / "out").rglob("*.jpg"))


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    www, url = server
    (www / "f.bin").write_bytes(b"x" * 1000)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_file(f"{url}/f.bin", tmp_path / "f.bin", md5="0" * 32, progress=False)
    assert not list(tmp_path.glob("f.bin*"))


@pytest.mark.parametrize("entry", ["../../x.txt", "/etc/evil.txt"])
def test_archive_entry_escaping_the_target_is_refused(tmp_path, entry):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ok.txt", "fine")
        z.writestr(entry, "escape")
    with pytest.raises(DownloadError, match="outside the target folder"):
        extract_zip(archive, tmp_path / "out" / "deep")
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "out" / "deep" / "ok.txt").exists()


def test_symlink_in_archive_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out")


def test_offline_gives_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="offline"):
        download_file("http://127.0.0.1:9/none.zip", tmp_path / "none.zip", retries=1, backoff=0.01, progress=False)


def test_per_image_fetches_exactly_the_subset_once(server, tmp_path, shared_data):
    www, url = server
    mini = shared_data / "coco_mini"
    coco_site(www, mini)
    for split in ("train", "val"):                # the images, where coco_url will point
        shutil.copytree(mini / f"{split}2017", www / f"{split}2017")
    # Point coco_url at the test server in the served annotations.
    ann_dir = tmp_path / "ann" / "annotations"
    ann_dir.mkdir(parents=True)
    for split in ("train", "val"):
        coco = json.loads((mini / "annotations" / f"captions_{split}2017.json").read_text())
        for im in coco["images"]:
            im["coco_url"] = im["coco_url"].replace("http://images.cocodataset.org", url)
        (ann_dir / f"captions_{split}2017.json").write_text(json.dumps(coco))
    zip_folder(www / "annotations" / "annotations_trainval2017.zip", ann_dir, "annotations")

    root = ensure_coco("coco2017", tmp_path / "coco", "per_image", base_url=url, progress=False)
    assert not (root / "train2017").exists()                  # no image zip was fetched
    assert not any("/zips/" in r for r in RangeHandler.requests)
    splits, _ = build_subsets("coco2017", root, {"train": 10, "val": 4, "test": 4}, 0, require_files=False)
    images = [im for s in splits.values() for im in s["images"]]
    report = fetch_images(images, workers=4, progress=False)
    assert report["fetched"] == 18 and report["failed"] == 0
    on_disk = sorted(p.name for p in root.rglob("*.jpg"))
    assert on_disk == sorted(im["file_name"] for im in images)
    for im in images:
        split_dir = Path(im["path"]).parent.name
        assert Path(im["path"]).read_bytes() == (mini / split_dir / im["file_name"]).read_bytes()
    again = fetch_images(images, progress=False)
    assert again["fetched"] == 0 and again["already_present"] == 18
