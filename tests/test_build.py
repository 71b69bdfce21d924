"""The build: pinned and verified Mbed TLS source, macros, CLI facts, sdist."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Dict

import pytest

import pynano
from pynano import nanossl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "vendor"))
import fetch_mbedtls  # noqa: E402

sys.path.pop(0)
sys.path.insert(0, str(ROOT))
import build_ext  # noqa: E402

sys.path.pop(0)

PIN = json.loads((ROOT / "vendor" / "mbedtls-pin.json").read_text())
MUTUAL = "__ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__"
SELECT = "__ENABLE_MOCANA_SSL_CIPHER_SUITES_SELECT__"
BUILD_TIMEOUT = 300


def pinned_tarball() -> Path:
    """Return the verified release tarball that the build fetched."""
    tarball = ROOT / "vendor" / PIN["tarball"]
    assert tarball.is_file(), f"{tarball} is missing: the build keeps the verified tarball in vendor/"
    return tarball


# ---- pin and fetch -------------------------------------------------------


def test_compiled_version_matches_pin() -> None:
    assert pynano.build_info()["mbedtls_version"] == f"Mbed TLS {PIN['version']}"


def test_default_build_has_both_macros() -> None:
    assert pynano.build_info()["macros"] == {MUTUAL: True, SELECT: True}


def test_fetched_tarball_matches_pinned_hash() -> None:
    assert fetch_mbedtls.file_sha256(pinned_tarball()) == PIN["tarball_sha256"]


def test_corrupted_tarball_rejected(tmp_path: Path) -> None:
    corrupt = tmp_path / PIN["tarball"]
    data = bytearray(pinned_tarball().read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))

    with pytest.raises(fetch_mbedtls.FetchError) as caught:
        fetch_mbedtls.unpack_tarball(corrupt, PIN, tmp_path / "tree")

    message = str(caught.value)
    assert PIN["tarball_sha256"] in message
    assert fetch_mbedtls.file_sha256(corrupt) in message
    assert not (tmp_path / "tree").exists()


def test_corrupted_tarball_fails_fetch_command(tmp_path: Path) -> None:
    corrupt = tmp_path / "mbedtls.tar.bz2"
    corrupt.write_bytes(pinned_tarball().read_bytes()[:-100])
    env = dict(os.environ, PYNANO_MBEDTLS_SOURCE=str(corrupt))

    result = subprocess.run([sys.executable, str(ROOT / "vendor" / "fetch_mbedtls.py")], env=env,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    assert "SHA-256 mismatch" in result.stderr


def test_edited_tree_rejected(tmp_path: Path) -> None:
    tree = tmp_path / "mbedtls"
    source = Path(build_ext.mbedtls_root())
    for top in PIN["tree_dirs"]:
        shutil.copytree(source / top, tree / top)
    fetch_mbedtls.verify_tree(tree, PIN)

    ssl_tls = tree / "library" / "ssl_tls.c"
    ssl_tls.write_text(ssl_tls.read_text() + "\n/* edited */\n")

    with pytest.raises(fetch_mbedtls.FetchError, match="does not match the pin"):
        fetch_mbedtls.verify_tree(tree, PIN)


def test_environment_tarball_is_unpacked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYNANO_MBEDTLS_SOURCE", str(pinned_tarball()))

    tree = fetch_mbedtls.ensure_mbedtls(tmp_path / "mbedtls-3.6.6")

    assert (tree / "library" / "ssl_tls.c").is_file()


def test_debian_sources_read_from_apt(tmp_path: Path) -> None:
    sources_d = tmp_path / "sources.list.d"
    sources_d.mkdir()
    (sources_d / "debian.sources").write_text(textwrap.dedent("""\
        Types: deb
        URIs: http://mirror.invalid/debian
        Suites: bookworm bookworm-updates
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

        Types: deb
        URIs: http://mirror.invalid/debian-security
        Suites: bookworm-security
        Components: main
        """))
    (sources_d / "other.list").write_text("deb https://packages.invalid/apt cloud-sdk main\n")
    (tmp_path / "sources.list").write_text("deb http://archive.invalid/debian bookworm main\n")

    uris = fetch_mbedtls.debian_archive_uris(tmp_path)

    assert uris == ["http://mirror.invalid/debian", "http://archive.invalid/debian"]


def test_vendor_holds_only_our_files() -> None:
    if (ROOT / ".git").exists():
        listed = subprocess.run(["git", "ls-files", "vendor"], cwd=ROOT, capture_output=True,
                                text=True, check=True, timeout=60).stdout.split()
        assert sorted(listed) == ["vendor/fetch_mbedtls.py", "vendor/mbedtls-pin.json"]
    ignore = (ROOT / ".gitignore").read_text()
    assert "/vendor/mbedtls-*/" in ignore
    assert "/vendor/*.tar.bz2" in ignore


# ---- macros ----------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("", {MUTUAL, SELECT}),
    (MUTUAL, {SELECT}),
    (SELECT, {MUTUAL}),
    ("__ENABLE_DIGICERT_SSL_CIPHER_SUITES_SELECT__", {MUTUAL}),
    (f"{MUTUAL}, {SELECT}", set()),
])
def test_disable_variable_selects_macros(value: str, expected: set) -> None:
    macros = build_ext.nanossl_macros({"PYNANO_DISABLE_MACROS": value})
    assert {name for name, _ in macros} == expected


def test_disable_variable_rejects_unknown_macro() -> None:
    with pytest.raises(SystemExit, match="__ENABLE_MOCANA_SSL_TYPO__"):
        build_ext.nanossl_macros({"PYNANO_DISABLE_MACROS": "__ENABLE_MOCANA_SSL_TYPO__"})


VARIANT_PROBE = textwrap.dedent("""\
    import json, socket, sys
    sys.path.insert(0, sys.argv[1])
    from {module} import ffi, lib
    info = ffi.new("pynano_build_info *")
    lib.PYNANO_getBuildInfo(info)
    lib.SSL_init(2, 2)
    a, b = socket.socketpair()
    ci = lib.SSL_acceptConnection(a.fileno(), ffi.NULL)
    print(json.dumps({{
        "mutual": info.mutual_auth_support,
        "select": info.cipher_suites_select,
        "enable_ciphers": lib.SSL_enableCiphers(ci, ffi.new("ubyte2[]", [0x1301]), 1),
        "require_mutual_auth": lib.SSL_setSessionFlags(ci, lib.SSL_FLAG_REQUIRE_MUTUAL_AUTH),
        "disabled": lib.ERR_SSL_DISABLED,
    }}))
    """)


def build_variant(tmp_path: Path, module: str, disabled: str) -> Dict[str, int]:
    """Build the extension with one macro off and return what it reports."""
    script = (f"import build_ext\n"
              f"macros = build_ext.nanossl_macros({{'PYNANO_DISABLE_MACROS': {disabled!r}}})\n"
              f"build_ext.make_ffibuilder({module!r}, macros).compile(tmpdir={str(tmp_path)!r})\n")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, capture_output=True,
                   timeout=BUILD_TIMEOUT)
    probe = subprocess.run([sys.executable, "-c", VARIANT_PROBE.format(module=module), str(tmp_path)],
                           check=True, capture_output=True, text=True, timeout=60)
    return json.loads(probe.stdout)


@pytest.mark.slow
def test_build_without_mutual_auth(tmp_path: Path) -> None:
    report = build_variant(tmp_path, "_pynano_no_mutual_auth", MUTUAL)

    assert report["mutual"] == 0
    assert report["select"] == 1
    assert report["require_mutual_auth"] == report["disabled"]
    assert report["enable_ciphers"] == 0


@pytest.mark.slow
def test_build_without_cipher_select(tmp_path: Path) -> None:
    report = build_variant(tmp_path, "_pynano_no_cipher_select", SELECT)

    assert report["select"] == 0
    assert report["mutual"] == 1
    assert report["enable_ciphers"] == report["disabled"]
    assert report["require_mutual_auth"] == 0


def test_default_build_enables_ciphers(listener) -> None:
    import socket

    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    try:
        ci = nanossl.SSL_acceptConnection(server, None)
        assert ci > 0
        assert nanossl.SSL_enableCiphers(ci, [0x1301]) == nanossl.OK
        assert nanossl.SSL_closeConnection(ci) == nanossl.OK
    finally:
        server.close()
        client.close()


# ---- command line ----------------------------------------------------------


@pytest.mark.parametrize("command", [["pynano", "info"], [sys.executable, "-m", "pynano", "info"]])
def test_info_command_reports_build(command: list) -> None:
    if command[0] == "pynano":
        command = [str(Path(sys.executable).with_name("pynano")), "info"]

    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout

    assert f"Mbed TLS {PIN['version']}" in output
    assert f"{MUTUAL}: on" in output
    assert f"{SELECT}: on" in output
    assert f"pynano {pynano.__version__}" in output


def test_ciphers_command_lists_suites() -> None:
    output = subprocess.run([sys.executable, "-m", "pynano", "ciphers"], capture_output=True,
                            text=True, check=True, timeout=60).stdout

    assert "0x1301  TLSv1.3  TLS_AES_128_GCM_SHA256" in output
    assert "0xC02B  TLSv1.2  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" in output
    assert "CBC" not in output


# ---- sdist -------------------------------------------------------------------


@pytest.mark.slow
def test_sdist_installs_without_network(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(dist)],
                   cwd=ROOT, check=True, capture_output=True, timeout=BUILD_TIMEOUT)
    sdist = next(dist.glob("pynano-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    top = names[0].split("/")[0]
    assert f"{top}/vendor/mbedtls-3.6.6/library/ssl_tls.c" in names
    assert f"{top}/csrc/nanossl_handshake.c" in names
    assert not any(name.endswith(".tar.bz2") for name in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True,
                   timeout=BUILD_TIMEOUT)
    env = {key: value for key, value in os.environ.items() if key != "PYNANO_MBEDTLS_SOURCE"}
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--no-build-isolation",
                    "--no-deps", str(sdist)], check=True, capture_output=True, timeout=BUILD_TIMEOUT,
                   env=env, cwd=tmp_path)
    info = subprocess.run([str(venv / "bin" / "python"), "-m", "pynano", "info", "--json"], cwd=tmp_path,
                          check=True, capture_output=True, text=True, timeout=60).stdout
    assert json.loads(info)["mbedtls_version"] == f"Mbed TLS {PIN['version']}"
