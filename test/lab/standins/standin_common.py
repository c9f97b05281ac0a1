"""Shared code of Capstan's lab stand-ins for kubeadm, kubelet, kubectl, etcd and kube-apiserver.

The stand-ins are TEST DOUBLES for lab hosts, which cannot download the real Kubernetes
binaries. They reproduce the real tools' command lines, file layout, output and error texts on
the paths Capstan uses; they run no containers. Needs python3, python3-yaml and
python3-cryptography (installed by test/lab/install.ts).

Test-only knobs (files win over the environment; none exists on a real host):
  /etc/standin/version            or STANDIN_KUBE_VERSION       the Kubernetes version (default: the installing package's
                                                                version, /usr/lib/capstan-standin/versions/<program>, else v1.34.1)
  /etc/standin/clock-offset       or STANDIN_CLOCK_OFFSET       seconds or a Go duration ("2h1m") added to "now"
  /etc/standin/cgroup-controllers or STANDIN_CGROUP_CONTROLLERS a file listing the cgroup controllers the
                                                                SystemVerification check sees (replaces /proc/cgroups)
  /etc/standin/discovery-timeout  or STANDIN_DISCOVERY_TIMEOUT  default for kubeadm join's discovery timeout (real: 5m0s)
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import yaml

STANDIN_DIR = '/etc/standin'
KUBERNETES_DIR = '/etc/kubernetes'
PKI_DIR = '/etc/kubernetes/pki'
MANIFESTS_DIR = '/etc/kubernetes/manifests'
KUBELET_DIR = '/var/lib/kubelet'
CNI_DIR = '/etc/cni/net.d'
DEFAULT_CRI_SOCKET = 'unix:///var/run/containerd/containerd.sock'
KUSTOMIZE_VERSION = 'v5.7.1'


def _knob(name: str, env: str) -> str | None:
    path = os.path.join(STANDIN_DIR, name)
    try:
        with open(path) as handle:
            value = handle.read().strip()
            if value:
                return value
    except OSError:
        pass
    value = os.environ.get(env, '').strip()
    return value or None


def _built_version() -> str | None:
    """The version baked into a single-file stand-in by buildHardWayBinaries (test/lab/hardway.ts)."""
    try:
        import standin_build  # type: ignore
        return standin_build.VERSION
    except ImportError:
        return None


PACKAGE_VERSIONS_DIR = '/usr/lib/capstan-standin/versions'


def _package_version() -> str | None:
    """The version of the lab package (kubeadm, kubelet, kubectl) that installed this program: each
    package carries its own, so a host can hold kubeadm 1.35 beside kubelet 1.34 (runner/lab/kubernetes-repo.ts)."""
    return read_text(os.path.join(PACKAGE_VERSIONS_DIR, os.path.basename(sys.argv[0]))) or None


_process_version: str | None = None


def kube_version() -> str:
    """The version this program is, read once: like a real binary's, it stays the same for the life of
    the process (a running kubelet keeps reporting its version after a package upgrade, until restarted)."""
    global _process_version
    if _process_version is None:
        value = (_knob('version', 'STANDIN_KUBE_VERSION') or (_package_version() or '').strip() or _built_version()
                 or 'v1.34.1')
        _process_version = value if value.startswith('v') else 'v' + value
    return _process_version


def version_tuple(version: str | None = None) -> tuple[int, int, int]:
    match = re.match(r'v?(\d+)\.(\d+)\.(\d+)', version or kube_version())
    if not match:
        return (0, 0, 0)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3)))


# ---------------------------------------------------------------- durations and time

_UNITS = {'ns': 1e-9, 'us': 1e-6, 'µs': 1e-6, 'ms': 1e-3, 's': 1, 'm': 60, 'h': 3600}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration (seconds); a bare number is taken as seconds."""
    text = str(text).strip()
    if re.fullmatch(r'-?\d+(\.\d+)?', text):
        return float(text)
    sign = -1 if text.startswith('-') else 1
    text = text.lstrip('+-')
    if text == '0':
        return 0.0
    parts = re.findall(r'(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)', text)
    if not parts or ''.join(a + b for a, b in parts) != text:
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * sum(float(a) * _UNITS[b] for a, b in parts)


