"""kube-controller-manager and kube-scheduler stand-ins for the hard way (TEST DOUBLES for lab hosts;
see test/lab/README.md).

Both take the seed's command lines (the scheduler its KubeSchedulerConfiguration file through
--config), load their kubeconfig and authenticate to the API server with its client certificate,
serve /healthz over HTTPS (a self-signed certificate, as the real ones make without
--tls-cert-file) on 10257 / 10259, and keep trying the API server while it is down, as the real
ones do. With --leader-elect they hold a coordination.k8s.io/v1 Lease in kube-system, so one of
three is the leader. They run no controllers and schedule nothing: the API server stand-in plays
those parts on the kubeadm path.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import uuid

import hardway_common as hw
import standin_common as common

COMMON_VALUE = {'bind-address', 'secure-port', 'kubeconfig', 'master', 'v', 'vmodule', 'feature-gates',
                'authentication-kubeconfig', 'authorization-kubeconfig', 'client-ca-file', 'requestheader-client-ca-file',
                'tls-cert-file', 'tls-private-key-file', 'tls-cipher-suites', 'tls-min-version', 'cert-dir',
                'leader-elect-lease-duration', 'leader-elect-renew-deadline', 'leader-elect-retry-period',
                'leader-elect-resource-name', 'leader-elect-resource-namespace', 'logging-format', 'log-flush-frequency'}
COMMON_BOOL = {'leader-elect', 'profiling', 'help', 'version'}

COMPONENTS = {
    'kube-controller-manager': {
        'port': 10257,
        'values': COMMON_VALUE | {'cluster-cidr', 'cluster-name', 'cluster-signing-cert-file', 'cluster-signing-key-file',
                                  'root-ca-file', 'service-account-private-key-file', 'service-cluster-ip-range', 'controllers',
                                  'node-cidr-mask-size', 'cluster-signing-duration', 'node-monitor-grace-period',
                                  'concurrent-deployment-syncs', 'terminated-pod-gc-threshold', 'cloud-provider'},
        'bools': COMMON_BOOL | {'use-service-account-credentials', 'allocate-node-cidrs', 'configure-cloud-routes'},
    },
    'kube-scheduler': {
        'port': 10259,
        'values': COMMON_VALUE | {'config', 'write-config-to', 'pod-max-in-unschedulable-pods-duration'},
        'bools': COMMON_BOOL,
    },
}

SCHEDULER_GROUP = 'kubescheduler.config.k8s.io'


def scheduler_versions() -> set[str]:
    """The KubeSchedulerConfiguration versions the baked version decodes (removals: v1alpha1 in 1.19,
    v1alpha2 in 1.21, v1beta1 in 1.23, v1beta2 in 1.28, v1beta3 in 1.29; v1 since 1.25)."""
    table = [('v1alpha1', (0, 0), (1, 18)), ('v1alpha2', (1, 18), (1, 20)), ('v1beta1', (1, 19), (1, 22)),
             ('v1beta2', (1, 22), (1, 27)), ('v1beta3', (1, 23), (1, 28)), ('v1', (1, 25), (9, 99))]
    got = common.version_tuple(hw.version())[:2]
    return {f'{SCHEDULER_GROUP}/{name}' for name, first, last in table if first <= got <= last}


def scheduler_kubeconfig(flags: dict) -> str:
    """The kubeconfig from --config's clientConnection.kubeconfig (or --kubeconfig without --config)."""
    path = flags.get('config')
    if not path:
        if flags.get('kubeconfig'):
            return flags['kubeconfig']
        hw.command_failed('invalid configuration: no configuration has been provided, try setting KUBERNETES_MASTER environment variable')
    text = hw.require_readable(path, 'failed to read --config')
    try:
        config = common.yaml.safe_load(text) or {}
    except common.yaml.YAMLError as error:
        hw.command_failed(f'couldn\'t decode as KubeSchedulerConfiguration: {error}')
    api_version, kind = config.get('apiVersion', ''), config.get('kind', '')
    if kind != 'KubeSchedulerConfiguration' or api_version not in scheduler_versions():
        hw.command_failed(f'no kind "{kind}" is registered for version "{api_version}" in scheme '
                          '"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme/scheme.go:30"')
    kubeconfig = (config.get('clientConnection') or {}).get('kubeconfig')
    if not kubeconfig:
        hw.command_failed('invalid configuration: no configuration has been provided, try setting KUBERNETES_MASTER environment variable')
    flags['leader-elect'] = bool((config.get('leaderElection') or {}).get('leaderElect', True))
    return kubeconfig


