#!/usr/bin/python3
"""kubelet stand-in (a lab test double; see standin_common.py).

Like the real kubelet under kubelet.service it exits 1 (and systemd restarts it every 10 s)
while /var/lib/kubelet/config.yaml is missing or the CRI runtime does not answer, on an unknown
flag (pflag.py), on active swap with failSwapOn, and on a cgroup driver mismatch with
containerd (kubelet_node.py; test/lab/README.md says how that differs from the real one); once
configured it TLS-bootstraps with bootstrap-kubelet.conf when needed, registers its Node, posts
Ready only while containerd's CNI directory holds a network whose plugin binaries exist
(NotReady otherwise), runs the static Pods of /etc/kubernetes/manifests (etcd-pod: the real etcd, and the
kube-apiserver-standin services), plays CNI DaemonSet pods by installing their plugin and
writing their CNI config, and serves 127.0.0.1:10248/healthz and :10250.

It also plays the node's data plane, so a Service answers through its ClusterIP and cluster DNS
resolves as on a real node (see PodNetwork, proxy_rules and the pod servers below):
- the CNI (once its config is written): each running pod's IP on the bridge cni0, and a route to
  every other node's pod CIDR through that node's InternalIP (flannel's host-gw way);
- the containers of running pods whose image it knows: nginx answers HTTP on the pod IP with
  nginx's default page; CoreDNS answers DNS (UDP) on the pod IP from the Services;
- kube-proxy (while its DaemonSet pod runs on the node): iptables rules in the nat table's
  KUBE-SERVICES chain that DNAT a ClusterIP:port to the Ready endpoints (random choice, as kube-proxy's
  iptables mode does), and REJECT in the filter table for a Service without Ready endpoints.
"""
from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, '/usr/lib/capstan-standin')
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import kubelet_node as node_checks  # noqa: E402
import pflag  # noqa: E402
import standin_common as common  # noqa: E402

STATIC_SERVICES = {'etcd.yaml': 'etcd-pod.service', 'kube-apiserver.yaml': 'kube-apiserver-standin.service'}
# The kubelet flags the stand-in knows (pflag syntax, pflag.py); any other is refused as the real
# kubelet refuses it: `"command failed" err="failed to parse kubelet flag: unknown flag: --foo"`, exit 1.
VALUE_FLAGS = {'bootstrap-kubeconfig', 'kubeconfig', 'config', 'container-runtime-endpoint', 'node-ip', 'hostname-override',
               'pod-infra-container-image', 'v', 'node-labels', 'cgroup-driver', 'register-with-taints', 'cloud-provider',
               'resolv-conf', 'max-pods', 'provider-id', 'root-dir', 'runtime-request-timeout', 'pod-manifest-path'}
BOOL_FLAGS = {'fail-swap-on', 'register-node', 'rotate-certificates'}
SHORTHANDS = {'v': 'v'}


def fail(message: str) -> None:
    common.klog('E', 'run.go:72', f'"command failed" err={node_checks.go_quote(message)}')
    sys.exit(1)


def parse_args(argv):
    if any(item in ('--version', '-version') or item.startswith('--version=') for item in argv):
        print(f'Kubernetes {common.kube_version()}')
        sys.exit(0)
    try:
        args, positionals = pflag.parse(argv, VALUE_FLAGS, BOOL_FLAGS, SHORTHANDS)
    except pflag.FlagError as error:
        fail(f'failed to parse kubelet flag: {error}')
    if positionals:
        fail(f'unknown command {positionals[0]}')
    return args


