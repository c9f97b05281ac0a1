#!/usr/bin/python3
"""kubeadm stand-in (a lab test double; see standin_common.py for what it is and is not)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, '/usr/lib/capstan-standin')
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import standin_common as common  # noqa: E402
import kubeadm_config as kconfig  # noqa: E402
import kubeadm_preflight as preflight  # noqa: E402
from standin_common import PhaseError  # noqa: E402

PKI = common.PKI_DIR
ADMIN_CONF = '/etc/kubernetes/admin.conf'
DEFAULT_TOKEN_GROUPS = ['system:bootstrappers:kubeadm:default-node-token']
PAUSE_IMAGE = 'registry.k8s.io/pause:3.10.1'


def out(line: str = '') -> None:
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


# ------------------------------------------------------------------ flags

class FlagError(Exception):
    pass


def parse_flags(argv: list[str], spec: dict) -> tuple[dict, list[str], set[str]]:
    """pflag-style: --name=value, --name value, bool --name[=true|false]; returns (values, positionals, given)."""
    values, positionals, given = {}, [], set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == '--':
            positionals += argv[i + 1:]
            break
        if arg.startswith('--') or (arg.startswith('-') and len(arg) == 2 and arg != '-'):
            name, eq, value = arg.lstrip('-').partition('=')
            name = {'f': 'force', 'o': 'output', 'v': 'v', 'y': 'yes'}.get(name, name) if not arg.startswith('--') else name
            kind = spec.get(name)
            if kind is None:
                raise FlagError(f'unknown flag: {arg.split("=")[0]}' if arg.startswith('--') else f'unknown shorthand flag: {arg[1]!r} in {arg}')
            if kind == 'bool':
                values[name] = (value.lower() != 'false') if eq else True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise FlagError(f'flag needs an argument: {arg}')
                    value = argv[i]
                if kind == 'list':
                    values.setdefault(name, []).extend(v for v in value.split(',') if v)
                else:
                    values[name] = value
            given.add(name)
        else:
            positionals.append(arg)
        i += 1
    return values, positionals, given


def ignore_set(values: dict, docs: dict, kind: str) -> set[str]:
    items = [i.lower() for i in values.get('ignore-preflight-errors', [])]
    reg = (docs.get(kind) or {}).get('nodeRegistration') or {}
    items += [str(i).lower() for i in reg.get('ignorePreflightErrors') or []]
    if 'all' in items and len(set(items)) > 1:
        raise PhaseError("don't specify individual checks if 'all' is used", 'preflight')
    return set(items)


def read_config(path: str, where: str) -> dict:
    text = common.read_text(path)
    if text is None:
        raise PhaseError(f'unable to read config from "{path}" : open {path}: no such file or directory')
    try:
        docs, warnings = kconfig.parse_config(text, common.version_tuple(), where)
    except kconfig.ConfigError as error:
        raise PhaseError(str(error))
    for warning in warnings:
        common.klog('W', where, warning)
    return docs


def resolve_version(requested: str | None) -> str:
    if requested and re.match(r'^v?\d+\.\d+\.\d+', requested):
        return requested if requested.startswith('v') else 'v' + requested
    label = requested or 'stable-1'
    url = f'https://dl.k8s.io/release/{label}.txt'
    # The lab has no DNS and no internet: real kubeadm fails to fetch the label the same way.
    reason = f'Get "{url}": dial tcp: lookup dl.k8s.io on 127.0.0.53:53: no such host'
    common.klog('W', 'version.go:109', f'could not fetch a Kubernetes version from the internet: unable to get URL "{url}": {reason}')
    common.klog('W', 'version.go:110', f'falling back to the local client version: {common.kube_version()}')
    return common.kube_version()


# ------------------------------------------------------------------ init configuration

def init_configuration(values: dict, given: set[str]) -> tuple[dict, dict]:
    docs = {}
    if values.get('config'):
        bad = kconfig.mix_error(given, kconfig.INIT_FLAGS_WITH_CONFIG)
        if bad:
            raise PhaseError(bad)
        docs = read_config(values['config'], 'initconfiguration.go:332')
    init = docs.get('InitConfiguration') or {}
    cluster = docs.get('ClusterConfiguration') or {}
    reg = init.get('nodeRegistration') or {}
    endpoint = init.get('localAPIEndpoint') or {}
    networking = cluster.get('networking') or {}
    etcd = (cluster.get('etcd') or {}).get('local') or {}
    advertise = values.get('apiserver-advertise-address') or endpoint.get('advertiseAddress') or common.default_route_ip()
    cfg = {
        'kubernetesVersion': resolve_version(values.get('kubernetes-version') or cluster.get('kubernetesVersion')),
        'advertiseAddress': advertise,
        'bindPort': int(values.get('apiserver-bind-port') or endpoint.get('bindPort') or 6443),
        'controlPlaneEndpoint': values.get('control-plane-endpoint') or cluster.get('controlPlaneEndpoint') or '',
        'podSubnet': values.get('pod-network-cidr') or networking.get('podSubnet') or '',
        'serviceSubnet': values.get('service-cidr') or networking.get('serviceSubnet') or '10.96.0.0/12',
        'dnsDomain': values.get('service-dns-domain') or networking.get('dnsDomain') or 'cluster.local',
        'nodeName': (values.get('node-name') or reg.get('name') or common.hostname()).lower(),
        'criSocket': values.get('cri-socket') or reg.get('criSocket') or common.DEFAULT_CRI_SOCKET,
        'taints': reg.get('taints') if 'taints' in reg else [{'key': 'node-role.kubernetes.io/control-plane', 'effect': 'NoSchedule'}],
        'kubeletExtraArgs': kconfig.extra_args(reg.get('kubeletExtraArgs')),
        'certSANs': list(values.get('apiserver-cert-extra-sans', [])) + list((cluster.get('apiServer') or {}).get('certSANs') or []),
        'etcdDataDir': etcd.get('dataDir') or '/var/lib/etcd',
        'clusterName': cluster.get('clusterName') or 'kubernetes',
        'imageRepository': values.get('image-repository') or cluster.get('imageRepository') or 'registry.k8s.io',
        'uploadCerts': bool(values.get('upload-certs')),
        'certificateKey': values.get('certificate-key') or init.get('certificateKey') or '',
        'skipPhases': list(values.get('skip-phases', [])) + list(init.get('skipPhases') or []),
        'bootstrapTokens': init.get('bootstrapTokens') or [{}],
        'tokenTTL': values.get('token-ttl'),
        'token': values.get('token'),
    }
    if not advertise:
        raise PhaseError('unable to select an IP from default routes.')
    major, minor, _ = common.version_tuple(cfg['kubernetesVersion'])
    kmajor, kminor, _ = common.version_tuple()
    if (major, minor) < (kmajor, kminor - 1):
        raise PhaseError(f'this version of kubeadm only supports deploying clusters with the control plane version >= '
                         f'{kmajor}.{kminor - 1}.0. Current version: {cfg["kubernetesVersion"]}')
    return cfg, docs


def cluster_configuration_yaml(cfg: dict) -> str:
    doc = {
        'apiVersion': 'kubeadm.k8s.io/v1beta4', 'kind': 'ClusterConfiguration',
        'apiServer': {'certSANs': cfg['certSANs']} if cfg['certSANs'] else {},
        'caCertificateValidityPeriod': '87600h0m0s', 'certificateValidityPeriod': '8760h0m0s',
        'certificatesDir': PKI, 'clusterName': cfg['clusterName'],
        'controlPlaneEndpoint': cfg['controlPlaneEndpoint'] or None,
        'controllerManager': {}, 'dns': {}, 'encryptionAlgorithm': 'RSA-2048',
        'etcd': {'local': {'dataDir': cfg['etcdDataDir']}}, 'imageRepository': cfg['imageRepository'],
        'kubernetesVersion': cfg['kubernetesVersion'],
        'networking': {'dnsDomain': cfg['dnsDomain'], 'serviceSubnet': cfg['serviceSubnet'],
                       **({'podSubnet': cfg['podSubnet']} if cfg['podSubnet'] else {})},
        'proxy': {}, 'scheduler': {},
    }
    if doc['controlPlaneEndpoint'] is None:
        del doc['controlPlaneEndpoint']
    return common.dump_yaml(doc)


# ------------------------------------------------------------------ files: certificates, kubeconfigs, manifests

def write_pair(name: str, key, cert) -> None:
    common.write_file(f'{PKI}/{name}.key', common.key_pem(key), 0o600)
    common.write_file(f'{PKI}/{name}.crt', common.cert_pem(cert), 0o644)


def load_pair(name: str):
    with open(f'{PKI}/{name}.key', 'rb') as k, open(f'{PKI}/{name}.crt', 'rb') as c:
        return common.load_key(k.read()), common.load_cert(c.read())


def service_ip(cidr: str, index: int = 1) -> str:
    import ipaddress
    return str(ipaddress.ip_network(cidr.split(',')[0], strict=False).network_address + index)


def generate_shared_certs() -> None:
    for ca_name, cn in (('ca', 'kubernetes'), ('front-proxy-ca', 'front-proxy-ca'), ('etcd/ca', 'etcd-ca')):
        out(f'[certs] Generating "{ca_name}" certificate and key')
        write_pair(ca_name, *common.make_ca(cn))
    out('[certs] Generating "sa" key and public key')
    sa = common.new_key()
    common.write_file(f'{PKI}/sa.key', common.key_pem(sa), 0o600)
    common.write_file(f'{PKI}/sa.pub', common.public_key_pem(sa), 0o644)


def generate_node_certs(cfg: dict, announce: bool) -> None:
    ca_key, ca = load_pair('ca')
    fp_key, fp = load_pair('front-proxy-ca')
    etcd_key, etcd_ca = load_pair('etcd/ca')
    node, ip = cfg['nodeName'], cfg['advertiseAddress']
    dns = [node, 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', f'kubernetes.default.svc.{cfg["dnsDomain"]}']
    ips = [service_ip(cfg['serviceSubnet']), ip]
    cpe_host = kconfig.split_endpoint(cfg['controlPlaneEndpoint'], 6443)[0] if cfg['controlPlaneEndpoint'] else None
    for san in [cpe_host] + cfg['certSANs']:
        if san and san not in dns + ips:
            (ips if re.fullmatch(r'[\d.]+|[0-9a-fA-F:]+', san) else dns).append(san)
    specs = [
        ('apiserver', 'kube-apiserver', None, ca_key, ca, dns, ips, True, False),
        ('apiserver-kubelet-client', 'kube-apiserver-kubelet-client', ['kubeadm:cluster-admins'], ca_key, ca, [], [], False, True),
        ('front-proxy-client', 'front-proxy-client', None, fp_key, fp, [], [], False, True),
        ('etcd/server', node, None, etcd_key, etcd_ca, [node, 'localhost'], [ip, '127.0.0.1', '::1'], True, True),
        ('etcd/peer', node, None, etcd_key, etcd_ca, [node, 'localhost'], [ip, '127.0.0.1', '::1'], True, True),
        ('etcd/healthcheck-client', 'kube-etcd-healthcheck-client', None, etcd_key, etcd_ca, [], [], False, True),
        ('apiserver-etcd-client', 'kube-apiserver-etcd-client', None, etcd_key, etcd_ca, [], [], False, True),
    ]
    for name, cn, orgs, signer_key, signer, d, i, server, client in specs:
        out(f'[certs] Generating "{name}" certificate and key')
        if name == 'apiserver':
            out(f'[certs] apiserver serving cert is signed for DNS names [{" ".join(d)}] and IPs [{" ".join(i)}]')
        if name in ('etcd/server', 'etcd/peer'):
            out(f'[certs] {name} serving cert is signed for DNS names [{" ".join(d)}] and IPs [{" ".join(i)}]')
        key = common.new_key()
        write_pair(name, key, common.sign_cert(signer_key, signer, key.public_key(), cn, orgs, d, i, server, client))


def client_kubeconfig(server: str, cn: str, orgs: list[str] | None, user: str, cluster: str) -> dict:
    ca_key, ca = load_pair('ca')
    key = common.new_key()
    cert = common.sign_cert(ca_key, ca, key.public_key(), cn, orgs, client=True)
    return common.kubeconfig(server, common.cert_pem(ca), user, common.cert_pem(cert), common.key_pem(key), cluster=cluster)


def write_kubeconfig(name: str, config: dict) -> None:
    common.write_file(f'/etc/kubernetes/{name}', common.dump_yaml(config), 0o600)


def write_kubeconfigs(cfg: dict, names: list[str]) -> None:
    server = f'https://{control_plane_host_port(cfg)}'
    local = f'https://{cfg["advertiseAddress"]}:{cfg["bindPort"]}'
    node = cfg['nodeName']
    specs = {
        'admin.conf': (server, 'kubernetes-admin', ['kubeadm:cluster-admins'], 'kubernetes-admin'),
        'super-admin.conf': (server, 'kubernetes-super-admin', ['system:masters'], 'kubernetes-super-admin'),
        'kubelet.conf': (server, f'system:node:{node}', ['system:nodes'], f'system:node:{node}'),
        'controller-manager.conf': (local, 'system:kube-controller-manager', None, 'system:kube-controller-manager'),
        'scheduler.conf': (local, 'system:kube-scheduler', None, 'system:kube-scheduler'),
    }
    out('[kubeconfig] Using kubeconfig folder "/etc/kubernetes"')
    for name in names:
        out(f'[kubeconfig] Writing "{name}" kubeconfig file')
        url, cn, orgs, user = specs[name]
        write_kubeconfig(name, client_kubeconfig(url, cn, orgs, user, cfg['clusterName']))


def control_plane_host_port(cfg: dict) -> str:
    if cfg['controlPlaneEndpoint']:
        host, port = kconfig.split_endpoint(cfg['controlPlaneEndpoint'], cfg['bindPort'])
        return f'{host}:{port}'
    return f'{cfg["advertiseAddress"]}:{cfg["bindPort"]}'


def static_pod(name: str, command: list[str], component_port: int | None = None) -> dict:
    return {
        'apiVersion': 'v1', 'kind': 'Pod',
        'metadata': {'labels': {'component': name, 'tier': 'control-plane'}, 'name': name, 'namespace': 'kube-system'},
        'spec': {'containers': [{'command': command, 'image': f'registry.k8s.io/{name}:{common.kube_version()}',
                                 'imagePullPolicy': 'IfNotPresent', 'name': name}],
                 'hostNetwork': True, 'priorityClassName': 'system-node-critical'},
        'status': {},
    }


def write_etcd_manifest(cfg: dict, initial_cluster: str, state: str) -> None:
    ip, node = cfg['advertiseAddress'], cfg['nodeName']
    command = ['etcd', f'--advertise-client-urls=https://{ip}:2379', f'--cert-file={PKI}/etcd/server.crt',
               '--client-cert-auth=true', f'--data-dir={cfg["etcdDataDir"]}', '--feature-gates=InitialCorruptCheck=true',
               f'--initial-advertise-peer-urls=https://{ip}:2380', f'--initial-cluster={initial_cluster}',
               f'--initial-cluster-state={state}', f'--key-file={PKI}/etcd/server.key',
               f'--listen-client-urls=https://127.0.0.1:2379,https://{ip}:2379', '--listen-metrics-urls=http://127.0.0.1:2381',
               f'--listen-peer-urls=https://{ip}:2380', f'--name={node}', f'--peer-cert-file={PKI}/etcd/peer.crt',
               '--peer-client-cert-auth=true', f'--peer-key-file={PKI}/etcd/peer.key',
               f'--peer-trusted-ca-file={PKI}/etcd/ca.crt', '--snapshot-count=10000', f'--trusted-ca-file={PKI}/etcd/ca.crt']
    pod = static_pod('etcd', command)
    pod['metadata']['labels']['component'] = 'etcd'
    common.write_file(f'{common.MANIFESTS_DIR}/etcd.yaml', common.dump_yaml(pod), 0o600)


def write_control_plane_manifests(cfg: dict) -> None:
    ip = cfg['advertiseAddress']
    apiserver = ['kube-apiserver', f'--advertise-address={ip}', '--allow-privileged=true', '--authorization-mode=Node,RBAC',
                 f'--client-ca-file={PKI}/ca.crt', '--enable-admission-plugins=NodeRestriction', '--enable-bootstrap-token-auth=true',
                 f'--etcd-cafile={PKI}/etcd/ca.crt', f'--etcd-certfile={PKI}/apiserver-etcd-client.crt',
                 f'--etcd-keyfile={PKI}/apiserver-etcd-client.key', '--etcd-servers=https://127.0.0.1:2379',
                 f'--kubelet-client-certificate={PKI}/apiserver-kubelet-client.crt',
                 f'--kubelet-client-key={PKI}/apiserver-kubelet-client.key',
                 '--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname',
                 f'--proxy-client-cert-file={PKI}/front-proxy-client.crt', f'--proxy-client-key-file={PKI}/front-proxy-client.key',
                 f'--requestheader-client-ca-file={PKI}/front-proxy-ca.crt', f'--secure-port={cfg["bindPort"]}',
                 f'--service-account-issuer=https://kubernetes.default.svc.{cfg["dnsDomain"]}',
                 f'--service-account-key-file={PKI}/sa.pub', f'--service-account-signing-key-file={PKI}/sa.key',
                 f'--service-cluster-ip-range={cfg["serviceSubnet"]}', f'--tls-cert-file={PKI}/apiserver.crt',
                 f'--tls-private-key-file={PKI}/apiserver.key']
    controller = ['kube-controller-manager', '--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf',
                  '--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf', '--bind-address=127.0.0.1',
                  f'--client-ca-file={PKI}/ca.crt', f'--cluster-name={cfg["clusterName"]}',
                  f'--cluster-signing-cert-file={PKI}/ca.crt', f'--cluster-signing-key-file={PKI}/ca.key',
                  '--controllers=*,bootstrapsigner,tokencleaner', '--kubeconfig=/etc/kubernetes/controller-manager.conf',
                  '--leader-elect=true', f'--root-ca-file={PKI}/ca.crt', f'--service-account-private-key-file={PKI}/sa.key',
                  '--use-service-account-credentials=true']
    if cfg['podSubnet']:
        controller[7:7] = ['--allocate-node-cidrs=true', f'--cluster-cidr={cfg["podSubnet"]}']
    scheduler = ['kube-scheduler', '--authentication-kubeconfig=/etc/kubernetes/scheduler.conf',
                 '--authorization-kubeconfig=/etc/kubernetes/scheduler.conf', '--bind-address=127.0.0.1',
                 '--kubeconfig=/etc/kubernetes/scheduler.conf', '--leader-elect=true']
    out('[control-plane] Using manifest folder "/etc/kubernetes/manifests"')
    for name, command in (('kube-apiserver', apiserver), ('kube-controller-manager', controller), ('kube-scheduler', scheduler)):
        out(f'[control-plane] Creating static Pod manifest for "{name}"')
        common.write_file(f'{common.MANIFESTS_DIR}/{name}.yaml', common.dump_yaml(static_pod(name, command)), 0o600)


def write_kubelet_files(cfg: dict, cluster_dns: str, domain: str) -> None:
    out('[kubelet-start] Writing kubelet environment file with flags to file "/var/lib/kubelet/kubeadm-flags.env"')
    flags = [f'--container-runtime-endpoint={cfg["criSocket"]}', f'--pod-infra-container-image={PAUSE_IMAGE}']
    flags += [f'--{k}={v}' for k, v in sorted(cfg['kubeletExtraArgs'].items())]
    common.write_file(f'{common.KUBELET_DIR}/kubeadm-flags.env', f'KUBELET_KUBEADM_ARGS="{" ".join(flags)}"\n')
    out('[kubelet-start] Writing kubelet configuration to file "/var/lib/kubelet/config.yaml"')
    common.write_file(f'{common.KUBELET_DIR}/config.yaml', kubelet_config_yaml(cluster_dns, domain))


def kubelet_config_yaml(cluster_dns: str, domain: str) -> str:
    return common.dump_yaml({
        'apiVersion': 'kubelet.config.k8s.io/v1beta1', 'kind': 'KubeletConfiguration',
        'authentication': {'anonymous': {'enabled': False}, 'webhook': {'cacheTTL': '0s', 'enabled': True},
                           'x509': {'clientCAFile': f'{PKI}/ca.crt'}},
        'authorization': {'mode': 'Webhook', 'webhook': {'cacheAuthorizedTTL': '0s', 'cacheUnauthorizedTTL': '0s'}},
        'cgroupDriver': 'systemd', 'clusterDNS': [cluster_dns], 'clusterDomain': domain,
        'containerRuntimeEndpoint': '', 'cpuManagerReconcilePeriod': '0s', 'crashLoopBackOff': {},
        'evictionPressureTransitionPeriod': '0s', 'fileCheckFrequency': '0s', 'healthzBindAddress': '127.0.0.1',
        'healthzPort': 10248, 'httpCheckFrequency': '0s', 'imageMaximumGCAge': '0s', 'imageMinimumGCAge': '0s',
        'logging': {'flushFrequency': 0, 'options': {'json': {'infoBufferSize': '0'}, 'text': {'infoBufferSize': '0'}},
                    'verbosity': 0},
        'memorySwap': {}, 'nodeStatusReportFrequency': '0s', 'nodeStatusUpdateFrequency': '0s',
        'rotateCertificates': True, 'runtimeRequestTimeout': '0s', 'shutdownGracePeriod': '0s',
        'shutdownGracePeriodCriticalPods': '0s', 'staticPodPath': common.MANIFESTS_DIR, 'streamingConnectionIdleTimeout': '0s',
        'syncFrequency': '0s', 'volumeStatsAggPeriod': '0s',
    })


# ------------------------------------------------------------------ waiting

def wait_kubelet(timeout: float) -> None:
    out(f'[kubelet-check] Waiting for a healthy kubelet at http://127.0.0.1:10248/healthz. This can take up to {common.format_duration(timeout)}')
    started = time.time()
    while time.time() - started < timeout:
        try:
            with urllib.request.urlopen('http://127.0.0.1:10248/healthz', timeout=2) as response:
                if response.status == 200:
                    out(f'[kubelet-check] The kubelet is healthy after {common.format_duration(round(time.time() - started, 6))}')
                    return
        except OSError:
            pass
        time.sleep(0.5)
    out(f'[kubelet-check] The kubelet is not healthy after {common.format_duration(timeout)}')
    out()
    out('Unfortunately, an error has occurred, likely caused by:')
    out('\t- The kubelet is not running')
    out('\t- The kubelet is unhealthy due to a misconfiguration of the node in some way (required cgroups disabled)')
    out()
    out('If you are on a systemd-powered system, you can try to troubleshoot the error with the following commands:')
    out("\t- 'systemctl status kubelet'")
    out("\t- 'journalctl -xeu kubelet'")
    out()
    raise PhaseError("The HTTP call equal to 'curl -sSL http://127.0.0.1:10248/healthz' returned error: Get "
                     '"http://127.0.0.1:10248/healthz": dial tcp 127.0.0.1:10248: connect: connection refused', 'kubelet-start')


def wait_control_plane(cfg: dict, timeout: float) -> None:
    out(f'[control-plane-check] Waiting for healthy control plane components. This can take up to {common.format_duration(timeout)}')
    components = [('kube-apiserver', f'https://{cfg["advertiseAddress"]}:{cfg["bindPort"]}/livez'),
                  ('kube-controller-manager', 'https://127.0.0.1:10257/healthz'),
                  ('kube-scheduler', 'https://127.0.0.1:10259/livez')]
    for name, url in components:
        out(f'[control-plane-check] Checking {name} at {url}')
    import ssl
    context = ssl._create_unverified_context()
    pending = dict(components)
    started = time.time()
    while pending and time.time() - started < timeout:
        for name, url in list(pending.items()):
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    if response.status == 200:
                        out(f'[control-plane-check] {name} is healthy after {common.format_duration(round(time.time() - started, 9))}')
                        del pending[name]
            except OSError:
                pass
        time.sleep(0.25)
    if pending:
        for name in pending:
            out(f'[control-plane-check] {name} is not healthy after {common.format_duration(timeout)}')
        out()
        out('A control plane component may have crashed or exited when started by the container runtime.')
        out('To troubleshoot, list all containers using your preferred container runtimes CLI.')
        raise PhaseError(f'failed while waiting for the control plane to start: {", ".join(f"{n} check failed" for n in pending)}',
                         'wait-control-plane')


class RetryingClient(common.Client):
    """Real kubeadm retries its API calls (timeouts.kubernetesAPICall, 1m0s): behind a load balancer or a
    VIP, a new API server is reachable a few seconds after it is healthy locally (health checks)."""

    def request(self, method: str, path: str, body=None):
        deadline = time.time() + 60
        while True:
            try:
                return super().request(method, path, body)
            except (OSError, common.ApiError) as error:
                # Connection errors and server errors (an API server whose etcd is not up yet) are retried;
                # 4xx answers are final, as in client-go.
                if isinstance(error, common.ApiError) and error.status < 500:
                    raise
                if time.time() >= deadline:
                    raise
                time.sleep(0.5)


def admin_client(path: str = ADMIN_CONF) -> common.Client:
    if not os.path.exists(path):
        raise PhaseError(f'failed to load admin kubeconfig: open {path}: no such file or directory')
    client = common.client_from_kubeconfig(path)
    client.__class__ = RetryingClient
    return client


def wait_node(client: common.Client, name: str, timeout: float = 240) -> None:
    started = time.time()
    while time.time() - started < timeout:
        try:
            if name in [n['metadata']['name'] for n in client.op('get', kind='Node')]:
                return
        except (common.ApiError, OSError):
            pass
        time.sleep(0.5)
    raise PhaseError(f'error patching Node "{name}": timed out waiting for the condition', 'mark-control-plane')


# ------------------------------------------------------------------ tokens and certificates in the cluster

def create_token(client: common.Client, token: str, ttl: float, usages, groups, description: str = '') -> None:
    expires = common.rfc3339(common.now() + ttl) if ttl > 0 else None
    client.op('token_create', token=token, expires=expires, usages=sorted(usages), groups=groups, description=description)


def upload_certs(client: common.Client, key_hex: str) -> None:
    out('[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')
    key = bytes.fromhex(key_hex)
    files = {'ca.crt': 'ca.crt', 'ca.key': 'ca.key', 'front-proxy-ca.crt': 'front-proxy-ca.crt',
             'front-proxy-ca.key': 'front-proxy-ca.key', 'sa.key': 'sa.key', 'sa.pub': 'sa.pub',
             'etcd-ca.crt': 'etcd/ca.crt', 'etcd-ca.key': 'etcd/ca.key'}
    data = {}
    for secret_name, path in files.items():
        with open(f'{PKI}/{path}', 'rb') as handle:
            data[secret_name] = base64.b64encode(common.encrypt_bytes(handle.read(), key)).decode()
    client.op('upload_certs', data=data, ttlToken=common.random_token(), expires=common.rfc3339(common.now() + 2 * 3600))
    out('[upload-certs] Using certificate key:')
    out(key_hex)


def join_command(host_port: str, token: str, ca_hash: str, control_plane: bool, certificate_key: str = '') -> str:
    text = f'kubeadm join {host_port} --token {token} \\\n\t--discovery-token-ca-cert-hash {ca_hash} '
    if control_plane:
        text += '\\\n\t--control-plane ' + (f'--certificate-key {certificate_key}' if certificate_key else '')
    return text


def ca_hash() -> str:
    with open(f'{PKI}/ca.crt', 'rb') as handle:
        return common.spki_hash(common.load_cert(handle.read()))


# ------------------------------------------------------------------ addons and cluster objects

def coredns_and_proxy_objects(cfg: dict) -> list[dict]:
    dns_ip = service_ip(cfg['serviceSubnet'], 10)
    critical = [{'key': 'CriticalAddonsOnly', 'operator': 'Exists'},
                {'key': 'node-role.kubernetes.io/control-plane', 'effect': 'NoSchedule'}]
    return [
        {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': {'name': 'coredns', 'namespace': 'kube-system'}},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'coredns', 'namespace': 'kube-system'},
         'data': {'Corefile': f'.:53 {{\n    errors\n    health\n    kubernetes {cfg["dnsDomain"]} in-addr.arpa ip6.arpa\n    forward . /etc/resolv.conf\n    cache 30\n}}\n'}},
        {'apiVersion': 'apps/v1', 'kind': 'Deployment',
         'metadata': {'name': 'coredns', 'namespace': 'kube-system', 'labels': {'k8s-app': 'kube-dns'}},
         'spec': {'replicas': 2, 'selector': {'matchLabels': {'k8s-app': 'kube-dns'}},
                  'template': {'metadata': {'labels': {'k8s-app': 'kube-dns'}},
                               'spec': {'containers': [{'name': 'coredns', 'image': 'registry.k8s.io/coredns/coredns:v1.12.1'}],
                                        'tolerations': critical, 'priorityClassName': 'system-cluster-critical'}}}},
        {'apiVersion': 'v1', 'kind': 'Service',
         'metadata': {'name': 'kube-dns', 'namespace': 'kube-system',
                      'labels': {'k8s-app': 'kube-dns', 'kubernetes.io/cluster-service': 'true', 'kubernetes.io/name': 'CoreDNS'}},
         'spec': {'clusterIP': dns_ip, 'selector': {'k8s-app': 'kube-dns'},
                  'ports': [{'name': 'dns', 'port': 53, 'protocol': 'UDP'}, {'name': 'dns-tcp', 'port': 53, 'protocol': 'TCP'}]}},
        {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': {'name': 'kube-proxy', 'namespace': 'kube-system'}},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'kube-proxy', 'namespace': 'kube-system'},
         'data': {'config.conf': common.dump_yaml({'apiVersion': 'kubeproxy.config.k8s.io/v1alpha1', 'kind': 'KubeProxyConfiguration',
                                                   'clusterCIDR': cfg['podSubnet']})}},
        {'apiVersion': 'apps/v1', 'kind': 'DaemonSet',
         'metadata': {'name': 'kube-proxy', 'namespace': 'kube-system', 'labels': {'k8s-app': 'kube-proxy'}},
         'spec': {'selector': {'matchLabels': {'k8s-app': 'kube-proxy'}},
                  'template': {'metadata': {'labels': {'k8s-app': 'kube-proxy'}},
                               'spec': {'containers': [{'name': 'kube-proxy', 'image': f'registry.k8s.io/kube-proxy:{cfg["kubernetesVersion"]}'}],
                                        'hostNetwork': True, 'tolerations': [{'operator': 'Exists'}],
                                        'priorityClassName': 'system-node-critical'}}}},
    ]


# ------------------------------------------------------------------ kubeadm init

INIT_SPEC = {'config': 'str', 'pod-network-cidr': 'str', 'apiserver-advertise-address': 'str', 'apiserver-bind-port': 'str',
             'control-plane-endpoint': 'str', 'upload-certs': 'bool', 'certificate-key': 'str', 'skip-phases': 'list',
             'ignore-preflight-errors': 'list', 'kubernetes-version': 'str', 'service-cidr': 'str',
             'service-dns-domain': 'str', 'node-name': 'str', 'cri-socket': 'str', 'apiserver-cert-extra-sans': 'list',
             'token': 'str', 'token-ttl': 'str', 'image-repository': 'str', 'dry-run': 'bool', 'v': 'str',
             'skip-token-print': 'bool', 'skip-certificate-key-print': 'bool', 'help': 'bool', 'feature-gates': 'str',
             'patches': 'str', 'cert-dir': 'str', 'kubeconfig': 'str'}


def cmd_init(argv: list[str]) -> None:
    values, positionals, given = parse_flags(argv, INIT_SPEC)
    if positionals and positionals[:2] == ['phase', 'upload-certs']:
        return cmd_upload_certs(argv[2:])
    if positionals:
        raise PhaseError(f'unknown command "{positionals[0]}" for "kubeadm init"')
    cfg, docs = init_configuration(values, given)
    ignore = ignore_set(values, docs, 'InitConfiguration')
    skip = set(cfg['skipPhases'])
    out(f'[init] Using Kubernetes version: {cfg["kubernetesVersion"]}')
    if 'preflight' not in skip:
        out('[preflight] Running pre-flight checks')
        cri_err = preflight.cri_connect(cfg['criSocket'])
        try:
            preflight.run_checks(preflight.init_checks(cfg, False, cri_err), ignore)
            preflight.pull_images(cfg['criSocket'], cri_err)
        except preflight.PreflightFailed:
            raise PhaseError('preflight checks failed', 'preflight')
    # certs
    out(f'[certs] Using certificateDir folder "{PKI}"')
    if os.path.exists(f'{PKI}/ca.crt') and os.path.exists(f'{PKI}/ca.key'):
        out('[certs] Using existing ca certificate authority')
    else:
        generate_shared_certs()
    generate_node_certs(cfg, True)
    write_kubeconfigs(cfg, ['admin.conf', 'super-admin.conf', 'kubelet.conf', 'controller-manager.conf', 'scheduler.conf'])
    out(f'[etcd] Creating static Pod manifest for local etcd in "{common.MANIFESTS_DIR}"')
    os.makedirs(cfg['etcdDataDir'], mode=0o700, exist_ok=True)
    write_etcd_manifest(cfg, f'{cfg["nodeName"]}=https://{cfg["advertiseAddress"]}:2380', 'new')
    write_control_plane_manifests(cfg)
    dns_ip = service_ip(cfg['serviceSubnet'], 10)
    write_kubelet_files(cfg, dns_ip, cfg['dnsDomain'])
    out('[kubelet-start] Starting the kubelet')
    subprocess.run(['systemctl', 'restart', 'kubelet'], capture_output=True)
    out(f'[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory "{common.MANIFESTS_DIR}"')
    init_doc = docs.get('InitConfiguration') or {}
    wait_kubelet(kconfig.timeout_of(docs, 'InitConfiguration', 'kubeletHealthCheck', 240))
    wait_control_plane(cfg, kconfig.timeout_of(docs, 'InitConfiguration', 'controlPlaneComponentHealthCheck', 240))
    client = admin_client()
    ca_pem = open(f'{PKI}/ca.crt', 'rb').read()
    out('[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" Namespace')
    out('[kubelet] Creating a ConfigMap "kubelet-config" in namespace kube-system with the configuration for the kubelets in the cluster')
    client.op('apply', objects=[
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'kubeadm-config', 'namespace': 'kube-system'},
         'data': {'ClusterConfiguration': cluster_configuration_yaml(cfg)}},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'kubelet-config', 'namespace': 'kube-system'},
         'data': {'kubelet': kubelet_config_yaml(dns_ip, cfg['dnsDomain'])}},
    ])
    certificate_key = ''
    if cfg['uploadCerts']:
        certificate_key = cfg['certificateKey'] or os.urandom(32).hex()
        upload_certs(client, certificate_key)
    else:
        out('[upload-certs] Skipping phase. Please see --upload-certs')
    node = cfg['nodeName']
    out(f'[mark-control-plane] Marking the node {node} as control-plane by adding the labels: '
        '[node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]')
    taints = cfg['taints'] or []
    out(f'[mark-control-plane] Marking the node {node} as control-plane by adding the taints '
        f'[{" ".join(t["key"] + ":" + t["effect"] for t in taints)}]')
    wait_node(client, node)
    client.op('patch_node', names=[node], addLabels={'node-role.kubernetes.io/control-plane': '',
                                                    'node.kubernetes.io/exclude-from-external-load-balancers': ''},
              addTaints=[{'key': t['key'], 'effect': t['effect'], **({'value': t['value']} if t.get('value') else {})} for t in taints])
    tokens = cfg['bootstrapTokens']
    first_token = None
    for spec in tokens:
        token = spec.get('token') or cfg['token'] or common.random_token()
        first_token = first_token or token
        out(f'[bootstrap-token] Using token: {token}')
        ttl = common.parse_duration(spec.get('ttl') or cfg['tokenTTL'] or '24h0m0s')
        create_token(client, token, ttl, spec.get('usages') or ['signing', 'authentication'], spec.get('groups') or DEFAULT_TOKEN_GROUPS,
                     spec.get('description') or "The default bootstrap token generated by 'kubeadm init'.")
    out('[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles')
    out('[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes')
    out('[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials')
    out('[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token')
    out('[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster')
    out('[bootstrap-token] Creating the "cluster-info" ConfigMap in the "kube-public" namespace')
    info = common.dump_yaml({'apiVersion': 'v1', 'kind': 'Config', 'preferences': {}, 'users': None,
                             'clusters': [{'cluster': {'certificate-authority-data': base64.b64encode(ca_pem).decode(),
                                                       'server': f'https://{control_plane_host_port(cfg)}'}, 'name': ''}],
                             'contexts': None, 'current-context': ''})
    client.op('apply', objects=[{'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cluster-info', 'namespace': 'kube-public'},
                                 'data': {'kubeconfig': info}}])
    out('[kubelet-finalize] Updating "/etc/kubernetes/kubelet.conf" to point to a rotatable kubelet client certificate and key')
    finalize_kubelet_conf()
    client.op('apply', objects=coredns_and_proxy_objects(cfg))
    out('[addons] Applied essential addon: CoreDNS')
    out('[addons] Applied essential addon: kube-proxy')
    out()
    out('Your Kubernetes control-plane has initialized successfully!')
    out()
    out('To start using your cluster, you need to run the following as a regular user:')
    out()
    out('  mkdir -p $HOME/.kube')
    out('  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config')
    out('  sudo chown $(id -u):$(id -g) $HOME/.kube/config')
    out()
    out('Alternatively, if you are the root user, you can run:')
    out()
    out('  export KUBECONFIG=/etc/kubernetes/admin.conf')
    out()
    out('You should now deploy a pod network to the cluster.')
    out('Run "kubectl apply -f [podnetwork].yaml" with one of the options listed at:')
    out('  https://kubernetes.io/docs/concepts/cluster-administration/addons/')
    out()
    host_port = control_plane_host_port(cfg)
    shown_token = '<value withheld>' if values.get('skip-token-print') else first_token
    if cfg['controlPlaneEndpoint']:
        if cfg['uploadCerts']:
            shown_key = '<value withheld>' if values.get('skip-certificate-key-print') else certificate_key
            out('You can now join any number of control-plane nodes running the following command on each as root:')
            out()
            out('  ' + join_command(host_port, shown_token, ca_hash(), True, shown_key))
            out()
            out('Please note that the certificate-key gives access to cluster sensitive data, keep it secret!')
            out('As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use')
            out('"kubeadm init phase upload-certs --upload-certs" to reload certs afterward.')
            out()
        else:
            out('You can now join any number of control-plane nodes by copying certificate authorities')
            out('and service account keys on each node and then running the following as root:')
            out()
            out('  ' + join_command(host_port, shown_token, ca_hash(), True))
            out()
    out('Then you can join any number of worker nodes by running the following on each as root:')
    out()
    out(join_command(host_port, shown_token, ca_hash(), False))


def finalize_kubelet_conf() -> None:
    """Moves kubelet.conf's embedded client certificate to /var/lib/kubelet/pki/kubelet-client-current.pem."""
    cfg = common.load_kubeconfig('/etc/kubernetes/kubelet.conf')
    pki = f'{common.KUBELET_DIR}/pki'
    stamp = time.strftime('%Y-%m-%d-%H-%M-%S')
    common.write_file(f'{pki}/kubelet-client-{stamp}.pem', cfg['cert'] + cfg['key'], 0o600)
    current = f'{pki}/kubelet-client-current.pem'
    if os.path.lexists(current):
        os.unlink(current)
    os.symlink(f'{pki}/kubelet-client-{stamp}.pem', current)
    with open('/etc/kubernetes/kubelet.conf') as handle:
        config = common.yaml.safe_load(handle)
    config['users'][0]['user'] = {'client-certificate': current, 'client-key': current}
    write_kubeconfig('kubelet.conf', config)


