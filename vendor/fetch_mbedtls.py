#!/usr/bin/env python3
"""Fetch and verify the pinned Mbed TLS release into vendor/mbedtls-<version>/.

Sources are tried in this order, and the first one that is present wins:

1. ``PYNANO_MBEDTLS_SOURCE``: a path to the release tarball or to an
   unpacked tree;
2. an unpacked ``vendor/mbedtls-<version>/`` or a tarball in ``vendor/``;
3. the upstream release URL from the pin file;
4. on Debian-family machines, the source package of the same release from
   the Debian suite named in the pin, fetched with ``apt-get source
   --download-only`` through a private sources list built from the Debian
   archive entries already configured on the machine.

Every tarball is checked against the pinned SHA-256 before it is unpacked.
Every unpacked tree is checked against the pinned digest of its ``include/``
and ``library/`` files, so a tree that arrives inside an sdist or through
``PYNANO_MBEDTLS_SOURCE`` is held to the same pin as a tarball.

Run ``python vendor/fetch_mbedtls.py`` to fetch, ``--print-tree-digest DIR``
to compute the digest of a tree when the pin is updated.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Dict, Iterable, List, Optional

VENDOR_DIR = Path(__file__).resolve().parent
PIN_FILE = VENDOR_DIR / "mbedtls-pin.json"
SOURCE_ENV = "PYNANO_MBEDTLS_SOURCE"
UPSTREAM_TIMEOUT_SECONDS = 20
APT_TIMEOUT_SECONDS = 300


class FetchError(RuntimeError):
    """A source could not be fetched or failed verification."""


def load_pin() -> Dict[str, object]:
    """Read vendor/mbedtls-pin.json."""
    with open(PIN_FILE, encoding="utf-8") as pin_file:
        return json.load(pin_file)


def default_tree_dir(pin: Dict[str, object]) -> Path:
    return VENDOR_DIR / f"mbedtls-{pin['version']}"


def log(message: str) -> None:
    print(f"fetch_mbedtls: {message}", file=sys.stderr, flush=True)


# --- verification -----------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(root: Path, tree_dirs: Iterable[str]) -> str:
    """Hash the relative path and content of every file under tree_dirs.

    The digest covers exactly the files the build compiles and includes, so
    an edited, missing or extra header or source changes it.
    """
    digest = hashlib.sha256()
    for top in sorted(tree_dirs):
        base = root / top
        if not base.is_dir():
            raise FetchError(f"{root} has no {top}/ folder; it is not an Mbed TLS source tree")
        files = sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            relative = path.relative_to(root).as_posix()
            digest.update(relative.encode() + b"\0")
            digest.update(file_sha256(path).encode() + b"\n")
    return digest.hexdigest()


def verify_tarball(path: Path, pin: Dict[str, object]) -> None:
    """Raise FetchError unless path has the pinned SHA-256."""
    actual = file_sha256(path)
    expected = str(pin["tarball_sha256"])
    if actual != expected:
        raise FetchError(
            f"SHA-256 mismatch for {path}: expected {expected}, got {actual}. "
            "The file is corrupt or not the pinned release; delete it and fetch again."
        )


def verify_tree(root: Path, pin: Dict[str, object]) -> None:
    """Raise FetchError unless the tree under root matches the pinned digest."""
    actual = tree_digest(root, pin["tree_dirs"])  # type: ignore[arg-type]
    expected = str(pin["tree_sha256"])
    if actual != expected:
        raise FetchError(
            f"Mbed TLS tree {root} does not match the pin: expected tree digest "
            f"{expected}, got {actual}. Remove the folder and fetch the release again."
        )


def unpack_tarball(tarball: Path, pin: Dict[str, object], dest: Path) -> Path:
    """Verify tarball, unpack it and move its tree to dest."""
    verify_tarball(tarball, pin)
    top = f"mbedtls-{pin['version']}"
    with tempfile.TemporaryDirectory(dir=dest.parent) as staging:
        with tarfile.open(tarball, "r:*") as archive:
            members = [m for m in archive.getmembers() if _is_safe_member(m, top)]
            archive.extractall(staging, members=members)
        unpacked = Path(staging) / top
        if not unpacked.is_dir():
            raise FetchError(f"{tarball} does not contain the folder {top}/")
        verify_tree(unpacked, pin)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(unpacked, dest)
    log(f"unpacked {tarball.name} into {dest}")
    return dest


def _is_safe_member(member: tarfile.TarInfo, top: str) -> bool:
    name = member.name
    inside = name == top or name.startswith(top + "/")
    return inside and ".." not in Path(name).parts and not member.issym() and not member.islnk()


# --- sources ----------------------------------------------------------------


def from_environment(pin: Dict[str, object], dest: Path) -> Optional[Path]:
    value = os.environ.get(SOURCE_ENV)
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        verify_tree(path, pin)
        log(f"using the tree named by {SOURCE_ENV}: {path}")
        return path
    if path.is_file():
        log(f"using the tarball named by {SOURCE_ENV}: {path}")
        return unpack_tarball(path, pin, dest)
    raise FetchError(
        f"{SOURCE_ENV}={value} is neither a tarball nor a folder; "
        "point it at mbedtls-3.6.6.tar.bz2 or an unpacked tree, or unset it"
    )


def from_vendor(pin: Dict[str, object], dest: Path) -> Optional[Path]:
    if dest.is_dir():
        verify_tree(dest, pin)
        return dest
    for name in (str(pin["tarball"]), str(pin["debian_orig_tarball"])):
        tarball = VENDOR_DIR / name
        if tarball.is_file():
            log(f"using {tarball}")
            return unpack_tarball(tarball, pin, dest)
    return None


def from_upstream(pin: Dict[str, object], dest: Path) -> Optional[Path]:
    url = str(pin["upstream_url"])
    tarball = VENDOR_DIR / str(pin["tarball"])
    partial = tarball.with_suffix(".part")
    log(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=UPSTREAM_TIMEOUT_SECONDS) as response:
            with open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
    except OSError as error:
        partial.unlink(missing_ok=True)
        log(f"upstream download failed ({error}); trying the next source")
        return None
    os.replace(partial, tarball)
    return unpack_tarball(tarball, pin, dest)


def debian_archive_uris(apt_dir: Path = Path("/etc/apt")) -> List[str]:
    """Return the URIs of the Debian main archive configured for apt.

    Both deb822 ``*.sources`` files and one-line ``*.list`` files are read.
    Security and updates suites live in other archives or carry other
    releases, so only entries whose suite is a plain release name count.
    """
    uris: List[str] = []
    for path in sorted(glob.glob(str(apt_dir / "sources.list.d" / "*.sources"))):
        for stanza in Path(path).read_text(encoding="utf-8", errors="replace").split("\n\n"):
            fields = _parse_deb822(stanza)
            if _is_debian_release_entry(fields.get("uris", ""), fields.get("suites", ""),
                                        fields.get("signed-by", "")):
                uris.extend(fields["uris"].split())
    list_files = [apt_dir / "sources.list"]
    list_files += [Path(p) for p in sorted(glob.glob(str(apt_dir / "sources.list.d" / "*.list")))]
    for path in list_files:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = re.match(r"^\s*deb(?:-src)?\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)", line)
            if match and _is_debian_release_entry(match["uri"], match["suite"], match["opts"] or ""):
                uris.append(match["uri"])
    return list(dict.fromkeys(uris))


def _parse_deb822(stanza: str) -> Dict[str, str]:
    fields: Dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields


def _is_debian_release_entry(uris: str, suites: str, options: str) -> bool:
    release_suites = [s for s in suites.split() if re.fullmatch(r"[a-z]+", s)]
    is_debian = "debian" in uris.lower() or "debian-archive-keyring" in options
    return bool(uris) and bool(release_suites) and is_debian and "security" not in uris


def from_debian_source_package(pin: Dict[str, object], dest: Path) -> Optional[Path]:
    if shutil.which("apt-get") is None:
        log("apt-get not found; not a Debian-family machine")
        return None
    uris = debian_archive_uris()
    if not uris:
        log("no Debian archive entry found in the apt sources")
        return None

    suite = str(pin["debian_suite"])
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    with tempfile.TemporaryDirectory(prefix="pynano-apt-") as work:
        sources_list = Path(work) / "sources.list"
        signed_by = f"[signed-by={keyring}] " if os.path.exists(keyring) else ""
        sources_list.write_text(
            "".join(f"deb-src {signed_by}{uri} {suite} main\n" for uri in uris), encoding="utf-8"
        )
        for sub in ("lists/partial", "cache/archives/partial", "download"):
            (Path(work) / sub).mkdir(parents=True)
        apt_options = [
            "-o", f"Dir::Etc::SourceList={sources_list}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={work}/lists",
            "-o", f"Dir::Cache={work}/cache",
            "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root",
        ]
        log(f"fetching the {suite} source package {pin['debian_source_package']} with apt-get")
        try:
            _run_apt(["apt-get", *apt_options, "update"], cwd=work)
            # The suite's current upload is taken; the pinned hash below rejects
            # it if the suite has moved on to another release.
            _run_apt(["apt-get", *apt_options, "source", "--download-only",
                      str(pin["debian_source_package"])], cwd=f"{work}/download")
        except FetchError as error:
            log(str(error))
            return None
        orig = Path(work) / "download" / str(pin["debian_orig_tarball"])
        if not orig.is_file():
            log(f"apt-get did not produce {orig.name}")
            return None
        kept = VENDOR_DIR / str(pin["tarball"])
        verify_tarball(orig, pin)
        shutil.copyfile(orig, kept)
    return unpack_tarball(kept, pin, dest)


def _run_apt(command: List[str], cwd: str) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                                timeout=APT_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as error:
        raise FetchError(f"{' '.join(command[:1] + command[-2:])} timed out") from error
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise FetchError(f"{command[0]} {command[-1]} failed: {' / '.join(tail)}")


# --- entry points -----------------------------------------------------------


def ensure_mbedtls(dest: Optional[Path] = None) -> Path:
    """Return the root of a verified Mbed TLS tree, fetching it if needed.

    Raises FetchError when every source failed or a source failed verification.
    """
    pin = load_pin()
    dest = dest or default_tree_dir(pin)
    for source in (from_environment, from_vendor, from_upstream, from_debian_source_package):
        tree = source(pin, dest)
        if tree is not None:
            return tree
    raise FetchError(
        f"could not obtain Mbed TLS {pin['version']}: set {SOURCE_ENV} to a copy of "
        f"{pin['tarball']} (SHA-256 {pin['tarball_sha256']}) or place it in {VENDOR_DIR}"
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print-tree-digest", metavar="DIR",
                        help="print the digest of an unpacked tree and exit")
    args = parser.parse_args(argv)
    try:
        if args.print_tree_digest:
            print(tree_digest(Path(args.print_tree_digest), load_pin()["tree_dirs"]))  # type: ignore[arg-type]
            return 0
        print(ensure_mbedtls())
    except FetchError as error:
        log(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
