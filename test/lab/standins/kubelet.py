#!/usr/bin/python3
"""kubelet stand-in (a lab test double; see standin_common.py).

Like the real kubelet under kubelet.service it exits 1 (and systemd restarts it every 10 s)
while /var/lib/kubelet/config.yaml is missing or the CRI runtime does not answer; once
configured it TLS-bootstraps with bootstrap-kubelet.conf when needed, registers its Node,
posts Ready only while a CNI config exists in /etc/cni/net.d (NotReady otherwise), runs the
static Pods of /etc/kubernetes/manifests (as the etcd-standin and kube-apiserver-standin
services), plays CNI DaemonSet pods by writing their CNI config, and serves
127.0.0.1:10248/healthz and :10250.
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
import standin_common as common  # noqa: E402

STATIC_SERVICES = {'etcd.yaml': 'etcd-standin.service', 'kube-apiserver.yaml': 'kube-apiserver-standin.service'}
FLAGS = {'bootstrap-kubeconfig', 'kubeconfig', 'config', 'container-runtime-endpoint', 'node-ip', 'hostname-override',
         'pod-infra-container-image', 'v', 'node-labels', 'cgroup-driver', 'fail-swap-on', 'register-with-taints',
         'cloud-provider', 'resolv-conf', 'max-pods', 'provider-id', 'root-dir'}


def fail(message: str) -> None:
    common.klog('E', 'run.go:72', f'"command failed" err="{message}"')
    sys.exit(1)


def parse_args(argv):
    args = {}
    for item in argv:
        if item in ('--version', '-version'):
            print(f'Kubernetes {common.kube_version()}')
            sys.exit(0)
        if not item.startswith('--'):
            continue
        name, _, value = item[2:].partition('=')
        if name not in FLAGS:
            fail(f'failed to parse kubelet flag: unknown flag: --{name}')
        args[name] = value
    return args


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


def sync_static_services() -> None:
    for manifest, unit in STATIC_SERVICES.items():
        exists = os.path.exists(os.path.join(common.MANIFESTS_DIR, manifest))
        active = subprocess.run(['systemctl', 'is-active', '--quiet', unit]).returncode == 0
        if exists and not active:
            subprocess.run(['systemctl', 'start', '--no-block', unit], capture_output=True)
        elif not exists and active:
            subprocess.run(['systemctl', 'stop', '--no-block', unit], capture_output=True)


def play_cni_pods(pods: list[dict]) -> None:
    """A CNI DaemonSet pod (one mounting /etc/cni/net.d from the host) writes its CNI config, as weave/calico/flannel do."""
    for pod in pods:
        refs = pod['metadata'].get('ownerReferences') or []
        if not refs or refs[0]['kind'] != 'DaemonSet' or pod['status'].get('phase') != 'Running':
            continue
        volumes = pod['spec'].get('volumes') or []
        if not any((v.get('hostPath') or {}).get('path', '').rstrip('/') in ('/etc/cni/net.d', '/etc/cni') for v in volumes):
            continue
        name = refs[0]['name']
        path = os.path.join(common.CNI_DIR, f'10-{name}.conflist')
        if not os.path.exists(path):
            common.write_file(path, json.dumps({'cniVersion': '1.0.0', 'name': name,
                                                'plugins': [{'type': name, 'standin': True}, {'type': 'portmap', 'capabilities': {'portMappings': True}}]}, indent=2) + '\n')


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
    health_server()
    client = common.client_from_kubeconfig(kubeconfig_path)
    labels = {'beta.kubernetes.io/arch': 'amd64', 'beta.kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64',
              'kubernetes.io/hostname': node, 'kubernetes.io/os': 'linux'}
    for item in (args.get('node-labels') or '').split(','):
        if '=' in item:
            key, value = item.split('=', 1)
            labels[key] = value
    registered = False
    last_beat = 0.0
    last_ready = None
    while True:
        sync_static_services()
        ip = node_ip(args)
        cri = common.cri_error(endpoint)
        cni = common.cni_config_present()
        ready = cri is None and cni
        if cri:
            reason, message = 'KubeletNotReady', f'container runtime is down, PLEG is not healthy: {cri}'
        elif not cni:
            reason, message = 'KubeletNotReady', ('container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady '
                                                  'message:Network plugin returns error: cni plugin not initialized')
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
            play_cni_pods(client.op('node_pods', node=node))
        except (common.ApiError, OSError) as err:
            common.klog('E', 'kubelet_node_status.go:548', f'"Error updating node status, will retry" err="{err}"')
        time.sleep(2)


if __name__ == '__main__':
    main()