# ------------------------------------------------------------------ kubeadm init phase upload-certs

def cmd_upload_certs(argv: list[str]) -> None:
    values, _, _ = parse_flags(argv, {'upload-certs': 'bool', 'certificate-key': 'str', 'config': 'str',
                                      'kubeconfig': 'str', 'skip-certificate-key-print': 'bool', 'v': 'str'})
    if not values.get('upload-certs'):
        out('[upload-certs] Skipping phase. Please see --upload-certs')
        return
    client = admin_client(values.get('kubeconfig') or ADMIN_CONF)
    key = values.get('certificate-key') or os.urandom(32).hex()
    try:
        upload_certs(client, key)
    except (common.ApiError, OSError) as error:
        raise PhaseError(f'error uploading certs: {error}', 'upload-certs')


# ------------------------------------------------------------------ kubeadm join

JOIN_SPEC = {'token': 'str', 'discovery-token': 'str', 'tls-bootstrap-token': 'str', 'discovery-token-ca-cert-hash': 'list',
             'discovery-token-unsafe-skip-ca-verification': 'bool', 'control-plane': 'bool', 'certificate-key': 'str',
             'apiserver-advertise-address': 'str', 'apiserver-bind-port': 'str', 'config': 'str', 'node-name': 'str',
             'cri-socket': 'str', 'ignore-preflight-errors': 'list', 'skip-phases': 'list', 'v': 'str', 'dry-run': 'bool',
             'discovery-file': 'str', 'help': 'bool', 'patches': 'str'}