def format_duration(seconds: float) -> str:
    """Go's time.Duration.String() for whole and fractional seconds (24h0m0s, 4m0s, 501.483944ms)."""
    if seconds == 0:
        return '0s'
    if abs(seconds) < 1:
        return f'{seconds * 1000:.6f}'.rstrip('0').rstrip('.') + 'ms'
    negative = seconds < 0
    seconds = abs(seconds)
    hours = int(seconds // 3600)
    minutes = int((seconds % 3600) // 60)
    rest = seconds - hours * 3600 - minutes * 60
    secs = (f'{rest:.9f}'.rstrip('0').rstrip('.')) if rest != int(rest) else str(int(rest))
    if hours:
        out = f'{hours}h{minutes}m{secs}s'
    elif minutes:
        out = f'{minutes}m{secs}s'
    else:
        out = f'{secs}s'
    return ('-' if negative else '') + out


def clock_offset() -> float:
    value = _knob('clock-offset', 'STANDIN_CLOCK_OFFSET')
    if not value:
        return 0.0
    try:
        return parse_duration(value)
    except ValueError:
        return 0.0


def now() -> float:
    """Seconds since the epoch, moved by the test-only clock offset."""
    return time.time() + clock_offset()


def rfc3339(ts: float) -> str:
    return _dt.datetime.fromtimestamp(int(ts), _dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_rfc3339(text: str) -> float:
    return _dt.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=_dt.timezone.utc).timestamp()


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration (kubectl's AGE column)."""
    s = int(seconds)
    if s < -1:
        return '<invalid>'
    if s < 0:
        return '0s'
    if s < 120:
        return f'{s}s'
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f'{minutes}m' if rest == 0 else f'{minutes}m{rest}s'
    if minutes < 180:
        return f'{minutes}m'
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f'{hours}h' if rest == 0 else f'{hours}h{rest}m'
    if hours < 48:
        return f'{hours}h'
    if hours < 24 * 8:
        rest = hours % 24
        return f'{hours // 24}d' if rest == 0 else f'{hours // 24}d{rest}h'
    if hours < 24 * 365 * 2:
        return f'{hours // 24}d'
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f'{hours // 24 // 365}y' if rest == 0 else f'{hours // 24 // 365}y{rest}d'
    return f'{hours // 24 // 365}y'


def short_human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.ShortHumanDuration (kubeadm token list's TTL)."""
    s = int(seconds)
    if s < -1:
        return '<invalid>'
    if s < 0:
        return '0s'
    if s < 60:
        return f'{s}s'
    if s < 3600:
        return f'{s // 60}m'
    if s < 86400:
        return f'{s // 3600}h'
    if s < 86400 * 365:
        return f'{s // 86400}d'
    return f'{s // (86400 * 365)}y'


# ---------------------------------------------------------------- output helpers

def klog(severity: str, where: str, message: str) -> None:
    """A klog line on stderr: `W1121 10:00:00.123456    1234 checks.go:1049] message`."""
    stamp = _dt.datetime.now()
    sys.stderr.write(f'{severity}{stamp.strftime("%m%d %H:%M:%S.%f")} {os.getpid():>7} {where}] {message}\n')
    sys.stderr.flush()


def tabwrite(rows: list[list[str]], minwidth: int = 6, padding: int = 3) -> str:
    """Go's text/tabwriter as kubectl uses it (every cell but the last padded to its column)."""
    if not rows:
        return ''
    columns = max(len(row) for row in rows)
    widths = [0] * columns
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], len(cell) + padding, minwidth)
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[index]) for index, cell in enumerate(row[:-1])]
        lines.append(''.join(cells) + (row[-1] if row else ''))
    return '\n'.join(lines) + '\n'


