"""`kubeadm certs check-expiration` and `kubeadm certs renew` of the kubeadm stand-in (a lab test double).

As kubeadm 1.34 (cmd/kubeadm/app/cmd/certs.go and phases/certs/renewal):
- check-expiration reads the real certificate files of --cert-dir (/etc/kubernetes/pki) and the client
  certificates embedded in admin.conf, super-admin.conf, controller-manager.conf and scheduler.conf,
  and prints kubeadm's two tables (text/tabwriter, minwidth 10, padding 3): the certificates, sorted by
  name, with EXPIRES (`Jan 02, 2006 15:04 MST`), RESIDUAL TIME (ShortHumanDuration, `<invalid>` once
  expired), the CA and EXTERNALLY MANAGED (`%-8v`, so `no` is followed by 6 blanks), then the CAs.
  A missing file is a `!MISSING! <name>` row.
- renew <name>|all re-issues each certificate with its own subject, SANs and usages, a new key, signed
  by its CA (which stays), NotBefore backdated 5 minutes, NotAfter one year from now; a kubeconfig's
  embedded certificate and key are replaced in place. It prints `<long name> renewed` per certificate,
  and for `all` kubeadm's reminder that the control-plane components must be restarted: running
  components keep the certificates they loaded (the kube-apiserver stand-in serves the old one until
  the kubelet restarts its static Pod).

"Now" is the stand-ins' clock (standin_common.now(): the test-only /etc/standin/clock-offset moves it).
A renewed certificate's NotBefore never lies ahead of the real clock, which TLS peers check it against.
Not modelled: --config files (accepted, not read), -o/--output, certificateValidityPeriod, external CAs
beyond a missing CA key (`EXTERNALLY MANAGED yes`, `Detected external ...`), external etcd.
"""
from __future__ import annotations

import base64
import datetime as _dt
import os

import standin_common as common
from standin_common import PhaseError

# kubeadm's renewal handlers (phases/certs/renewal/manager.go): name, where it lives, CA, long name.
CERTIFICATES = [
    ('admin.conf', 'kubeconfig', 'ca', 'certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself'),
    ('apiserver', 'apiserver', 'ca', 'certificate for serving the Kubernetes API'),
    ('apiserver-etcd-client', 'apiserver-etcd-client', 'etcd-ca', 'certificate the apiserver uses to access etcd'),
    ('apiserver-kubelet-client', 'apiserver-kubelet-client', 'ca', 'certificate for the API server to connect to kubelet'),
    ('controller-manager.conf', 'kubeconfig', 'ca', 'certificate embedded in the kubeconfig file for the controller manager to use'),
    ('etcd-healthcheck-client', 'etcd/healthcheck-client', 'etcd-ca', 'certificate for liveness probes to healthcheck etcd'),
    ('etcd-peer', 'etcd/peer', 'etcd-ca', 'certificate for etcd nodes to communicate with each other'),
    ('etcd-server', 'etcd/server', 'etcd-ca', 'certificate for serving etcd'),
    ('front-proxy-client', 'front-proxy-client', 'front-proxy-ca', 'certificate for the front proxy client'),
    ('scheduler.conf', 'kubeconfig', 'ca', 'certificate embedded in the kubeconfig file for the scheduler manager to use'),
    ('super-admin.conf', 'kubeconfig', 'ca', 'certificate embedded in the kubeconfig file for the super-admin'),
]
CERTIFICATE_AUTHORITIES = [('ca', 'ca'), ('etcd-ca', 'etcd/ca'), ('front-proxy-ca', 'front-proxy-ca')]
CA_BASE = dict(CERTIFICATE_AUTHORITIES)
FLAGS = {'cert-dir': 'str', 'config': 'str', 'kubeconfig': 'str', 'v': 'str', 'help': 'bool'}
VALIDITY = _dt.timedelta(days=365)
RESTART_REMINDER = ('Done renewing certificates. You must restart the kube-apiserver, kube-controller-manager, '
                    'kube-scheduler and etcd, so that they can use the new certificates.')