def load_client(path: str) -> common.Client:
    """Loads the kubeconfig as client-go does; any problem ends the process with its error."""
    if not os.path.exists(path):
        hw.command_failed(f'stat {path}: no such file or directory')
    try:
        cfg = common.load_kubeconfig(path)
    except (OSError, common.KubeconfigError, common.yaml.YAMLError) as error:
        hw.command_failed(f'invalid configuration: {error}')
    if not cfg['server']:
        hw.command_failed('invalid configuration: no configuration has been provided, try setting KUBERNETES_MASTER environment variable')
    if not cfg['cert'] or not cfg['key']:
        hw.command_failed(f'invalid configuration: [unable to read client-cert for {path}, unable to read client-key for {path}]')
    try:
        common.load_cert(cfg['cert'])
        common.load_key(cfg['key'])
    except ValueError:
        hw.command_failed('tls: failed to find any PEM data in certificate input')
    return common.Client(cfg['server'], cfg['ca'], cfg['cert'], cfg['key'], None, cfg['insecure'], timeout=5)


class Health:
    def handle(self, req, method):
        path = req.path.split('?')[0]
        if path in ('/healthz', '/livez', '/readyz'):
            return req._send(200, 'ok', 'text/plain; charset=utf-8')
        return req._send(403, {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure', 'reason': 'Forbidden', 'code': 403,
                               'message': f'forbidden: User "system:anonymous" cannot get path "{path}"'})


def check_files(name: str, flags: dict) -> None:
    if name != 'kube-controller-manager':
        return
    if flags.get('root-ca-file'):
        hw.require_readable(flags['root-ca-file'], f'error reading root-ca-file at {flags["root-ca-file"]}')
    if flags.get('service-account-private-key-file'):
        hw.require_readable(flags['service-account-private-key-file'], 'error reading key for service account token controller')
    for key in ('cluster-signing-cert-file', 'cluster-signing-key-file'):
        if flags.get(key):
            hw.require_readable(flags[key], 'failed to start certificate controller')


def main(name: str) -> None:
    spec = COMPONENTS[name]
    argv = sys.argv[1:]
    hw.print_version_and_exit(argv)
    try:
        flags, positionals = hw.parse_flags(argv, spec['values'], spec['bools'])
    except hw.FlagError as error:
        hw.fail_usage(name, error)
    if any(positionals):
        hw.fail_usage(name, hw.FlagError(f'"{name}" does not take any arguments, got {positionals}'))
    hw.log_flags(flags)
    kubeconfig = scheduler_kubeconfig(flags) if name == 'kube-scheduler' else flags.get('kubeconfig')
    if not kubeconfig:
        hw.command_failed('invalid configuration: no configuration has been provided, try setting KUBERNETES_MASTER environment variable')
    client = load_client(kubeconfig)
    check_files(name, flags)

    # /healthz over HTTPS with an in-memory self-signed certificate
    import standin_servers as servers  # noqa: E402  (imported late: its module-level path setup is harmless here)
    key_pem, cert_pem = hw.self_signed(name, ['localhost'], ['127.0.0.1'])
    cert_path, key_path = hw.write_temp_pair(cert_pem, key_pem)
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    bind, port = flags.get('bind-address', '0.0.0.0'), int(flags.get('secure-port', spec['port']))
    try:
        servers.serve(bind, port, context, Health())
    except OSError as error:
        hw.command_failed(f'failed to create listener: failed to listen on {bind}:{port}: listen tcp {bind}:{port}: bind: {error.strerror.lower() if error.strerror else error}')
    common.klog('I', 'secure_serving.go:213', f'Serving securely on {bind}:{port}')

    identity = f'{socket.gethostname()}_{uuid.uuid4()}'
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    leader = False
    while True:
        try:
            if flags.get('leader-elect', True):
                holder = client.op('lease', name=name, namespace='kube-system', identity=identity, leaseDurationSeconds=15)
                if holder == identity and not leader:
                    common.klog('I', 'leaderelection.go:271', f'successfully acquired lease kube-system/{name}')
                leader = holder == identity
            else:
                client.request('GET', '/version')
        except common.ApiError as error:
            if error.status == 401:
                common.klog('E', 'leaderelection.go:436', f'error retrieving resource lock kube-system/{name}: Unauthorized')
            else:
                common.klog('E', 'leaderelection.go:436', f'error retrieving resource lock kube-system/{name}: {error}')
        except OSError as error:
            url = f'{client.server}/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}?timeout=5s'
            common.klog('E', 'leaderelection.go:436', f'error retrieving resource lock kube-system/{name}: {common.go_url_error("GET", url, error)}')
        time.sleep(2)


if __name__ == '__main__':
    main(os.path.basename(sys.argv[0]))