def write_file(path: str, data: str | bytes, mode: int = 0o644) -> None:
    """Writes atomically (temp file in the same directory, then rename)."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or '.', prefix='.standin-')
    try:
        os.write(fd, raw)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_text(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def dump_yaml(obj) -> str:
    return yaml.safe_dump(obj, default_flow_style=False, sort_keys=True)


def load_yaml_documents(text: str) -> list:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


# ---------------------------------------------------------------- failure in kubeadm's style

class PhaseError(Exception):
    """An error that kubeadm prints as `error: error execution phase <phase>: <message>`."""

    def __init__(self, message: str, phase: str | None = None):
        super().__init__(message)
        self.phase = phase


def exit_with_error(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f'error: {message}\nTo see the stack trace of this error execute with --v=5 or higher\n')
    sys.exit(1)


# ---------------------------------------------------------------- host facts

def hostname() -> str:
    return socket.gethostname().lower()


def default_route_ip() -> str | None:
    """The IPv4 address of the interface holding the default route (kubeadm's auto-detection)."""
    try:
        out = subprocess.run(['ip', '-4', 'route', 'get', '1.1.1.1'], capture_output=True, text=True, timeout=5).stdout
        match = re.search(r'\bsrc (\d+\.\d+\.\d+\.\d+)', out)
        if match:
            return match.group(1)
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def os_image() -> str:
    text = read_text('/etc/os-release') or ''
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
    return match.group(1) if match else 'Linux'


def containerd_version() -> str:
    try:
        out = subprocess.run(['containerd', '--version'], capture_output=True, text=True, timeout=5).stdout
        match = re.search(r'containerd \S+ v?(\S+)', out)
        if match:
            return 'containerd://' + match.group(1)
    except (OSError, subprocess.SubprocessError):
        pass
    return 'containerd://unknown'


def socket_path(endpoint: str) -> str:
    return endpoint[len('unix://'):] if endpoint.startswith('unix://') else endpoint


def cri_error(endpoint: str = DEFAULT_CRI_SOCKET) -> str | None:
    """None when the CRI runtime answers; otherwise the gRPC error text cri-client would report.

    The socket must accept a connection and containerd must have its CRI plugin ("ctr plugins
    ls" lists io.containerd.grpc.v1 cri as ok), as for the CRI v1 Version call that real
    kubeadm/kubelet make.
    """
    path = socket_path(endpoint)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect(path)
    except FileNotFoundError:
        return (f'validate CRI v1 runtime API for endpoint "{endpoint}": rpc error: code = Unavailable desc = '
                f'connection error: desc = "transport: Error while dialing: dial unix {path}: connect: no such file or directory"')
    except ConnectionRefusedError:
        return (f'validate CRI v1 runtime API for endpoint "{endpoint}": rpc error: code = Unavailable desc = '
                f'connection error: desc = "transport: Error while dialing: dial unix {path}: connect: connection refused"')
    except OSError as error:
        return (f'validate CRI v1 runtime API for endpoint "{endpoint}": rpc error: code = Unavailable desc = '
                f'connection error: desc = "transport: Error while dialing: dial unix {path}: connect: {error.strerror}"')
    finally:
        sock.close()
    try:
        out = subprocess.run(['ctr', '--address', path, 'plugins', 'ls'], capture_output=True, text=True, timeout=10).stdout
        if not re.search(r'io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok', out):
            return (f'validate CRI v1 runtime API for endpoint "{endpoint}": rpc error: code = Unimplemented '
                    'desc = unknown service runtime.v1.RuntimeService')
    except (OSError, subprocess.SubprocessError):
        pass  # no ctr: the socket answering is all we can tell
    return None


def cni_config_present() -> bool:
    try:
        return any(name.endswith(('.conf', '.conflist', '.json')) for name in os.listdir(CNI_DIR))
    except OSError:
        return False


# ---------------------------------------------------------------- certificates (python3-cryptography)

def _crypto():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
    return x509, hashes, serialization, rsa, NameOID, ExtendedKeyUsageOID


def new_key():
    _, _, _, rsa, _, _ = _crypto()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key) -> bytes:
    _, _, serialization, _, _, _ = _crypto()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def public_key_pem(key) -> bytes:
    _, _, serialization, _, _, _ = _crypto()
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_pem(cert) -> bytes:
    _, _, serialization, _, _, _ = _crypto()
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes):
    x509 = _crypto()[0]
    return x509.load_pem_x509_certificate(pem)


def load_key(pem: bytes):
    _, _, serialization, _, _, _ = _crypto()
    return serialization.load_pem_private_key(pem, password=None)


def _name(common_name: str, organizations: list[str] | None = None):
    x509, _, _, _, NameOID, _ = _crypto()
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in (organizations or [])]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def validity_start():
    """kubeadm's start of a certificate's validity: now less 5 minutes (CertificateBackdate). "Now" is the
    stand-ins' clock (the test-only clock offset moves it, and so NotAfter), but NotBefore never lies
    ahead of the real clock, which TLS peers check certificates against. Returns (start, NotBefore)."""
    backdate = _dt.timedelta(minutes=5)
    start = _dt.datetime.fromtimestamp(now(), _dt.timezone.utc) - backdate
    return start, min(start, _dt.datetime.now(_dt.timezone.utc) - backdate)


