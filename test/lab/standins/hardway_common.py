"""Shared code of the hard-way stand-ins (kube-apiserver, kube-controller-manager, kube-scheduler as
single-file executables; TEST DOUBLES for lab hosts, see test/lab/README.md): the version baked in
at build time, pflag-style command lines, klog output and the component-base failure texts."""
from __future__ import annotations

import os
import sys

import standin_common as common

def version() -> str:
    """/etc/standin/version (or STANDIN_KUBE_VERSION) wins, as for the other stand-ins; else the version baked in."""
    return common.kube_version()


def at_least(major: int, minor: int) -> bool:
    got = common.version_tuple(version())
    return (got[0], got[1]) >= (major, minor)


class FlagError(Exception):
    """A command-line error cobra reports before running: usage, then `Error: <message>`, exit 1."""


def parse_flags(argv: list[str], value_flags: set[str], bool_flags: set[str]) -> tuple[dict, list[str]]:
    """pflag's long flags: --name=value, --name value, --bool, --bool=false. Returns (flags, positionals)."""
    flags: dict = {}
    positionals: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == '--':
            positionals += argv[i + 1:]
            break
        if arg.startswith('--') and len(arg) > 2:
            name, eq, value = arg[2:].partition('=')
            if name in bool_flags:
                if eq and value.lower() not in ('true', 'false', '1', '0', 't', 'f'):
                    raise FlagError(f'invalid argument "{value}" for "--{name}" flag: strconv.ParseBool: parsing "{value}": invalid syntax')
                flags[name] = (value.lower() in ('true', '1', 't')) if eq else True
            elif name in value_flags:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise FlagError(f'flag needs an argument: --{name}')
                    value = argv[i]
                # systemd unquotes --runtime-config='api/all=true'; a literal pair of quotes is stripped too.
                if len(value) >= 2 and value[0] == value[-1] and value[0] in '\'"':
                    value = value[1:-1]
                flags[name] = value
            else:
                raise FlagError(f'unknown flag: --{name}')
        elif arg.startswith('-') and len(arg) > 1:
            raise FlagError(f'unknown shorthand flag: {arg[1]!r} in {arg}')
        else:
            positionals.append(arg)
        i += 1
    return flags, positionals


def fail_usage(command: str, error: FlagError) -> None:
    """component-base's cli.Run for a flag error: the usage, then `Error: …` (stderr), exit 1."""
    sys.stderr.write(f'Usage:\n  {command} [flags]\n\nFlags:\n  (the stand-in does not list them; see the real {command} --help)\n\n')
    sys.stderr.write(f'Error: {error}\n')
    sys.exit(1)


def command_failed(message: str) -> None:
    """component-base's cli.Run once logging is set up: `E… run.go:72] "command failed" err="…"`, exit 1."""
    common.klog('E', 'run.go:72', f'"command failed" err="{go_quote(message)}"')
    sys.exit(1)


def go_quote(text: str) -> str:
    return text.replace('\\', '\\\\').replace('"', '\\"')


def no_such_file(path: str) -> str:
    return f'open {path}: no such file or directory'


def require_readable(path: str, what: str) -> bytes:
    """The file's bytes, or the process ends with the klog error the real binary prints for it."""
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except FileNotFoundError:
        command_failed(f'{what}: {no_such_file(path)}')
    except PermissionError:
        command_failed(f'{what}: open {path}: permission denied')
    raise AssertionError('unreachable')


def print_version_and_exit(argv: list[str]) -> None:
    if '--version' in argv or '--version=true' in argv:
        print(f'Kubernetes {version()}')
        sys.exit(0)


def log_flags(flags: dict) -> None:
    """What the real components log at --v≥1: one `FLAG: --name="value"` line per flag."""
    if int(str(flags.get('v', '0')) or 0) >= 1:
        for name in sorted(flags):
            common.klog('I', 'flags.go:64', f'FLAG: --{name}="{go_quote(str(flags[name]).lower() if isinstance(flags[name], bool) else str(flags[name]))}"')


def self_signed(common_name: str, dns: list[str], ips: list[str]):
    """An in-memory self-signed serving certificate, as the components make when given no --tls-cert-file."""
    key, ca = common.make_ca(f'{common_name}-ca@standin', days=365)
    cert = common.sign_cert(key, ca, key.public_key(), f'{common_name}@standin', dns=dns, ips=ips, server=True)
    return common.key_pem(key), common.cert_pem(cert)


def write_temp_pair(cert_pem: bytes, key_pem: bytes) -> tuple[str, str]:
    import tempfile
    directory = tempfile.mkdtemp(prefix='standin-serving-')
    cert_path, key_path = os.path.join(directory, 'tls.crt'), os.path.join(directory, 'tls.key')
    common.write_file(cert_path, cert_pem, 0o644)
    common.write_file(key_path, key_pem, 0o600)
    return cert_path, key_path