def discover(endpoint: str, token: str, pins: list[str], unsafe: bool, timeout: float) -> bytes:
    """Token discovery (cmd/kubeadm/app/discovery/token): returns the cluster CA (PEM)."""
    match = common.TOKEN_RE.match(token)
    if not match:
        raise PhaseError(f'the bootstrap token "{token}" was not of the form "^([a-z0-9]{{6}})\\.([a-z0-9]{{16}})$"', 'preflight')
    token_id, secret = match.groups()
    for pin in pins:
        parts = pin.split(':')
        if len(parts) != 2:
            raise PhaseError('couldn\'t validate the identity of the API Server: invalid discovery token CA certificate hash: '
                             'invalid hash, expected "format:hex-value". Known format(s) are: sha256', 'preflight')
        if parts[0].lower() != 'sha256':
            raise PhaseError(f'couldn\'t validate the identity of the API Server: invalid discovery token CA certificate hash: '
                             f'unknown hash format "{parts[0]}". Known format(s) are: sha256', 'preflight')
        if not re.fullmatch(r'[0-9a-fA-F]{64}', parts[1]):
            raise PhaseError(f'couldn\'t validate the identity of the API Server: invalid discovery token CA certificate hash: '
                             f'invalid hash "{pin}", expected a 32 byte SHA-256 hash, found {len(parts[1]) // 2} bytes', 'preflight')
    insecure = common.Client(f'https://{endpoint}', insecure=True, timeout=10)
    started = time.time()
    last_error = None
    cm = None
    while True:
        try:
            cm = insecure.request('GET', '/api/v1/namespaces/kube-public/configmaps/cluster-info')
            if f'jws-kubeconfig-{token_id}' in cm.get('data', {}):
                break
            last_error = f'could not find a JWS signature in the cluster-info ConfigMap for token ID "{token_id}"'
        except common.ApiError as error:
            last_error = f'failed to request the cluster-info ConfigMap: {error}'
        except OSError as error:
            last_error = 'failed to request the cluster-info ConfigMap: ' + common.go_url_error(
                'GET', f'https://{endpoint}/api/v1/namespaces/kube-public/configmaps/cluster-info?timeout=10s', error)
        if time.time() - started >= timeout:
            raise PhaseError(f"couldn't validate the identity of the API Server: {last_error}", 'preflight')
        time.sleep(min(5, max(0.1, timeout - (time.time() - started))))
    content = cm['data'].get('kubeconfig', '')
    if not content:
        raise PhaseError("couldn't validate the identity of the API Server: there is no kubeconfig key in the cluster-info "
                         "ConfigMap. This API Server isn't set up for token bootstrapping, can't connect", 'preflight')
    if not common.jws_valid(cm['data'][f'jws-kubeconfig-{token_id}'], content, token_id, secret):
        raise PhaseError("couldn't validate the identity of the API Server: failed to verify JWS signature of received cluster "
                         "info object, can't trust this API Server", 'preflight')
    info = common.yaml.safe_load(content)
    ca_pem = base64.b64decode(info['clusters'][0]['cluster']['certificate-authority-data'])
    if pins:
        actual = common.spki_hash(common.load_cert(ca_pem))
        if actual.lower() not in [p.lower() for p in pins]:
            raise PhaseError(f"couldn't validate the identity of the API Server: cluster CA found in cluster-info ConfigMap is "
                             f'invalid: none of the public keys "{actual}" are pinned', 'preflight')
        # Real kubeadm (discovery/token.go) fetches it again over validated TLS with the same retries until the
        # discovery timeout: behind a balancer the second request may reach an API server still starting.
        secure = common.Client(f'https://{endpoint}', ca_pem, timeout=10)
        while True:
            try:
                again = secure.request('GET', '/api/v1/namespaces/kube-public/configmaps/cluster-info')
                break
            except (common.ApiError, OSError) as error:
                if time.time() - started >= timeout:
                    raise PhaseError(f"couldn't validate the identity of the API Server: failed to request the cluster-info ConfigMap: {error}", 'preflight')
                time.sleep(min(5, max(0.1, timeout - (time.time() - started))))
        if again['data'].get('kubeconfig') != content:
            raise PhaseError("couldn't validate the identity of the API Server: the second kubeconfig from the cluster-info "
                             'ConfigMap (using validated TLS) was different from the first', 'preflight')
    return ca_pem


