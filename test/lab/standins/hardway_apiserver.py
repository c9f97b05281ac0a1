"""kube-apiserver stand-in for the hard way (a TEST DOUBLE for lab hosts; see test/lab/README.md).

Runs as the seed's systemd unit does: `kube-apiserver --advertise-address=… --etcd-servers=… …`.
Rejects an unknown flag as cobra does (usage, `Error: unknown flag: --x`, exit 1), checks the
flags and files the real one needs at start (klog `"command failed" err="…"`, exit 1), then keeps
the cluster state in the REAL etcd cluster over TLS (standin_servers.EtcdStore) and serves HTTPS on
--bind-address:--secure-port with the ApiServerApp the kubeadm stand-ins use.
"""
from __future__ import annotations

import ipaddress
import os
import signal
import ssl
import sys
import time

import hardway_common as hw
import standin_common as common
import standin_servers as servers

VALUE_FLAGS = {
    'admission-control-config-file', 'advertise-address', 'api-audiences', 'apiserver-count', 'audit-log-format',
    'audit-log-maxage', 'audit-log-maxbackup', 'audit-log-maxsize', 'audit-log-mode', 'audit-log-path', 'audit-policy-file',
    'audit-webhook-config-file', 'authentication-config', 'authorization-config', 'authorization-mode', 'bind-address',
    'cert-dir', 'client-ca-file', 'cloud-provider', 'default-not-ready-toleration-seconds',
    'default-unreachable-toleration-seconds', 'disable-admission-plugins', 'egress-selector-config-file',
    'enable-admission-plugins', 'encryption-provider-config', 'endpoint-reconciler-type', 'etcd-cafile', 'etcd-certfile',
    'etcd-compaction-interval', 'etcd-keyfile', 'etcd-prefix', 'etcd-servers', 'etcd-servers-overrides', 'event-ttl',
    'external-hostname', 'feature-gates', 'kubelet-certificate-authority', 'kubelet-client-certificate', 'kubelet-client-key',
    'kubelet-preferred-address-types', 'kubelet-timeout', 'log-flush-frequency', 'logging-format', 'max-mutating-requests-inflight',
    'max-requests-inflight', 'min-request-timeout', 'oidc-ca-file', 'oidc-client-id', 'oidc-issuer-url', 'oidc-username-claim',
    'proxy-client-cert-file', 'proxy-client-key-file', 'request-timeout', 'requestheader-allowed-names',
    'requestheader-client-ca-file', 'requestheader-extra-headers-prefix', 'requestheader-group-headers',
    'requestheader-username-headers', 'runtime-config', 'secure-port', 'service-account-issuer', 'service-account-jwks-uri',
    'service-account-key-file', 'service-account-max-token-expiration', 'service-account-signing-key-file',
    'service-cluster-ip-range', 'service-node-port-range', 'shutdown-delay-duration', 'storage-backend', 'storage-media-type',
    'tls-cert-file', 'tls-cipher-suites', 'tls-min-version', 'tls-private-key-file', 'tls-sni-cert-key', 'token-auth-file', 'v',
    'vmodule',
}
BOOL_FLAGS = {'allow-privileged', 'anonymous-auth', 'enable-aggregator-routing', 'enable-bootstrap-token-auth',
              'enable-garbage-collector', 'enable-priority-and-fairness', 'profiling', 'help', 'version',
              'service-account-lookup', 'watch-cache'}
DEPRECATED = {'apiserver-count': 'apiserver-count is deprecated and will be removed in a future version.'}


def flag_sets():
    """The flags this version knows: removed ones are unknown flags, as in the real binary."""
    values, bools = set(VALUE_FLAGS), set(BOOL_FLAGS)
    if not hw.at_least(1, 22):
        bools.add('kubelet-https')  # removed in v1.22 (kubernetes/kubernetes#101178)
    if not hw.at_least(1, 24):
        values.update({'insecure-port', 'port', 'insecure-bind-address', 'address'})
    return values, bools


def validate(flags: dict) -> list[str]:
    """The option validation errors the real one reports together (run.go "command failed")."""
    errors = []
    if hw.at_least(1, 20) and not flags.get('service-account-issuer'):
        errors.append('service-account-issuer is a required flag')
    if hw.at_least(1, 20) and (not flags.get('service-account-signing-key-file') or not flags.get('service-account-issuer')):
        errors.append('--service-account-signing-key-file and --service-account-issuer are required flags')
    if not flags.get('etcd-servers'):
        errors.append('--etcd-servers must be specified')
    for key in ('apiserver-count', 'secure-port'):
        if key in flags and not str(flags[key]).isdigit():
            errors.append(f'invalid argument "{flags[key]}" for "--{key}" flag')
    if flags.get('service-cluster-ip-range'):
        try:
            ipaddress.ip_network(flags['service-cluster-ip-range'])
        except ValueError:
            errors.append(f'service-cluster-ip-range[0] is not a valid cidr')
    return errors