def containerd_dump() -> str | None:
    """`containerd config dump`: the configuration containerd starts with (the file merged over the
    defaults); None when containerd is not installed or refuses its config."""
    try:
        result = subprocess.run(['containerd', 'config', 'dump'], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


class Runtime:
    """What the running containerd was started with, read again only when containerd (re)starts
    (its MainPID changes): a config edited without a restart does not count yet, as for real."""

    def __init__(self):
        self.pid = None
        self.settings = None

    def refresh(self) -> dict | None:
        """Reads the settings again if containerd restarted since the last call; returns them."""
        pid = subprocess.run(['systemctl', 'show', '-p', 'MainPID', '--value', 'containerd'], capture_output=True, text=True).stdout.strip()
        if pid != self.pid:
            dump = containerd_dump()
            try:
                self.settings = node_checks.runtime_settings(dump) if dump else None
            except ValueError:
                self.settings = None
            self.pid = pid
        return self.settings

    def current(self) -> dict:
        """The settings last read (empty when containerd's config could not be read)."""
        return self.settings or {}


def cgroup_driver_error(kubelet_driver: str, runtime: Runtime, log_fallback: bool) -> str | None:
    """Kubelet 1.34's getCgroupDriverFromCRI, then the mismatch: containerd 2.x reports its driver and
    the kubelet takes it (never a mismatch); containerd 1.x cannot (RuntimeConfig is unimplemented),
    so the kubelet keeps its own cgroupDriver. The real kubelet then runs on while its pods'
    sandboxes fail or are re-created; the stand-in exits instead (see test/lab/README.md)."""
    settings = runtime.refresh()
    if settings is None:
        return None
    runtime_driver = 'systemd' if settings['systemd_cgroup'] else 'cgroupfs'
    if node_checks.containerd_reports_cgroup_driver(common.containerd_version()):
        if log_fallback:
            common.klog('I', 'server.go:1358', f'"Using cgroup driver setting received from the CRI runtime" cgroupDriver="{runtime_driver}"')
        return None
    if log_fallback:
        common.klog('E', 'log.go:32', '"RuntimeConfig from runtime service failed" err="rpc error: code = Unimplemented desc = '
                    'unknown method RuntimeConfig for service runtime.v1.RuntimeService"')
        common.klog('I', 'server.go:1350', '"CRI implementation should be updated to support RuntimeConfig when KubeletCgroupDriverFromCRI '
                    'feature gate has been enabled. Falling back to using cgroupDriver from kubelet config."')
    symptom = node_checks.cgroup_driver_mismatch(kubelet_driver, settings['systemd_cgroup'])
    if symptom is None:
        return None
    common.klog('E', 'kuberuntime_sandbox.go:72', symptom)
    return (f'cgroup driver mismatch (stand-in): the kubelet uses "{kubelet_driver}", containerd\'s {settings["runtime"]} runtime '
            f'"{runtime_driver}" (SystemdCgroup = {str(settings["systemd_cgroup"]).lower()}); pods cannot run on this node')


def cni_not_ready(runtime: Runtime) -> str | None:
    """The NotReady message while containerd's CNI config directory has no network whose plugins are
    all in its CNI bin directories (containerd's conf_dir / bin_dir, /etc/cni/net.d and /opt/cni/bin
    by default); None when the network is ready."""
    settings = runtime.current()
    conf_dir = settings.get('cni_conf_dir', node_checks.DEFAULT_CNI_CONF_DIR)
    bin_dirs = settings.get('cni_bin_dirs', [node_checks.DEFAULT_CNI_BIN_DIR])
    configs = {}
    try:
        for name in os.listdir(conf_dir):
            text = common.read_text(os.path.join(conf_dir, name))
            if text is not None:
                configs[name] = text
    except OSError:
        pass
    missing = lambda types: [t for t in types if not any(os.access(os.path.join(d, t), os.X_OK) for d in bin_dirs)]
    return node_checks.cni_not_ready(configs, missing)


def health_server():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = b'ok'
            self.send_response(200 if self.path.startswith('/healthz') else 404)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    server = ThreadingHTTPServer(('127.0.0.1', 10248), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # :10250, the kubelet API port (answers 401 to everybody; it only has to be in use)
    api = ThreadingHTTPServer(('0.0.0.0', 10250), type('Api', (Handler,), {'do_GET': lambda self: (self.send_response(401), self.send_header('Content-Length', '0'), self.end_headers())}))
    if os.path.exists(f'{common.PKI_DIR}/apiserver.crt'):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(f'{common.PKI_DIR}/apiserver.crt', f'{common.PKI_DIR}/apiserver.key')
        api.socket = context.wrap_socket(api.socket, server_side=True)
    threading.Thread(target=api.serve_forever, daemon=True).start()


def tls_bootstrap(bootstrap_path: str, kubeconfig_path: str, node: str) -> None:
    """Client certificate from the bootstrap token (CSR auto-approved), then kubelet.conf pointing at it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    cfg = common.load_kubeconfig(bootstrap_path)
    client = common.Client(cfg['server'], cfg['ca'], token=cfg['token'])
    key = common.new_key()
    csr = (x509.CertificateSigningRequestBuilder().subject_name(common._name(f'system:node:{node}', ['system:nodes']))
           .sign(key, hashes.SHA256()))
    from cryptography.hazmat.primitives import serialization
    cert = client.op('csr', csr=csr.public_bytes(serialization.Encoding.PEM).decode())['certificate'].encode()
    pki = f'{common.KUBELET_DIR}/pki'
    stamp = time.strftime('%Y-%m-%d-%H-%M-%S')
    common.write_file(f'{pki}/kubelet-client-{stamp}.pem', cert + common.key_pem(key), 0o600)
    current = f'{pki}/kubelet-client-current.pem'
    if os.path.lexists(current):
        os.unlink(current)
    os.symlink(f'{pki}/kubelet-client-{stamp}.pem', current)
    config = common.kubeconfig(cfg['server'], cfg['ca'], 'default-auth', cert_file=current, cluster='default-cluster')
    config['contexts'][0]['name'] = 'default-context'
    config['current-context'] = 'default-context'
    common.write_file(kubeconfig_path, common.dump_yaml(config), 0o600)


def node_ip(args) -> str | None:
    return args.get('node-ip') or common.default_route_ip()


def static_pods(node: str) -> list[dict]:
    pods = []
    try:
        names = sorted(os.listdir(common.MANIFESTS_DIR))
    except OSError:
        return pods
    for name in names:
        if not name.endswith('.yaml'):
            continue
        try:
            pod = common.yaml.safe_load(open(os.path.join(common.MANIFESTS_DIR, name)))
        except (OSError, common.yaml.YAMLError):
            continue
        pod['metadata']['name'] = f'{pod["metadata"]["name"]}-{node}'
        pod['metadata'].setdefault('annotations', {})['kubernetes.io/config.mirror'] = 'standin'
        pod['spec']['nodeName'] = node
        pods.append(pod)
    return pods


RUN_DIR = '/run/capstan-standin'


def manifest_digest(path: str) -> str | None:
    try:
        with open(path, 'rb') as handle:
            return common.hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def sync_static_services() -> None:
    """Runs a static Pod's service while its manifest exists, and restarts it when the manifest
    changes (kubeadm upgrade rewrites it), as the kubelet replaces a static Pod whose manifest changed.
    The digest of the manifest each service was started with is kept in /run, across kubelet restarts."""
    for manifest, unit in STATIC_SERVICES.items():
        digest = manifest_digest(os.path.join(common.MANIFESTS_DIR, manifest))
        active = subprocess.run(['systemctl', 'is-active', '--quiet', unit]).returncode == 0
        record = os.path.join(RUN_DIR, f'{unit}.manifest-sha256')
        if digest and (not active or (common.read_text(record) or digest) != digest):
            subprocess.run(['systemctl', 'restart' if active else 'start', '--no-block', unit], capture_output=True)
        elif not digest and active:
            subprocess.run(['systemctl', 'stop', '--no-block', unit], capture_output=True)
        if digest:
            common.write_file(record, digest)


# The stand-in CNI plugin binary the installer puts in /opt/cni/bin for kubernetes-cni's plugins.
CNI_PLUGIN_STANDIN = '/usr/lib/capstan-standin/cni-plugin'


def play_cni_pods(pods: list[dict], runtime: Runtime) -> None:
    """A running CNI DaemonSet pod (one whose container or init container mounts the host's
    /etc/cni/net.d or a directory above it: node_checks.installs_cni_config) installs its plugin
    binary in the CNI bin directory, then writes its CNI config, as weave/calico/flannel's install
    steps do (once, when the config is missing: a plugin removed later stays missing, as it would
    until the pod restarts). The config names the plugin and portmap (kubernetes-cni's, which the
    kubelet package depends on)."""
    settings = runtime.current()
    conf_dir = settings.get('cni_conf_dir', node_checks.DEFAULT_CNI_CONF_DIR)
    bin_dir = settings.get('cni_bin_dirs', [node_checks.DEFAULT_CNI_BIN_DIR])[0]
    for pod in pods:
        refs = pod['metadata'].get('ownerReferences') or []
        if not refs or refs[0]['kind'] != 'DaemonSet' or pod['status'].get('phase') != 'Running':
            continue
        if not node_checks.installs_cni_config(pod['spec']):
            continue
        name = refs[0]['name']
        path = os.path.join(conf_dir, f'10-{name}.conflist')
        if not os.path.exists(path):
            with open(CNI_PLUGIN_STANDIN, 'rb') as plugin:
                common.write_file(os.path.join(bin_dir, name), plugin.read(), 0o755)
            common.write_file(path, json.dumps({'cniVersion': '1.0.0', 'name': name,
                                                'plugins': [{'type': name, 'standin': True}, {'type': 'portmap', 'capabilities': {'portMappings': True}}]}, indent=2) + '\n')


# ------------------------------------------------------------------ the node's data plane

NGINX_VERSION = '1.28.0'  # nginx:stable
NGINX_INDEX = b"""<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""
NGINX_404 = (b'<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n'
             b'<hr><center>nginx/' + NGINX_VERSION.encode() + b'</center>\r\n</body>\r\n</html>\r\n')
BRIDGE = 'cni0'
DNS_TTL = 5  # CoreDNS's kubernetes plugin default


def image_name(image: str) -> str:
    """registry/org/name:tag@digest -> name"""
    return image.split('@')[0].rsplit('/', 1)[-1].split(':')[0]


class NginxHandler(BaseHTTPRequestHandler):
    server_version = f'nginx/{NGINX_VERSION}'
    sys_version = ''
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def version_string(self):
        return self.server_version

    def _reply(self, head_only: bool):
        found = self.path.split('?')[0] in ('/', '/index.html')
        body = NGINX_INDEX if found else NGINX_404
        self.send_response(200 if found else 404)
        self.send_header('Content-Type', 'text/html')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self):
        self._reply(False)

    def do_HEAD(self):
        self._reply(True)


def dns_name(data: bytes, offset: int) -> tuple[str, int]:
    """A (possibly compressed) domain name at offset: (name, offset after it)."""
    labels, end, jumps = [], None, 0
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            jumps += 1
            if jumps > 20:
                raise ValueError('compression loop')
            continue
        offset += 1
        if length == 0:
            return '.'.join(labels), (end if end is not None else offset)
        labels.append(data[offset:offset + length].decode('ascii', 'replace'))
        offset += length


def dns_answer(query: bytes, zone: str, lookup) -> bytes | None:
    """CoreDNS's kubernetes plugin, for A queries: `<service>.<namespace>.svc.<zone>` → the ClusterIP
    (lookup(namespace, service) gives the addresses, [] for a Service without one, None when there is
    no such Service → NXDOMAIN). Other names in the zone → NXDOMAIN; names outside it would be forwarded
    to the node's resolv.conf, which the lab has none of → SERVFAIL."""
    import socket
    import struct
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack('>HHH', query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    name, end = dns_name(query, 12)
    qtype, qclass = struct.unpack('>HH', query[end:end + 4])
    question = query[12:end + 4]
    labels = name.lower().rstrip('.').split('.')
    zone_labels = zone.lower().rstrip('.').split('.')
    answers, rcode, authoritative = [], 0, 0
    if labels[-len(zone_labels):] != zone_labels:
        rcode = 2  # SERVFAIL: no upstream to forward to
    else:
        authoritative = 0x0400
        rest = labels[:-len(zone_labels)]
        addresses = lookup(rest[1], rest[0]) if len(rest) == 3 and rest[2] == 'svc' else None
        if addresses is None:
            rcode = 3  # NXDOMAIN
        elif qtype == 1 and qclass == 1:
            answers = [b'\xc0\x0c' + struct.pack('>HHIH', 1, 1, DNS_TTL, 4) + socket.inet_aton(a) for a in addresses]
    header = struct.pack('>HHHHHH', qid, 0x8000 | authoritative | (flags & 0x0100) | 0x0080 | rcode, 1, len(answers), 0, 0)
    return header + question + b''.join(answers)


class PodServers:
    """The containers of running pods on this node that answer on the network: nginx (HTTP on each
    containerPort, 80 without one) and CoreDNS (DNS over UDP on 53). Stopped when the pod stops running
    here or its IP changes."""

    def __init__(self):
        self.running: dict[str, tuple[str, list]] = {}  # pod uid -> (pod IP, servers)
        self.services: list[dict] = []
        self.endpoints: list[dict] = []
        self.zone = 'cluster.local'

    def lookup(self, namespace: str, name: str):
        for svc in self.services:
            if svc['metadata'].get('namespace') == namespace and svc['metadata']['name'] == name:
                ip = (svc.get('spec') or {}).get('clusterIP')
                if ip and ip != 'None':
                    return [ip]
                ep = next((e for e in self.endpoints if e['metadata'].get('namespace') == namespace and e['metadata']['name'] == name), {})
                return sorted({a['ip'] for s in ep.get('subsets') or [] for a in s.get('addresses') or []})  # headless
        return None

    def start(self, pod: dict, ip: str) -> list:
        servers = []
        for container in pod['spec'].get('containers') or []:
            image = image_name(container.get('image', ''))
            if image == 'nginx':
                for port in [p['containerPort'] for p in container.get('ports') or [] if p.get('protocol', 'TCP') == 'TCP'] or [80]:
                    server = ThreadingHTTPServer((ip, port), NginxHandler)
                    server.daemon_threads = True
                    threading.Thread(target=server.serve_forever, daemon=True).start()
                    servers.append(server)
            elif image == 'coredns':
                import socketserver
                owner = self
                class Dns(socketserver.BaseRequestHandler):
                    def handle(self):
                        data, sock = self.request
                        try:
                            reply = dns_answer(data, owner.zone, owner.lookup)
                        except (ValueError, IndexError, UnicodeError):
                            reply = None
                        if reply:
                            sock.sendto(reply, self.client_address)
                server = socketserver.ThreadingUDPServer((ip, 53), Dns)
                server.daemon_threads = True
                threading.Thread(target=server.serve_forever, daemon=True).start()
                servers.append(server)
        return servers

    def sync(self, pods: list[dict], state: dict) -> None:
        self.services, self.endpoints = state['services'], state['endpoints']
        match = re.search(r'^\s*kubernetes\s+(\S+)', state.get('corefile') or '', re.M)
        self.zone = match.group(1) if match else 'cluster.local'
        wanted = {p['metadata'].get('uid') or f"{p['metadata'].get('namespace')}/{p['metadata']['name']}": (p, p['status']['podIP']) for p in pods if pod_has_own_ip(p)}
        for uid, (ip, servers) in list(self.running.items()):
            if uid not in wanted or wanted[uid][1] != ip:
                for server in servers:
                    server.shutdown()
                    server.server_close()
                del self.running[uid]
        for uid, (pod, ip) in wanted.items():
            if uid not in self.running:
                try:
                    self.running[uid] = (ip, self.start(pod, ip))
                except OSError as err:  # the address is not on cni0 yet: the next round
                    common.klog('E', 'kuberuntime_manager.go:1256', f'"container start failed" pod="{pod["metadata"]["name"]}" err="{err}"')


def pod_has_own_ip(pod: dict) -> bool:
    return pod['status'].get('phase') == 'Running' and not pod['spec'].get('hostNetwork') and bool(pod['status'].get('podIP'))


def run_ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(['ip', *args], capture_output=True, text=True)


class PodNetwork:
    """The CNI's part once a CNI config exists: pod IPs on the bridge cni0, routes to the other nodes' pod CIDRs."""

    def __init__(self):
        self.routes: dict[str, str] = {}

    def sync(self, node: str, pods: list[dict], state: dict) -> None:
        if not common.cni_config_present():
            return
        if run_ip('link', 'show', BRIDGE).returncode != 0:
            run_ip('link', 'add', BRIDGE, 'type', 'bridge')
        run_ip('link', 'set', BRIDGE, 'up')
        current = set(re.findall(r'inet (\S+)/32', run_ip('-o', '-4', 'addr', 'show', 'dev', BRIDGE).stdout))
        wanted = {p['status']['podIP'] for p in pods if pod_has_own_ip(p)}
        for ip in wanted - current:
            run_ip('addr', 'add', f'{ip}/32', 'dev', BRIDGE)
        for ip in current - wanted:
            run_ip('addr', 'del', f'{ip}/32', 'dev', BRIDGE)
        for other in state['nodes']:
            cidr, via = other.get('podCIDR'), other.get('ip')
            if other['name'] == node or not cidr or not via or self.routes.get(cidr) == via:
                continue
            if run_ip('route', 'replace', cidr, 'via', via).returncode == 0:
                self.routes[cidr] = via


def proxy_rules(services: list[dict], endpoints: list[dict]) -> str:
    """kube-proxy's iptables rules (iptables-restore input, pure): per Service port, in nat KUBE-SERVICES,
    a DNAT to each Ready endpoint chosen at random (`-m statistic --probability 1/n`, then 1/(n-1), …,
    the last unconditional); a Service port without Ready endpoints is REJECTed in filter KUBE-SERVICES."""
    by_name = {(e['metadata'].get('namespace'), e['metadata']['name']): e for e in endpoints}
    nat, filt = [], []
    for svc in sorted(services, key=lambda s: (s['metadata'].get('namespace', ''), s['metadata']['name'])):
        spec = svc.get('spec') or {}
        ip = spec.get('clusterIP')
        if not ip or ip == 'None':
            continue
        ns, name = svc['metadata'].get('namespace'), svc['metadata']['name']
        subsets = (by_name.get((ns, name)) or {}).get('subsets') or []
        for port in spec.get('ports') or []:
            protocol = port.get('protocol', 'TCP').lower()
            label = f'{ns}/{name}' + (f':{port["name"]}' if port.get('name') else '')
            targets = sorted({f'{a["ip"]}:{p["port"]}' for s in subsets for p in s.get('ports') or []
                              if p.get('name') == port.get('name') and p.get('protocol', 'TCP').lower() == protocol
                              for a in s.get('addresses') or []})
            match = f'-d {ip}/32 -p {protocol} -m comment --comment "{label} cluster IP" -m {protocol} --dport {port["port"]}'
            if not targets:
                filt.append(f'-A KUBE-SERVICES {match.replace("cluster IP", "has no endpoints")} -j REJECT --reject-with icmp-port-unreachable')
            for index, target in enumerate(targets):
                left = len(targets) - index
                chance = f' -m statistic --mode random --probability {1 / left:.11f}' if left > 1 else ''
                nat.append(f'-A KUBE-SERVICES {match}{chance} -j DNAT --to-destination {target}')
    return '\n'.join(['*nat', ':KUBE-SERVICES - [0:0]', *nat, 'COMMIT', '*filter', ':KUBE-SERVICES - [0:0]', *filt, 'COMMIT']) + '\n'


class KubeProxy:
    """kube-proxy's iptables mode while its DaemonSet pod runs on this node (rules stay when it stops, as they do)."""

    JUMPS = [('nat', 'PREROUTING'), ('nat', 'OUTPUT'), ('filter', 'OUTPUT'), ('filter', 'FORWARD')]

    def __init__(self):
        self.applied = None

    def sync(self, pods: list[dict], state: dict) -> None:
        if not any((p['metadata'].get('ownerReferences') or [{}])[0].get('name') == 'kube-proxy'
                   and p['metadata'].get('namespace') == 'kube-system' and p['status'].get('phase') == 'Running' for p in pods):
            return
        rules = proxy_rules(state['services'], state['endpoints'])
        jumps_missing = False
        for table, chain in self.JUMPS:
            check = ['iptables', '-w', '-t', table, '-C', chain, '-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES']
            if subprocess.run(check, capture_output=True).returncode != 0:
                jumps_missing = True
        if rules == self.applied and not jumps_missing:
            return
        result = subprocess.run(['iptables-restore', '-w', '--noflush'], input=rules, capture_output=True, text=True)
        if result.returncode != 0:
            common.klog('E', 'proxier.go:1564', f'"Failed to execute iptables-restore" err="{result.stderr.strip()}"')
            return
        for table, chain in self.JUMPS:
            rule = ['-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES']
            if subprocess.run(['iptables', '-w', '-t', table, '-C', chain, *rule], capture_output=True).returncode != 0:
                subprocess.run(['iptables', '-w', '-t', table, '-I', chain, '1', *rule], capture_output=True)
        self.applied = rules


def main():
    args = parse_args(sys.argv[1:])
    config_path = args.get('config')
    if config_path and not os.path.exists(config_path):
        fail(f'failed to load kubelet config file, path: {config_path}, error: failed to load Kubelet config file {config_path}, '
             f'error failed to read kubelet config file "{config_path}", error: open {config_path}: no such file or directory')
    config = common.yaml.safe_load(open(config_path)) if config_path else {}
    endpoint = args.get('container-runtime-endpoint') or (config or {}).get('containerRuntimeEndpoint') or common.DEFAULT_CRI_SOCKET
    error = common.cri_error(endpoint)
    if error:
        fail(f'failed to run Kubelet: validate service connection: {error}')
    node = (args.get('hostname-override') or common.hostname()).lower()
    kubeconfig_path = args.get('kubeconfig')
    if not kubeconfig_path:
        fail('failed to run Kubelet: no kubeconfig given (standalone mode is not supported by the stand-in)')
    if not os.path.exists(kubeconfig_path):
        bootstrap = args.get('bootstrap-kubeconfig')
        if bootstrap and os.path.exists(bootstrap):
            try:
                tls_bootstrap(bootstrap, kubeconfig_path, node)
            except (common.ApiError, OSError) as err:
                fail(f'failed to run Kubelet: unable to load bootstrap kubeconfig: {err}')
        else:
            fail(f'failed to run Kubelet: unable to load bootstrap kubeconfig: stat {bootstrap}: no such file or directory')
    # As run() does after the client certificate: the cgroup driver from the CRI (or the kubelet's
    # own, cgroupfs by default; kubeadm writes systemd), then the container manager's swap check.
    kubelet_driver = args.get('cgroup-driver') or (config or {}).get('cgroupDriver') or 'cgroupfs'
    runtime = Runtime()
    mismatch = cgroup_driver_error(kubelet_driver, runtime, log_fallback=True)
    if mismatch:
        fail(f'failed to run Kubelet: {mismatch}')
    fail_swap_on = args['fail-swap-on'] if 'fail-swap-on' in args else (config or {}).get('failSwapOn', True) is not False
    swap = node_checks.swap_error(common.read_text('/proc/swaps'), fail_swap_on)
    if swap:
        fail(f'failed to run Kubelet: {swap}')
    health_server()
    client = common.client_from_kubeconfig(kubeconfig_path)
    labels = {'beta.kubernetes.io/arch': 'amd64', 'beta.kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64',
              'kubernetes.io/hostname': node, 'kubernetes.io/os': 'linux'}
    for item in (args.get('node-labels') or '').split(','):
        if '=' in item:
            key, value = item.split('=', 1)
            labels[key] = value
    network, servers, proxy = PodNetwork(), PodServers(), KubeProxy()
    registered = False
    last_beat = 0.0
    last_ready = None
    while True:
        sync_static_services()
        ip = node_ip(args)
        cri = common.cri_error(endpoint)
        if cri is None:
            # containerd restarted with another cgroup driver: this kubelet's pods cannot run any more.
            mismatch = cgroup_driver_error(kubelet_driver, runtime, log_fallback=False)
            if mismatch:
                fail(f'failed to run Kubelet: {mismatch}')
        network_error = cni_not_ready(runtime) if cri is None else None
        ready = cri is None and network_error is None
        if cri:
            reason, message = 'KubeletNotReady', f'container runtime is down, PLEG is not healthy: {cri}'
        elif network_error:
            reason, message = 'KubeletNotReady', network_error
        else:
            reason, message = 'KubeletReady', 'kubelet is posting ready status'
        try:
            if not registered:
                client.op('register_node', node={'apiVersion': 'v1', 'kind': 'Node',
                                                 'metadata': {'name': node, 'labels': labels,
                                                              'annotations': {'kubeadm.alpha.kubernetes.io/cri-socket': endpoint}},
                                                 'spec': {}, 'status': {}})
                registered = True
            if ready != last_ready or time.time() - last_beat >= 10:
                info = {'kubeletVersion': common.kube_version(), 'osImage': common.os_image(), 'kernelVersion': os.uname().release,
                        'containerRuntimeVersion': common.containerd_version(), 'operatingSystem': 'linux', 'architecture': 'amd64'}
                cpus = str(os.cpu_count())
                memory = f'{os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024}Ki'
                client.op('node_status', name=node, ready=ready, reason=reason, message=message,
                          addresses=[{'type': 'InternalIP', 'address': ip}, {'type': 'Hostname', 'address': node}],
                          nodeInfo=info, capacity={'cpu': cpus, 'memory': memory, 'pods': '110'},
                          allocatable={'cpu': cpus, 'memory': memory, 'pods': '110'})
                last_beat, last_ready = time.time(), ready
            client.op('set_mirror_pods', node=node, pods=static_pods(node))
            pods = client.op('node_pods', node=node)
            play_cni_pods(pods, runtime)
            state = client.op('proxy_state')
            network.sync(node, pods, state)
            servers.sync(pods, state)
            proxy.sync(pods, state)
        except (common.ApiError, OSError) as err:
            common.klog('E', 'kubelet_node_status.go:548', f'"Error updating node status, will retry" err="{err}"')
        time.sleep(2)


if __name__ == '__main__':
    main()