def cmd_join(argv: list[str]) -> None:
    values, positionals, given = parse_flags(argv, JOIN_SPEC)
    docs = {}
    if values.get('config'):
        bad = kconfig.mix_error(given, kconfig.JOIN_FLAGS_WITH_CONFIG)
        if bad:
            raise PhaseError(bad)
        docs = read_config(values['config'], 'joinconfiguration.go:106')
    join = docs.get('JoinConfiguration') or {}
    discovery = join.get('discovery') or {}
    bootstrap = discovery.get('bootstrapToken') or {}
    reg = join.get('nodeRegistration') or {}
    cp = join.get('controlPlane')
    endpoint = positionals[0] if positionals else bootstrap.get('apiServerEndpoint')
    token = values.get('discovery-token') or values.get('token') or bootstrap.get('token') or discovery.get('tlsBootstrapToken')
    pins = values.get('discovery-token-ca-cert-hash') or bootstrap.get('caCertHashes') or []
    unsafe = values.get('discovery-token-unsafe-skip-ca-verification') or bool(bootstrap.get('unsafeSkipCAVerification'))
    control_plane = bool(values.get('control-plane')) or cp is not None
    if not endpoint or not token:
        raise PhaseError('discovery: Invalid value: "": bootstrapToken or file must be set')
    if not pins and not unsafe:
        raise PhaseError('discovery.bootstrapToken: Invalid value: "": using token-based discovery without caCertHashes can be '
                         'unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass '
                         '--discovery-token-unsafe-skip-ca-verification flag to continue')
    if not control_plane and (values.get('certificate-key') or values.get('apiserver-advertise-address')):
        common.klog('W', 'join.go:387', '[preflight] WARNING: --control-plane is also required when passing control-plane '
                    'related flags such as [certificate-key, apiserver-advertise-address, apiserver-bind-port]')
    node = (values.get('node-name') or reg.get('name') or common.hostname()).lower()
    cri_socket = values.get('cri-socket') or reg.get('criSocket') or common.DEFAULT_CRI_SOCKET
    ignore = ignore_set(values, docs, 'JoinConfiguration')
    certificate_key = values.get('certificate-key') or (cp or {}).get('certificateKey') or ''
    local = (cp or {}).get('localAPIEndpoint') or {}
    advertise = values.get('apiserver-advertise-address') or local.get('advertiseAddress') or common.default_route_ip()
    bind_port = int(values.get('apiserver-bind-port') or local.get('bindPort') or 6443)
    api_host = kconfig.split_endpoint(endpoint, 6443)[0]
    out('[preflight] Running pre-flight checks')
    cri_err = preflight.cri_connect(cri_socket)
    try:
        preflight.run_checks(preflight.join_checks(node, cri_socket, api_host, control_plane, cri_err), ignore)
    except preflight.PreflightFailed:
        raise PhaseError('preflight checks failed', 'preflight')
    timeout_default = common.parse_duration(common._knob('discovery-timeout', 'STANDIN_DISCOVERY_TIMEOUT') or '5m0s')
    ca_pem = discover(endpoint, token, pins, unsafe, kconfig.timeout_of(docs, 'JoinConfiguration', 'discovery', timeout_default))
    tls_token = values.get('tls-bootstrap-token') or values.get('token') or discovery.get('tlsBootstrapToken') or token
    client = common.Client(f'https://{endpoint}', ca_pem, token=tls_token)
    out('[preflight] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...')
    out("[preflight] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.")
    try:
        remote = client.op('get_kubeadm_config')
    except (common.ApiError, OSError) as error:
        raise PhaseError(f'unable to fetch the kubeadm-config ConfigMap: {error}', 'preflight')
    cluster = common.yaml.safe_load(remote['kubeadm-config']['data']['ClusterConfiguration'])
    networking = cluster.get('networking') or {}
    cfg = {'kubernetesVersion': cluster['kubernetesVersion'], 'advertiseAddress': advertise, 'bindPort': bind_port,
           'controlPlaneEndpoint': cluster.get('controlPlaneEndpoint', ''), 'podSubnet': networking.get('podSubnet', ''),
           'serviceSubnet': networking.get('serviceSubnet', '10.96.0.0/12'), 'dnsDomain': networking.get('dnsDomain', 'cluster.local'),
           'nodeName': node, 'criSocket': cri_socket, 'certSANs': list((cluster.get('apiServer') or {}).get('certSANs') or []),
           'etcdDataDir': ((cluster.get('etcd') or {}).get('local') or {}).get('dataDir', '/var/lib/etcd'),
           'clusterName': cluster.get('clusterName', 'kubernetes'), 'kubeletExtraArgs': kconfig.extra_args(reg.get('kubeletExtraArgs')),
           'taints': reg.get('taints') if 'taints' in reg else ([{'key': 'node-role.kubernetes.io/control-plane', 'effect': 'NoSchedule'}] if control_plane else [])}
    if control_plane:
        if not cfg['controlPlaneEndpoint']:
            raise PhaseError("\none or more conditions for hosting a new control plane instance is not satisfied.\n\n"
                             "unable to add a new control plane instance to a cluster that doesn't have a stable "
                             "controlPlaneEndpoint address\n\nPlease ensure that:\n* The cluster has a stable "
                             "controlPlaneEndpoint address.\n* The certificates that must be shared among control plane "
                             "instances are provided.\n\n", 'preflight')
        out('[preflight] Running pre-flight checks before initializing the new control plane instance')
        try:
            preflight.run_checks(preflight.init_checks(cfg, True, cri_err), ignore)
            preflight.pull_images(cri_socket, cri_err)
        except preflight.PreflightFailed:
            raise PhaseError('preflight checks failed', 'preflight')
        if certificate_key:
            out('[download-certs] Downloading the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')
            download_certs(client, certificate_key)
        elif not os.path.exists(f'{PKI}/ca.key'):
            raise PhaseError(f"\none or more conditions for hosting a new control plane instance is not satisfied.\n\n"
                             f"[failure loading certificate for CA: couldn't load the certificate file {PKI}/ca.crt: open "
                             f"{PKI}/ca.crt: no such file or directory]\n\nPlease ensure that:\n* The cluster has a stable "
                             "controlPlaneEndpoint address.\n* The certificates that must be shared among control plane "
                             "instances are provided.\n\n", 'preflight')
        out(f'[certs] Using certificateDir folder "{PKI}"')
        generate_node_certs(cfg, True)
        out(f'[certs] Valid certificates and keys now exist in "{PKI}"')
        out('[certs] Using the existing "sa" key')
        out('[kubeconfig] Generating kubeconfig files')
        write_kubeconfigs(cfg, ['admin.conf', 'controller-manager.conf', 'scheduler.conf'])
        write_control_plane_manifests(cfg)
        out('[check-etcd] Checking that the etcd cluster is healthy')
    else:
        common.write_file(f'{PKI}/ca.crt', ca_pem)
    # kubelet-start
    common.write_file('/etc/kubernetes/bootstrap-kubelet.conf', common.dump_yaml(common.kubeconfig(
        f'https://{endpoint}', ca_pem, 'tls-bootstrap-token-user', token=tls_token, cluster=cfg['clusterName'])), 0o600)
    if not control_plane:
        common.write_file(f'{PKI}/ca.crt', ca_pem)
    out('[kubelet-start] Writing kubelet configuration to file "/var/lib/kubelet/config.yaml"')
    common.write_file(f'{common.KUBELET_DIR}/config.yaml', kubelet_config_yaml(service_ip(cfg['serviceSubnet'], 10), cfg['dnsDomain']))
    out('[kubelet-start] Writing kubelet environment file with flags to file "/var/lib/kubelet/kubeadm-flags.env"')
    flags = [f'--container-runtime-endpoint={cri_socket}', f'--pod-infra-container-image={PAUSE_IMAGE}']
    flags += [f'--{k}={v}' for k, v in sorted(cfg['kubeletExtraArgs'].items())]
    common.write_file(f'{common.KUBELET_DIR}/kubeadm-flags.env', f'KUBELET_KUBEADM_ARGS="{" ".join(flags)}"\n')
    out('[kubelet-start] Starting the kubelet')
    subprocess.run(['systemctl', 'restart', 'kubelet'], capture_output=True)
    wait_kubelet(kconfig.timeout_of(docs, 'JoinConfiguration', 'kubeletHealthCheck', 240))
    out('[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap')
    started = time.time()
    tls_timeout = kconfig.timeout_of(docs, 'JoinConfiguration', 'tlsBootstrap', 300)
    while not os.path.exists('/etc/kubernetes/kubelet.conf'):
        if time.time() - started > tls_timeout:
            raise PhaseError('error waiting for bootstrap: timed out waiting for the condition', 'kubelet-start')
        time.sleep(0.3)
    os.unlink('/etc/kubernetes/bootstrap-kubelet.conf')
    if not control_plane:
        out()
        out('This node has joined the cluster:')
        out('* Certificate signing request was sent to apiserver and a response was received.')
        out('* The Kubelet was informed of the new secure connection details.')
        out()
        out("Run 'kubectl get nodes' on the control-plane to see this node join the cluster.")
        out()
        return
    admin = admin_client()
    # etcd: join the existing cluster (the stand-in forwards to the first member)
    first = admin.op('get', kind='Pod', namespace='kube-system')
    members = [p for p in first if p['metadata']['name'].startswith('etcd-')]
    leader_ip = None
    for pod in members:
        for arg in pod['spec']['containers'][0].get('command', []):
            if arg.startswith('--initial-cluster-state=new'):
                leader_ip = next((a.split('=', 1)[1].split('://')[1].split(':')[0] for a in pod['spec']['containers'][0]['command']
                                  if a.startswith('--advertise-client-urls=')), None)
    initial = ','.join(f'{p["metadata"]["name"][5:]}=https://{ip}:2380' for p, ip in
                       [(p, next(a.split('://')[1].split(':')[0] for a in p['spec']['containers'][0]['command']
                                 if a.startswith('--advertise-client-urls='))) for p in members])
    if leader_ip is None:
        raise PhaseError('error creating local etcd static pod manifest file: etcdserver: no leader', 'control-plane-join/etcd')
    out('[etcd] Announced new etcd member joining to the existing etcd cluster')
    out(f'[etcd] Creating static Pod manifest for "etcd"')
    os.makedirs(cfg['etcdDataDir'], mode=0o700, exist_ok=True)
    write_etcd_manifest(cfg, f'{initial},{node}=https://{advertise}:2380' if initial else f'{node}=https://{advertise}:2380', 'existing')
    out('[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s')
    wait_control_plane(cfg, kconfig.timeout_of(docs, 'JoinConfiguration', 'controlPlaneComponentHealthCheck', 240))
    out(f'[mark-control-plane] Marking the node {node} as control-plane by adding the labels: '
        '[node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]')
    out(f'[mark-control-plane] Marking the node {node} as control-plane by adding the taints '
        f'[{" ".join(t["key"] + ":" + t["effect"] for t in cfg["taints"])}]')
    wait_node(admin, node)
    admin.op('patch_node', names=[node], addLabels={'node-role.kubernetes.io/control-plane': '',
                                                   'node.kubernetes.io/exclude-from-external-load-balancers': ''},
             addTaints=[{'key': t['key'], 'effect': t['effect']} for t in cfg['taints']])
    out()
    out('This node has joined the cluster and a new control plane instance was created:')
    out()
    out('* Certificate signing request was sent to apiserver and approval was received.')
    out('* The Kubelet was informed of the new secure connection details.')
    out('* Control plane label and taint were applied to the new node.')
    out('* The Kubernetes control plane instances scaled up.')
    out('* A new etcd member was added to the local/stacked etcd cluster.')
    out()
    out('To start administering your cluster from this node, you need to run the following as a regular user:')
    out()
    out('\tmkdir -p $HOME/.kube')
    out('\tsudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config')
    out('\tsudo chown $(id -u):$(id -g) $HOME/.kube/config')
    out()
    out("Run 'kubectl get nodes' to see this node join the cluster.")
    out()


