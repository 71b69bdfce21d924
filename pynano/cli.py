"""The ``pynano`` command line: info, ciphers, certs, demo, server, client, bench."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Dict, List, Optional

EPILOGS: Dict[str, str] = {
    "info": "example:\n  pynano info\n  pynano info --json",
    "ciphers": "example:\n  pynano ciphers\n  pynano ciphers --json",
    "certs": "examples:\n  pynano certs ./pki\n  pynano certs ./pki-rsa --key-type rsa",
    "demo": "example:\n  pynano demo",
}


def cmd_info(args: argparse.Namespace) -> int:
    from . import build_info

    info = build_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"pynano {info['pynano_version']}")
    print(f"Mbed TLS: {info['mbedtls_version']} (read from the compiled library)")
    print("NanoSSL build macros:")
    for name, enabled in info["macros"].items():
        print(f"  {name}: {'on' if enabled else 'off'}")
    versions = [v for v, on in (("TLS 1.2", info["tls12"]), ("TLS 1.3", info["tls13"])) if on]
    print(f"protocols: {', '.join(versions)}")
    print(f"AES-NI in use: {'yes' if info['aesni_in_use'] else 'no'}")
    return 0


def cmd_ciphers(args: argparse.Namespace) -> int:
    from .ciphers import enabled_suites

    suites = enabled_suites()
    if args.json:
        print(json.dumps([suite.__dict__ for suite in suites], indent=2))
        return 0
    print(f"{'id':<8}{'version':<9}{'IANA name':<48}OpenSSL name")
    for suite in suites:
        print(f"0x{suite.id:04X}  {suite.tls_version:<9}{suite.name:<48}{suite.openssl_name}")
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from .certs import write_pki

    paths = write_pki(args.directory, key_type=args.key_type)
    for name, path in paths.items():
        print(f"wrote {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(verbose=args.verbose)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with one subcommand per task."""
    parser = argparse.ArgumentParser(
        prog="pynano",
        description="NanoSSL-style TLS over Mbed TLS 3.6: build facts, demo, interop tools.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run `pynano COMMAND --help` for the options and examples of each command",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection event")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog=EPILOGS.get(name),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(handler=handler)
        return sub

    info = add("info", cmd_info, "show the pynano and Mbed TLS versions and the build macros")
    info.add_argument("--json", action="store_true", help="print JSON")

    ciphers = add("ciphers", cmd_ciphers, "list the cipher suites this build enables")
    ciphers.add_argument("--json", action="store_true", help="print JSON")

    certs = add("certs", cmd_certs, "write a throwaway CA, server and client certificate set")
    certs.add_argument("directory", help="folder to write into; created if missing, must not hold the files")
    certs.add_argument("--key-type", default="ec", choices=["ec", "rsa", "rsa3072", "rsa4096"],
                       help="key type: ec = ECDSA P-256 (default), rsa = RSA 2048")

    demo = add("demo", cmd_demo, "run the ported NanoSSL mutual-authentication example over loopback")
    demo.set_defaults(verbose=False)

    for extra in _extra_commands():
        extra(commands, add)
    return parser


def _extra_commands() -> List[Callable]:
    """Return the registration hooks of commands that live in other modules."""
    hooks: List[Callable] = []
    for module_name in ("pynano.interop_cli", "pynano.bench.cli"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ImportError:
            continue
        hooks.append(module.register)
    return hooks


def main(argv: Optional[List[str]] = None) -> int:
    """Run the pynano command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("pynano: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError) as error:
        print(f"pynano {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