class Paths:
    def __init__(self, values: dict):
        self.pki = values.get('cert-dir') or common.PKI_DIR
        self.kubeconfig_dir = common.KUBERNETES_DIR

    def cert(self, base: str) -> str:
        return os.path.join(self.pki, f'{base}.crt')

    def key(self, base: str) -> str:
        return os.path.join(self.pki, f'{base}.key')

    def kubeconfig(self, name: str) -> str:
        return os.path.join(self.kubeconfig_dir, name)


def read_certificate(paths: Paths, name: str, where: str):
    """The certificate of a handler, or None when its file (or a kubeconfig's embedded data) is missing."""
    if where == 'kubeconfig':
        try:
            with open(paths.kubeconfig(name)) as handle:
                config = common.yaml.safe_load(handle)
            data = config['users'][0]['user']['client-certificate-data']
        except (OSError, KeyError, IndexError, TypeError):
            return None
        return common.load_cert(base64.b64decode(data))
    try:
        with open(paths.cert(where), 'rb') as handle:
            return common.load_cert(handle.read())
    except OSError:
        return None


def externally_managed(paths: Paths, ca_name: str) -> bool:
    """kubeadm: a CA whose key is absent (its certificate present) is external, and so are the certificates it signed."""
    base = CA_BASE[ca_name]
    return os.path.exists(paths.cert(base)) and not os.path.exists(paths.key(base))


def expires(cert) -> float:
    # Debian 12's python3-cryptography (38) has only the naive-UTC not_valid_after; later ones deprecate it.
    after = getattr(cert, 'not_valid_after_utc', None) or cert.not_valid_after.replace(tzinfo=_dt.timezone.utc)
    return after.timestamp()


def expiry_cells(cert) -> list[str]:
    at = expires(cert)
    stamp = _dt.datetime.fromtimestamp(at, _dt.timezone.utc).strftime('%b %d, %Y %H:%M UTC')
    return [stamp, common.short_human_duration(at - common.now())]


def yes_no(value: bool) -> str:
    return f'{"yes" if value else "no":<8}'


def read_configuration(kubeadm, values: dict, prefix: str) -> None:
    """getInternalCfg: the kubeadm-config ConfigMap through --kubeconfig; kubeadm's fallback line when the
    cluster does not answer; nothing when there is no usable kubeconfig (a worker): defaults, silently."""
    if values.get('config'):
        return
    try:
        client = common.client_from_kubeconfig(values.get('kubeconfig') or kubeadm.ADMIN_CONF, timeout=5)
    except (common.KubeconfigError, OSError, KeyError, ValueError):
        return
    try:
        client.op('get_kubeadm_config')
    except (common.ApiError, common.KubeconfigError, OSError, KeyError):
        kubeadm.out(f'[{prefix}] Error reading configuration from the Cluster. Falling back to default configuration')
        kubeadm.out()
        return
    kubeadm.out(f'[{prefix}] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...')
    kubeadm.out(f"[{prefix}] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.")
    kubeadm.out()


def check_expiration(kubeadm, argv: list[str]) -> None:
    values, positionals, _ = kubeadm.parse_flags(argv, FLAGS)
    if positionals:
        raise PhaseError(f'unknown command "{positionals[0]}" for "kubeadm certs check-expiration"')
    paths = Paths(values)
    read_configuration(kubeadm, values, 'check-expiration')
    rows = [['CERTIFICATE', 'EXPIRES', 'RESIDUAL TIME', 'CERTIFICATE AUTHORITY', 'EXTERNALLY MANAGED']]
    for name, where, ca_name, _ in CERTIFICATES:
        cert = read_certificate(paths, name, where)
        if cert is None:
            rows.append([f'!MISSING! {name}', '', '', '', ''])
        else:
            rows.append([name, *expiry_cells(cert), ca_name, yes_no(externally_managed(paths, ca_name))])
    authorities = [['CERTIFICATE AUTHORITY', 'EXPIRES', 'RESIDUAL TIME', 'EXTERNALLY MANAGED']]
    for name, base in CERTIFICATE_AUTHORITIES:
        cert = read_certificate(paths, name, base)
        if cert is None:
            authorities.append([f'!MISSING! {name}', '', '', ''])
        else:
            authorities.append([name, *expiry_cells(cert), yes_no(externally_managed(paths, name))])
    # Two tabwriter blocks: the blank line between the tables ends the first one's columns.
    print(common.tabwrite(rows, minwidth=10, padding=3), end='')
    print()
    print(common.tabwrite(authorities, minwidth=10, padding=3), end='')