def make_ca(common_name: str, days: int = 3650):
    x509, hashes, _, _, _, _ = _crypto()
    key = new_key()
    start, not_before = validity_start()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(start + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def sign_cert(ca_key, ca_cert, public_key, common_name: str, organizations=None, dns=(), ips=(),
              server=False, client=False, days: int = 365):
    import ipaddress
    x509, hashes, _, _, _, EKU = _crypto()
    start, not_before = validity_start()
    usages = ([EKU.SERVER_AUTH] if server else []) + ([EKU.CLIENT_AUTH] if client else [])
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name, organizations)).issuer_name(ca_cert.subject)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(start + _dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False))
    sans = [x509.DNSName(name) for name in dns] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def spki_hash(cert) -> str:
    """pubkeypin.Hash: sha256 of the certificate's DER SubjectPublicKeyInfo, as kubeadm prints it."""
    _, _, serialization, _, _, _ = _crypto()
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return 'sha256:' + hashlib.sha256(der).hexdigest()


def cert_subject(cert) -> tuple[str, list[str]]:
    _, _, _, _, NameOID, _ = _crypto()
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (cn[0] if cn else ''), orgs


def encrypt_bytes(data: bytes, key: bytes) -> bytes:
    """kubeadm's cryptoutil.EncryptBytes: AES-GCM, nonce prepended."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, data, None)


def decrypt_bytes(data: bytes, key: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    try:
        return AESGCM(key).decrypt(data[:12], data[12:], None)
    except InvalidTag:
        raise ValueError('cipher: message authentication failed')


# ---------------------------------------------------------------- bootstrap tokens and JWS

TOKEN_RE = re.compile(r'^([a-z0-9]{6})\.([a-z0-9]{16})$')


def random_token() -> str:
    alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'
    pick = lambda n: ''.join(alphabet[b % 36] for b in os.urandom(n))
    return f'{pick(6)}.{pick(16)}'


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def jws_detached(content: str, token_id: str, token_secret: str) -> str:
    """cluster-bootstrap's ComputeDetachedSignature: HS256 JWS with kid, payload removed."""
    header = _b64url(json.dumps({'alg': 'HS256', 'kid': token_id}, separators=(',', ':')).encode())
    payload = _b64url(content.encode())
    signature = hmac.new(token_secret.encode(), f'{header}.{payload}'.encode(), hashlib.sha256).digest()
    return f'{header}..{_b64url(signature)}'


def jws_valid(detached: str, content: str, token_id: str, token_secret: str) -> bool:
    return hmac.compare_digest(detached, jws_detached(content, token_id, token_secret))


# ---------------------------------------------------------------- kubeconfig and the API client

def kubeconfig(server: str, ca_pem: bytes, user: str, cert: bytes | None = None, key: bytes | None = None,
               token: str | None = None, cluster: str = 'kubernetes', cert_file: str | None = None) -> dict:
    creds: dict = {}
    if cert_file:
        creds = {'client-certificate': cert_file, 'client-key': cert_file}
    elif cert is not None and key is not None:
        creds = {'client-certificate-data': base64.b64encode(cert).decode(),
                 'client-key-data': base64.b64encode(key).decode()}
    if token:
        creds['token'] = token
    context = f'{user}@{cluster}'
    return {
        'apiVersion': 'v1',
        'clusters': [{'cluster': {'certificate-authority-data': base64.b64encode(ca_pem).decode(), 'server': server},
                      'name': cluster}],
        'contexts': [{'context': {'cluster': cluster, 'user': user}, 'name': context}],
        'current-context': context,
        'kind': 'Config',
        'preferences': {},
        'users': [{'name': user, 'user': creds}],
    }


def _data_or_file(entry: dict, data_key: str, file_key: str, base: str) -> bytes | None:
    if entry.get(data_key):
        return base64.b64decode(entry[data_key])
    if entry.get(file_key):
        path = entry[file_key] if os.path.isabs(entry[file_key]) else os.path.join(base, entry[file_key])
        with open(path, 'rb') as handle:
            return handle.read()
    return None


class KubeconfigError(Exception):
    pass


def load_kubeconfig(path: str) -> dict:
    """The current context's server, CA, client certificate/key and token from a kubeconfig file."""
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    base = os.path.dirname(path)
    current = config.get('current-context')
    contexts = {c.get('name'): c.get('context', {}) for c in config.get('contexts') or []}
    context = contexts.get(current) if current else None
    if context is None:
        if not config.get('clusters'):
            raise KubeconfigError('empty')
        context = {'cluster': config['clusters'][0].get('name'), 'user': (config.get('users') or [{}])[0].get('name')}
    clusters = {c.get('name'): c.get('cluster', {}) for c in config.get('clusters') or []}
    users = {u.get('name'): u.get('user', {}) for u in config.get('users') or []}
    cluster = clusters.get(context.get('cluster'), {})
    user = users.get(context.get('user'), {})
    return {
        'server': cluster.get('server', ''),
        'ca': _data_or_file(cluster, 'certificate-authority-data', 'certificate-authority', base),
        'insecure': bool(cluster.get('insecure-skip-tls-verify')),
        'cert': _data_or_file(user, 'client-certificate-data', 'client-certificate', base),
        'key': _data_or_file(user, 'client-key-data', 'client-key', base),
        'token': user.get('token'),
    }


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str = ''):
        super().__init__(message)
        self.status = status
        self.reason = reason