def download_certs(client: common.Client, key_hex: str) -> None:
    phase = 'control-plane-prepare/download-certs'
    try:
        key = bytes.fromhex(key_hex)
    except ValueError as error:
        raise PhaseError(f'error downloading certs: error decoding certificate key: encoding/hex: {error}', phase)
    try:
        secret = client.op('get_certs_secret')
    except common.ApiError as error:
        if error.status == 404:
            raise PhaseError('error downloading certs: error downloading the secret: Secret "kubeadm-certs" was not found in the '
                             '"kube-system" Namespace. This Secret might have expired. Please, run `kubeadm init phase '
                             'upload-certs --upload-certs` on a control plane to generate a new one', phase)
        raise PhaseError(f'error downloading certs: error downloading the secret: {error}', phase)
    names = {'ca.crt': 'ca.crt', 'ca.key': 'ca.key', 'front-proxy-ca.crt': 'front-proxy-ca.crt',
             'front-proxy-ca.key': 'front-proxy-ca.key', 'sa.key': 'sa.key', 'sa.pub': 'sa.pub',
             'etcd-ca.crt': 'etcd/ca.crt', 'etcd-ca.key': 'etcd/ca.key'}
    decrypted = {}
    try:
        for name, data in secret['data'].items():
            decrypted[name] = common.decrypt_bytes(base64.b64decode(data), key) if len(key) in (16, 24, 32) else None
            if decrypted[name] is None:
                raise ValueError(f'crypto/aes: invalid key size {len(key)}')
    except ValueError as error:
        raise PhaseError(f'error downloading certs: error decoding secret data with provided key: {error}', phase)
    for name, path in names.items():
        common.write_file(f'{PKI}/{path}', decrypted[name], 0o600 if path.endswith('.key') else 0o644)