def load_ca(paths: Paths, ca_name: str):
    base = CA_BASE[ca_name]
    with open(paths.key(base), 'rb') as key, open(paths.cert(base), 'rb') as cert:
        return common.load_key(key.read()), common.load_cert(cert.read())


def reissue(cert, ca_key, ca_cert):
    """certConfigFromCert + NewCertAndKey: the same subject, SANs and usages, a new key, a year from now."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    start, not_before = common.validity_start()
    key = common.new_key()
    builder = (x509.CertificateBuilder()
               .subject_name(cert.subject).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(start + VALIDITY))
    for extension in cert.extensions:
        if isinstance(extension.value, x509.AuthorityKeyIdentifier):
            continue
        builder = builder.add_extension(extension.value, critical=extension.critical)
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def renew_one(kubeadm, paths: Paths, handler: tuple) -> None:
    name, where, ca_name, long_name = handler
    cert = read_certificate(paths, name, where)
    if cert is None:
        kubeadm.out(f'MISSING! {long_name}')
        return
    if externally_managed(paths, ca_name):
        kubeadm.out(f'Detected external {CA_BASE[ca_name]}, {long_name} can\'t be renewed')
        return
    ca_key, ca_cert = load_ca(paths, ca_name)
    key, renewed = reissue(cert, ca_key, ca_cert)
    if where == 'kubeconfig':
        path = paths.kubeconfig(name)
        with open(path) as handle:
            config = common.yaml.safe_load(handle)
        config['users'][0]['user']['client-certificate-data'] = base64.b64encode(common.cert_pem(renewed)).decode()
        config['users'][0]['user']['client-key-data'] = base64.b64encode(common.key_pem(key)).decode()
        common.write_file(path, common.dump_yaml(config), 0o600)
    else:
        common.write_file(paths.key(where), common.key_pem(key), 0o600)
        common.write_file(paths.cert(where), common.cert_pem(renewed), 0o644)
    kubeadm.out(f'{long_name} renewed')


def renew(kubeadm, argv: list[str]) -> None:
    values, positionals, _ = kubeadm.parse_flags(argv, FLAGS)
    names = [handler[0] for handler in CERTIFICATES]
    if len(positionals) != 1 or positionals[0] not in names + ['all']:
        what = positionals[0] if positionals else ''
        raise PhaseError(f'unknown command "{what}" for "kubeadm certs renew"' if what else
                         'missing subcommand; "renew" is not meant to be run on its own')
    paths = Paths(values)
    read_configuration(kubeadm, values, 'renew')
    if positionals[0] != 'all':
        renew_one(kubeadm, paths, next(h for h in CERTIFICATES if h[0] == positionals[0]))
        return
    for handler in CERTIFICATES:
        renew_one(kubeadm, paths, handler)
    kubeadm.out()
    kubeadm.out(RESTART_REMINDER)


def main(kubeadm, argv: list[str]) -> None:
    commands = {'check-expiration': check_expiration, 'renew': renew}
    if not argv or argv[0] not in commands:
        if argv and not argv[0].startswith('-'):
            raise PhaseError(f'unknown command "{argv[0]}" for "kubeadm certs"')
        kubeadm.out('Usage:\n  kubeadm certs [command]\n\nAvailable Commands:\n  check-expiration\n  renew')
        return
    commands[argv[0]](kubeadm, argv[1:])