class Client:
    """HTTPS client for the stand-in API server (and the etcd stand-in)."""

    def __init__(self, server: str, ca: bytes | None = None, cert: bytes | None = None, key: bytes | None = None,
                 token: str | None = None, insecure: bool = False, timeout: float = 10):
        match = re.match(r'https://([^/:]+|\[[^\]]+\])(?::(\d+))?', server)
        if not match:
            raise ValueError(f'bad server URL {server!r}')
        self.server = server.rstrip('/')
        self.host = match.group(1).strip('[]')
        self.port = int(match.group(2) or 443)
        self.token = token
        self.timeout = timeout
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if insecure or ca is None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.load_verify_locations(cadata=ca.decode())
            context.check_hostname = True
        if cert and key:
            fd, path = tempfile.mkstemp(prefix='.standin-client-')
            try:
                os.write(fd, cert + b'\n' + key)
                os.close(fd)
                context.load_cert_chain(path)
            finally:
                os.unlink(path)
        self.context = context

    def request(self, method: str, path: str, body=None):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=self.timeout)
        headers = {'Accept': 'application/json'}
        if self.token:
            headers['Authorization'] = f'Bearer {self.token}'
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers['Content-Type'] = 'application/json'
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode(errors='replace')
        if response.status >= 400:
            message = parsed.get('message') if isinstance(parsed, dict) else str(parsed)
            reason = parsed.get('reason', '') if isinstance(parsed, dict) else ''
            raise ApiError(response.status, message or response.reason, reason)
        return parsed

    def op(self, _operation: str, **args):
        return self.request('POST', '/standin/v1/op', {'op': _operation, **args})


def client_from_kubeconfig(path: str, timeout: float = 10) -> Client:
    cfg = load_kubeconfig(path)
    return Client(cfg['server'], cfg['ca'], cfg['cert'], cfg['key'], cfg['token'], cfg['insecure'], timeout)


def go_url_error(method: str, url: str, error: Exception) -> str:
    """How Go's net/http reports a failed request, for the common cases."""
    match = re.match(r'https?://([^/]+)', url)
    hostport = match.group(1) if match else url
    if isinstance(error, ConnectionRefusedError):
        return f'{method.capitalize()} "{url}": dial tcp {hostport}: connect: connection refused'
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f'{method.capitalize()} "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    if isinstance(error, socket.gaierror):
        return f'{method.capitalize()} "{url}": dial tcp: lookup {hostport.split(":")[0]}: no such host'
    if isinstance(error, ssl.SSLCertVerificationError):
        return f'{method.capitalize()} "{url}": tls: failed to verify certificate: x509: certificate signed by unknown authority'
    if isinstance(error, OSError) and error.strerror:
        return f'{method.capitalize()} "{url}": dial tcp {hostport}: connect: {error.strerror.lower()}'
    return f'{method.capitalize()} "{url}": {error}'


# ---------------------------------------------------------------- kinds and resources

CLUSTER_SCOPED_KINDS = {
    'Node', 'Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume',
    'StorageClass', 'PriorityClass', 'APIService', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration',
    'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding', 'CSIDriver', 'CSINode', 'IngressClass',
    'RuntimeClass', 'PodSecurityPolicy', 'CertificateSigningRequest', 'VolumeAttachment', 'FlowSchema',
    'PriorityLevelConfiguration',
}


def group_of(api_version: str) -> str:
    return api_version.split('/')[0] if '/' in api_version else ''


def resource_name(kind: str, api_version: str) -> str:
    """kubectl's `<kind>.<group>` spelling in `<resource>/<name> created`."""
    group = group_of(api_version)
    return kind.lower() + (f'.{group}' if group else '')


def pod_template_hash(template) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    alphabet = 'bcdfghjklmnpqrstvwxz2456789'
    return ''.join(alphabet[int(digest[i:i + 2], 16) % len(alphabet)] for i in range(0, 20, 2))


def random_suffix(length: int = 5) -> str:
    alphabet = 'bcdfghjklmnpqrstvwxz2456789'
    return ''.join(alphabet[b % len(alphabet)] for b in os.urandom(length))