# ------------------------------------------------------------------ kubeadm token

def cmd_token(argv: list[str]) -> None:
    spec = {'kubeconfig': 'str', 'ttl': 'str', 'print-join-command': 'bool', 'usages': 'list', 'groups': 'list',
            'description': 'str', 'config': 'str', 'certificate-key': 'str', 'v': 'str', 'output': 'str', 'dry-run': 'bool'}
    values, positionals, _ = parse_flags(argv, spec)
    if not positionals:
        raise PhaseError('missing subcommand; "token" is not meant to be run on its own')
    sub, rest = positionals[0], positionals[1:]
    if sub == 'generate':
        out(common.random_token())
        return
    kubeconfig = values.get('kubeconfig') or ADMIN_CONF
    if sub == 'create':
        token = rest[0] if rest else common.random_token()
        if not common.TOKEN_RE.match(token):
            raise PhaseError(f'the bootstrap token "{token}" was not of the form "^([a-z0-9]{{6}})\\.([a-z0-9]{{16}})$"')
        ttl = common.parse_duration(values.get('ttl') or '24h0m0s')
        client = admin_client(kubeconfig)
        create_token(client, token, ttl, values.get('usages') or ['signing', 'authentication'],
                     values.get('groups') or DEFAULT_TOKEN_GROUPS, values.get('description', ''))
        if values.get('print-join-command'):
            info = client.request('GET', '/api/v1/namespaces/kube-public/configmaps/cluster-info')
            server = common.yaml.safe_load(info['data']['kubeconfig'])['clusters'][0]['cluster']['server']
            host_port = server.split('://', 1)[1]
            command = join_command(host_port, token, ca_hash_from_kubeconfig(kubeconfig), bool(values.get('certificate-key')),
                                   values.get('certificate-key', ''))
            out(command.replace('\\\n', '').replace('\t', ''))
        else:
            out(token)
        return
    if sub == 'list':
        client = admin_client(kubeconfig)
        rows = [['TOKEN', 'TTL', 'EXPIRES', 'USAGES', 'DESCRIPTION', 'EXTRA GROUPS']]
        for token in client.op('token_list'):
            expires = token.get('expiration')
            ttl = common.short_human_duration(common.parse_rfc3339(expires) - common.now()) if expires else '<forever>'
            usages = sorted(k[len('usage-bootstrap-'):] for k, v in token.items() if k.startswith('usage-bootstrap-') and v == 'true')
            rows.append([f'{token["token-id"]}.{token["token-secret"]}', ttl, expires or '<never>', ','.join(usages) or '<none>',
                         token.get('description') or '<none>', token.get('auth-extra-groups') or '<none>'])
        # Real outputs pad TTL as wide as "<forever>" even when every TTL is short (e.g. "23h").
        rows[0][1] = rows[0][1].ljust(9)
        sys.stdout.write(common.tabwrite(rows, minwidth=10, padding=3))
        return
    if sub == 'delete':
        if not rest:
            raise PhaseError('missing argument; \'token delete\' is missing token of form "[a-z0-9]{6}" or "[a-z0-9]{6}\\.[a-z0-9]{16}"')
        client = admin_client(kubeconfig)
        for item in rest:
            token_id = item.split('.')[0]
            if not re.fullmatch(r'[a-z0-9]{6}', token_id):
                raise PhaseError(f'given token didn\'t match pattern "[a-z0-9]{{6}}" or "[a-z0-9]{{6}}\\.[a-z0-9]{{16}}"')
            try:
                client.op('token_delete', id=token_id)
            except common.ApiError as error:
                raise PhaseError(f'failed to delete bootstrap token "{token_id}": {error}')
            out(f'bootstrap token "{token_id}" deleted')
        return
    raise PhaseError(f'unknown command "{sub}" for "kubeadm token"')