def encryption_transformer(path: str):
    """--encryption-provider-config: Secrets written as k8s:enc:aescbc:v1:<key name>:<iv><ciphertext>,
    as the real aescbc provider stores them (identity and other providers: stored as they are)."""
    import base64
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    text = hw.require_readable(path, f'error while parsing file: error reading encryption provider configuration file "{path}"')
    try:
        config = common.yaml.safe_load(text) or {}
    except common.yaml.YAMLError as error:
        hw.command_failed(f'error while parsing file: error decoding encryption provider configuration file "{path}": {error}')
    if config.get('kind') != 'EncryptionConfiguration' and config.get('kind') != 'EncryptionConfig':
        hw.command_failed(f'error while parsing file: error decoding encryption provider configuration file "{path}": '
                          f'got unexpected kind {config.get("kind")!r}')
    aescbc = None
    for resource in config.get('resources') or []:
        if 'secrets' not in (resource.get('resources') or []):
            continue
        first = (resource.get('providers') or [{}])[0]
        if 'aescbc' in first:
            keys = first['aescbc'].get('keys') or []
            if not keys:
                hw.command_failed(f'error while parsing file: resources[0].providers[0].aescbc.keys: Required value: '
                                  'at least one key must be specified')
            aescbc = [(k['name'], base64.b64decode(k['secret'])) for k in keys]
            for name, key in aescbc:
                if len(key) not in (16, 24, 32):
                    hw.command_failed(f'error while parsing file: resources[0].providers[0].aescbc.keys[0].secret: Invalid value: '
                                      f'"REDACTED": secret is not of the expected length, got {len(key)}, expected one of [16 24 32]')
    if aescbc is None:
        return None

    def encrypt(key: str, value: bytes) -> bytes:
        if not key.split('/')[2:3] == ['secrets']:
            return value
        name, secret = aescbc[0]
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
        return f'k8s:enc:aescbc:v1:{name}:'.encode() + iv + encryptor.update(padder.update(value) + padder.finalize()) + encryptor.finalize()

    def decrypt(key: str, value: bytes) -> bytes:
        if not value.startswith(b'k8s:enc:aescbc:v1:'):
            return value
        rest = value[len(b'k8s:enc:aescbc:v1:'):]
        name, _, data = rest.partition(b':')
        secret = dict(aescbc).get(name.decode())
        if secret is None:
            return b''
        decryptor = Cipher(algorithms.AES(secret), modes.CBC(data[:16])).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(decryptor.update(data[16:]) + decryptor.finalize()) + unpadder.finalize()

    return encrypt, decrypt


def main():
    argv = sys.argv[1:]
    hw.print_version_and_exit(argv)
    values, bools = flag_sets()
    try:
        flags, positionals = hw.parse_flags(argv, values, bools)
    except hw.FlagError as error:
        hw.fail_usage('kube-apiserver', error)
    if any(positionals):
        hw.fail_usage('kube-apiserver', hw.FlagError(f'"kube-apiserver" does not take any arguments, got {positionals}'))
    for name, message in DEPRECATED.items():
        if name in flags:
            sys.stderr.write(f'Flag --{name} has been deprecated, {message}\n')
    hw.log_flags(flags)
    errors = validate(flags)
    if errors:
        hw.command_failed('[' + ', '.join(errors) + ']')
    # Files, in the order the real one reads them at start.
    cert = hw.require_readable(flags.get('tls-cert-file', ''), 'unable to load server certificate') if flags.get('tls-cert-file') else None
    if cert is None:
        hw.command_failed('the stand-in needs --tls-cert-file and --tls-private-key-file (it does not self-sign)')
    hw.require_readable(flags.get('tls-private-key-file', ''), 'unable to load server certificate')
    if not flags.get('client-ca-file'):
        hw.command_failed('the stand-in needs --client-ca-file (client certificates are its only authentication)')
    hw.require_readable(flags['client-ca-file'], 'unable to load client CA provider')
    for key in ('service-account-key-file', 'service-account-signing-key-file', 'kubelet-certificate-authority',
                'kubelet-client-certificate', 'kubelet-client-key', 'audit-policy-file'):
        if flags.get(key):
            hw.require_readable(flags[key], f'failed to read --{key}')
    etcd_files = [hw.require_readable(flags[k], f'failed to read --{k}') if flags.get(k) else None
                  for k in ('etcd-cafile', 'etcd-certfile', 'etcd-keyfile')]
    transformer = encryption_transformer(flags['encryption-provider-config']) if flags.get('encryption-provider-config') else None
    if flags.get('audit-log-path'):
        try:
            os.makedirs(os.path.dirname(flags['audit-log-path']) or '/', exist_ok=True)
            open(flags['audit-log-path'], 'a').close()
        except OSError as error:
            hw.command_failed(f'failed to open audit log: {error}')

    etcd_servers = [s for s in flags['etcd-servers'].split(',') if s]
    store = servers.EtcdStore(etcd_servers, etcd_files[0], etcd_files[1], etcd_files[2],
                              prefix=flags.get('etcd-prefix', '/registry'), transformer=transformer)
    app = servers.ApiServerApp(flags, store=store, version=hw.version())
    context = servers.server_context(flags['tls-cert-file'], flags['tls-private-key-file'], flags['client-ca-file'], require=False)
    port = int(flags.get('secure-port', '6443'))
    bind = flags.get('bind-address', '0.0.0.0')
    try:
        servers.serve(bind, port, context, app)
    except OSError as error:
        hw.command_failed(f'failed to create listener: failed to listen on {bind}:{port}: listen tcp {bind}:{port}: bind: {error.strerror.lower() if error.strerror else error}')
    common.klog('I', 'secure_serving.go:213', f'Serving securely on {bind}:{port}')
    # The etcd connection is checked after start, as the real one does (healthz reports it).
    try:
        store.health()
    except OSError as error:
        common.klog('W', 'logging.go:55', f'[core] grpc: addrConn.createTransport failed to connect: {error}')
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == '__main__':
    main()
