"""Download full MNIST into a cache directory: known mirrors, SHA-256 verified, each file written atomically.

Nothing here runs unless called: the book and the tests never download (the package ships an embedded subset).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

# Public mirrors of the four original MNIST files, tried in this order.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the mirror torchvision uses
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # the mirror TensorFlow uses
    "http://yann.lecun.com/exdb/mnist/",  # the original site
)

# SHA-256 of the original gzip files (sizes in bytes: 9,912,422 / 28,881 / 1,648,877 / 4,542).  Read from
# tensorflow/datasets, tensorflow_datasets/url_checksums/mnist.txt (commit 31f1255e57e5), and cross-checked against
# torchvision's prototype MNIST dataset (_CHECKSUMS), which lists the same four digests.
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

CACHE_ENV_VAR = "CREDIT_TUTORIAL_CACHE"
_CHUNK_BYTES = 1 << 16
_MAX_FILE_BYTES = 256 << 20  # no MNIST file comes near this; stops a misbehaving server from filling the disk
_URL_SCHEMES = ("http", "https", "file")


class DownloadError(OSError):
    """No mirror delivered a file with the expected SHA-256; the message lists every mirror's failure."""


def default_cache_dir() -> Path:
    """Where full MNIST is cached: $CREDIT_TUTORIAL_CACHE/mnist if that variable is set, else
    $XDG_CACHE_HOME/credit_tutorial/mnist, else ~/.cache/credit_tutorial/mnist."""
    root = os.environ.get(CACHE_ENV_VAR)
    if root:
        return Path(root).expanduser() / "mnist"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "credit_tutorial" / "mnist"


def sha256_of_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_mirrors(mirrors) -> list[str]:
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    if not isinstance(mirrors, Sequence) or len(mirrors) == 0:
        raise ValueError(f"mirrors must be a non-empty list of base URLs (http, https or file), got {mirrors!r}")
    checked = []
    for mirror in mirrors:
        if not isinstance(mirror, str) or urllib.parse.urlsplit(mirror).scheme not in _URL_SCHEMES:
            raise ValueError(
                f"each mirror must be a URL string starting with http://, https:// or file://, got {mirror!r}"
            )
        checked.append(mirror if mirror.endswith("/") else mirror + "/")
    return checked


def _check_checksums(checksums) -> dict[str, str]:
    if not isinstance(checksums, Mapping) or len(checksums) == 0:
        raise ValueError(f"checksums must be a non-empty mapping of file name -> SHA-256 hex digest, got {checksums!r}")
    checked = {}
    for name, digest in checksums.items():
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"checksums keys must be plain file names (no directories), got {name!r}")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise ValueError(f"checksums[{name!r}] must be a 64-character SHA-256 hex digest, got {digest!r}")
        checked[name] = digest.lower()
    return checked


def _fetch_verified(url: str, target: Path, expected: str, timeout: float, progress: bool) -> None:
    """Stream `url` into a temporary file beside `target`, hashing as it goes; rename it onto `target` only if its
    SHA-256 is `expected`.  On any failure the temporary file is removed and the error is raised."""
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    temp_path = Path(handle.name)
    bar = None
    try:
        digest = hashlib.sha256()
        with handle, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name, leave=False)
            received = 0
            while chunk := response.read(_CHUNK_BYTES):
                received += len(chunk)
                if received > _MAX_FILE_BYTES:
                    raise DownloadError(f"sent more than {_MAX_FILE_BYTES} bytes; no MNIST file is that large")
                digest.update(chunk)
                handle.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if total is not None and received != total:  # urllib does not raise on a short body
                raise DownloadError(f"the connection ended after {received} of {total} bytes")
            handle.flush()
            os.fsync(handle.fileno())
        got = digest.hexdigest()
        if got != expected:
            raise DownloadError(f"SHA-256 mismatch for {target.name}: expected {expected}, got {got}")
        os.chmod(temp_path, 0o644)  # temporary files are created 0600
        os.replace(temp_path, target)
    finally:
        if bar is not None:
            bar.close()
        temp_path.unlink(missing_ok=True)  # no-op after a successful os.replace


def download_mnist(
    cache_dir: str | os.PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    progress: bool = False,
    timeout: float = 60,
    checksums: Mapping[str, str] | None = None,
) -> Path:
    """Download the four MNIST files into `cache_dir` (default: `default_cache_dir()`) and return that directory.

    Each file is tried from each mirror in turn, written to a temporary file in `cache_dir`, and moved into place
    (`os.replace`) only if its SHA-256 matches `checksums` (default: the official digests, `MNIST_SHA256`).  Files
    already present with the right digest are kept; one present with another digest is replaced only by a verified
    download, never deleted.  If every mirror fails for a file, `DownloadError` lists each mirror's failure; no
    partial or unverified download is left in the cache.  Uses only urllib (honours the *_proxy environment
    variables).
    """
    mirrors = _check_mirrors(MNIST_MIRRORS if mirrors is None else mirrors)
    checksums = _check_checksums(MNIST_SHA256 if checksums is None else checksums)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a str, os.PathLike or None, got {type(cache_dir).__name__}")
    cache = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)

    for name, expected in checksums.items():
        target = cache / name
        if target.is_file() and sha256_of_file(target) == expected:
            continue
        failures = []
        for mirror in mirrors:
            url = urllib.parse.urljoin(mirror, urllib.parse.quote(name))
            try:
                _fetch_verified(url, target, expected, timeout, progress)
                break
            # URLError/HTTPError, timeouts, dropped connections, SHA-256 mismatches (DownloadError), malformed URLs
            except (OSError, http.client.HTTPException, ValueError) as err:
                failures.append(f"  {url}: {err}")
        else:
            raise DownloadError(
                f"could not download {name} into {cache}; every mirror failed:\n" + "\n".join(failures)
                + ("\n(the existing, unverified copy of the file was left as it was)" if target.exists() else "")
            )
    return cache