def ca_hash_from_kubeconfig(path: str) -> str:
    return common.spki_hash(common.load_cert(common.load_kubeconfig(path)['ca']))


# ------------------------------------------------------------------ kubeadm reset

def cmd_reset(argv: list[str]) -> None:
    values, _, _ = parse_flags(argv, {'force': 'bool', 'cri-socket': 'str', 'ignore-preflight-errors': 'list',
                                      'cleanup-tmp-dir': 'bool', 'kubeconfig': 'str', 'v': 'str', 'config': 'str',
                                      'dry-run': 'bool', 'skip-phases': 'list'})
    if not values.get('force'):
        sys.stdout.write('W{} {:>7} reset.go:141] [reset] WARNING: Changes made to this host by \'kubeadm init\' or \'kubeadm join\' will be reverted.\n'
                         .format(time.strftime('%m%d %H:%M:%S.000000'), os.getpid()))
        sys.stdout.write('[reset] Are you sure you want to proceed? [y/N]: ')
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ('y', 'yes'):
            raise PhaseError('won\'t proceed; the user didn\'t answer (Y|y) in order to continue', 'preflight')
    out('[preflight] Running pre-flight checks')
    etcd_manifest = f'{common.MANIFESTS_DIR}/etcd.yaml'
    data_dir = None
    if os.path.exists(etcd_manifest):
        common.klog('W', 'removeetcdmember.go:106', '[reset] No kubeadm config, using etcd pod spec to get data directory')
        data_dir = next((a.split('=', 1)[1] for a in common.yaml.safe_load(open(etcd_manifest))['spec']['containers'][0]['command']
                         if a.startswith('--data-dir=')), '/var/lib/etcd')
    else:
        out('[reset] No etcd config found. Assuming external etcd')
        out('[reset] Please, manually reset etcd to prevent further issues')
    out('[reset] Stopping the kubelet service')
    subprocess.run(['systemctl', 'stop', 'kubelet'], capture_output=True)
    # the static pods' "containers"
    subprocess.run(['systemctl', 'stop', 'kube-apiserver-standin', 'etcd-standin'], capture_output=True)
    if data_dir:
        if os.path.isdir(data_dir):
            for entry in os.listdir(data_dir):
                path = os.path.join(data_dir, entry)
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
        out(f'[reset] Deleted contents of the etcd data directory: {data_dir}')
    out('[reset] Unmounting mounted directories in "/var/lib/kubelet"')
    dirs = [common.MANIFESTS_DIR, common.KUBELET_DIR, PKI]
    for directory in dirs:
        if os.path.isdir(directory):
            for entry in os.listdir(directory):
                path = os.path.join(directory, entry)
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
    out(f'[reset] Deleting contents of directories: [{" ".join(dirs)}]')
    files = [f'/etc/kubernetes/{n}' for n in ('admin.conf', 'super-admin.conf', 'kubelet.conf', 'bootstrap-kubelet.conf',
                                              'controller-manager.conf', 'scheduler.conf')]
    for path in files:
        if os.path.lexists(path):
            os.unlink(path)
    out(f'[reset] Deleting files: [{" ".join(files)}]')
    out()
    out('The reset process does not perform cleanup of CNI plugin configuration,')
    out('network filtering rules and kubeconfig files.')
    out()
    out('For information on how to perform this cleanup manually, please see:')
    out('    https://k8s.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/')
    out()


# ------------------------------------------------------------------ kubeadm version

def cmd_version(argv: list[str]) -> None:
    values, _, _ = parse_flags(argv, {'output': 'str', 'v': 'str'})
    version = common.kube_version()
    major, minor, _ = common.version_tuple(version)
    info = {'major': str(major), 'minor': str(minor), 'emulationMajor': '', 'emulationMinor': '', 'minCompatibilityMajor': '',
            'minCompatibilityMinor': '', 'gitVersion': version, 'gitCommit': '0000000000000000000000000000000000000000',
            'gitTreeState': 'clean', 'buildDate': '2025-09-09T19:43:15Z', 'goVersion': 'go1.24.6', 'compiler': 'gc',
            'platform': 'linux/amd64'}
    output = values.get('output', '')
    if output == 'short':
        out(version)
    elif output == 'json':
        out(json.dumps({'clientVersion': info}, indent=2))
    elif output == 'yaml':
        sys.stdout.write(common.dump_yaml({'clientVersion': info}))
    elif output == '':
        fields = ', '.join(f'{k[0].upper() + k[1:]}:"{v}"' for k, v in info.items())
        out(f'kubeadm version: &version.Info{{{fields}}}')
    else:
        raise PhaseError(f'invalid output format: {output}')


# ------------------------------------------------------------------ kubeadm upgrade (kubeadm_upgrade.py)

def cmd_upgrade(argv: list[str]) -> None:
    import kubeadm_upgrade
    kubeadm_upgrade.main(sys.modules[__name__], argv)


# ------------------------------------------------------------------ kubeadm certs (kubeadm_certs.py)

def cmd_certs(argv: list[str]) -> None:
    import kubeadm_certs
    kubeadm_certs.main(sys.modules[__name__], argv)


def main() -> None:
    argv = sys.argv[1:]
    commands = {'init': cmd_init, 'join': cmd_join, 'token': cmd_token, 'reset': cmd_reset, 'version': cmd_version,
                'upgrade': cmd_upgrade, 'certs': cmd_certs}
    if not argv or argv[0] not in commands:
        if argv and not argv[0].startswith('-'):
            common.exit_with_error(f'unknown command "{argv[0]}" for "kubeadm"')
        out('Usage:\n  kubeadm [command]\n\nAvailable Commands:\n  certs\n  init\n  join\n  reset\n  token\n  upgrade\n  version')
        return
    try:
        commands[argv[0]](argv[1:])
    except FlagError as error:
        common.exit_with_error(str(error))
    except PhaseError as error:
        common.exit_with_error(f'error execution phase {error.phase}: {error}' if error.phase else str(error))
    except common.ApiError as error:
        common.exit_with_error(str(error))
    except OSError as error:
        common.exit_with_error(str(error))


if __name__ == '__main__':
    main()
