#!/usr/bin/python3
"""The kube-apiserver stand-in (a test double; see standin_common.py).

The etcd it stores through is the REAL one (Debian's etcd-server, run by etcd_pod.py for the etcd
static Pod manifest), one key per object (EtcdStore).

`kube-apiserver-standin --manifest /etc/kubernetes/manifests/kube-apiserver.yaml` serves HTTPS on
--secure-port with --tls-cert-file, authenticates client certificates signed by --client-ca-file
and bootstrap tokens, answers /healthz /livez /readyz /version and the cluster-info ConfigMap as
the real one does, and a small RPC (/standin/v1/op) that the kubeadm/kubelet/kubectl stand-ins
use. It also plays the controllers that matter on our paths: the token cleaner, the bootstrap
signer, garbage collection of kubeadm-certs, node lifecycle (heartbeats, not-ready taints), and a
scheduler for Deployments and DaemonSets. kube-controller-manager and kube-scheduler health
endpoints (127.0.0.1:10257 and :10259) are served by the same process.
"""
from __future__ import annotations

import base64
import copy
import ipaddress
import json
import os
import re
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, '/usr/lib/capstan-standin')
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import standin_common as common  # noqa: E402

NODE_GRACE_SECONDS = 40


def manifest_args(path: str) -> dict:
    """The --flag=value arguments of the first container of a static Pod manifest."""
    with open(path) as handle:
        pod = common.yaml.safe_load(handle)
    args = {}
    for item in pod['spec']['containers'][0].get('command', [])[1:]:
        if item.startswith('--') and '=' in item:
            key, value = item[2:].split('=', 1)
            args[key] = value
    return args


def server_context(cert: str, key: str, client_ca: str, require: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(client_ca)
    context.verify_mode = ssl.CERT_REQUIRED if require else ssl.CERT_OPTIONAL
    return context


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    app = None  # set per server

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, status: int, body, content_type='application/json'):
        data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get('Content-Length') or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def _peer(self):
        try:
            der = self.connection.getpeercert(binary_form=True)
        except (AttributeError, ValueError):
            der = None
        if not der:
            return None
        from cryptography import x509
        return common.cert_subject(x509.load_der_x509_certificate(der))

    def do_GET(self):
        self.app.handle(self, 'GET')

    def do_POST(self):
        self.app.handle(self, 'POST')

    def do_PUT(self):
        self.app.handle(self, 'PUT')


def serve(address: str, port: int, context: ssl.SSLContext | None, app) -> ThreadingHTTPServer:
    handler = type('BoundHandler', (Handler,), {'app': app})
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def status_body(code: int, reason: str, message: str) -> dict:
    return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure', 'message': message,
            'reason': reason, 'code': code}


# ==================================================================== kube-apiserver

def key_of(kind: str, group: str, namespace: str | None, name: str) -> str:
    return f'{kind}.{group}/{namespace or ""}/{name}'


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def tolerates(tolerations: list, taint: dict) -> bool:
    for tol in tolerations or []:
        if tol.get('effect') and tol['effect'] != taint.get('effect'):
            continue
        if tol.get('operator') == 'Exists':
            if not tol.get('key') or tol['key'] == taint.get('key'):
                return True
        elif tol.get('key') == taint.get('key') and (tol.get('value') or '') == (taint.get('value') or ''):
            return True
    return False


def schedulable(node: dict, pod_spec: dict) -> bool:
    if node.get('spec', {}).get('unschedulable'):
        return False
    for taint in node.get('spec', {}).get('taints') or []:
        if taint.get('effect') in ('NoSchedule', 'NoExecute') and not tolerates(pod_spec.get('tolerations'), taint):
            return False
    selector = pod_spec.get('nodeSelector') or {}
    labels = node['metadata'].get('labels') or {}
    return all(labels.get(k) == v for k, v in selector.items())


# What the DaemonSet controller adds to every daemon pod: it stays on a node that goes NotReady or unreachable.
DAEMON_TOLERATIONS = [{'key': 'node.kubernetes.io/not-ready', 'operator': 'Exists', 'effect': 'NoExecute'},
                      {'key': 'node.kubernetes.io/unreachable', 'operator': 'Exists', 'effect': 'NoExecute'}]


def daemon_pod_evicted(node: dict, pod_spec: dict) -> bool:
    """A running daemon pod goes only when its node stops matching its nodeSelector or gets a NoExecute
    taint it does not tolerate; NoSchedule taints (not-ready, cordon, control-plane) keep new pods
    off, and do not evict (the pod stays, not Ready, on a NotReady node)."""
    labels = node['metadata'].get('labels') or {}
    if not all(labels.get(k) == v for k, v in (pod_spec.get('nodeSelector') or {}).items()):
        return True
    tolerations = (pod_spec.get('tolerations') or []) + DAEMON_TOLERATIONS
    return any(t.get('effect') == 'NoExecute' and not tolerates(tolerations, t) for t in node.get('spec', {}).get('taints') or [])


def node_ready(node: dict) -> bool:
    for cond in node.get('status', {}).get('conditions') or []:
        if cond['type'] == 'Ready':
            return cond['status'] == 'True'
    return False


class EtcdStore:
    """The cluster state in a REAL etcd (v3) over TLS, through etcd's JSON gateway (/v3/kv/range,
    /v3/kv/txn), one key per object as the real API server lays them out (/registry/<resource>/
    [<namespace>/]<name>; the values are JSON, not protobuf). Writes are optimistic: a transaction
    compares every key it changes with the mod_revision it read (create_revision 0 for new keys)
    and the whole change is retried on conflict. Requests go to the first --etcd-servers entry that
    answers; an unreachable server is skipped (failover), as etcd's client does."""

    SERIAL_KEY = '/capstan-standin/serial'  # the stand-in's uid counter, outside /registry

    def __init__(self, servers: list[str], ca: bytes, cert: bytes, key: bytes, prefix: str = '/registry',
                 transformer=None):
        self.servers = servers
        self.clients = [common.Client(server, ca, cert, key, timeout=5) for server in servers]
        self.prefix = prefix.rstrip('/')
        self.transformer = transformer  # (encrypt(etcd_key, bytes) -> bytes, decrypt(etcd_key, bytes) -> bytes) or None
        self.preferred = 0

    # the gateway ----------------------------------------------------------------------------

    def _post(self, path: str, body: dict) -> dict:
        errors = []
        order = list(range(self.preferred, len(self.clients))) + list(range(0, self.preferred))
        for index in order:
            try:
                result = self.clients[index].request('POST', path, body)
                self.preferred = index
                return result
            except (OSError, ValueError) as error:  # unreachable or TLS refused: the next server
                errors.append(f'{self.servers[index]}: {error}')
        raise ConnectionError('all etcd servers failed: ' + '; '.join(errors))

    @staticmethod
    def _b64(data: bytes | str) -> str:
        return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()

    def health(self) -> None:
        """Raises when no etcd server answers (the API server's etcd health check)."""
        self._post('/v3/kv/range', {'key': self._b64('health'), 'serializable': False})

    def server_health(self, index: int) -> tuple[bool, str]:
        """GET /health on one etcd server: (healthy, the body or the error)."""
        try:
            body = self.clients[index].request('GET', '/health')
            text = json.dumps(body, separators=(',', ':')) if isinstance(body, dict) else str(body)
            return (isinstance(body, dict) and body.get('health') == 'true'), text
        except (OSError, ValueError, common.ApiError) as error:
            return False, str(error)

    # objects <-> keys -----------------------------------------------------------------------

    def etcd_key(self, obj: dict) -> str:
        kind, group = obj['kind'], common.group_of(obj['apiVersion'])
        meta = obj['metadata']
        resource = ETCD_RESOURCE.get(kind) or plural_of(kind)
        if group and group not in BUILTIN_GROUPS:
            resource = f'{group}/{resource}'
        ns = meta.get('namespace')
        return f'{self.prefix}/{resource}/{ns}/{meta["name"]}' if ns else f'{self.prefix}/{resource}/{meta["name"]}'

    def _load(self):
        """All objects at one revision: ({key_of: obj}, {key_of: (etcd key, mod_revision)}, serial, serial_rev)."""
        result = self._post('/v3/kv/range', {'key': self._b64('\0'), 'range_end': self._b64('\0')})
        objects, revisions, serial, serial_rev = {}, {}, 0, 0
        for kv in result.get('kvs') or []:
            key = base64.b64decode(kv['key']).decode()
            value = base64.b64decode(kv.get('value') or '')
            if key == self.SERIAL_KEY:
                serial, serial_rev = int(value or b'0'), int(kv.get('mod_revision', 0))
                continue
            if not key.startswith(self.prefix + '/'):
                continue
            if self.transformer is not None:
                value = self.transformer[1](key, value)
            try:
                obj = json.loads(value)
            except ValueError:
                continue  # not ours (e.g. a real API server's protobuf)
            ref = key_of(obj['kind'], common.group_of(obj['apiVersion']), obj['metadata'].get('namespace'), obj['metadata']['name'])
            objects[ref] = obj
            revisions[ref] = (key, int(kv.get('mod_revision', 0)))
        return objects, revisions, serial, serial_rev

    def read(self) -> dict:
        objects, _, serial, _ = self._load()
        return {'objects': objects, 'serial': serial}

    def transact(self, fn):
        for _ in range(50):
            objects, revisions, serial, serial_rev = self._load()
            current = {'objects': objects, 'serial': serial}
            state = copy.deepcopy(current)
            result = fn(state)
            compare, success = [], []
            for ref, obj in state['objects'].items():
                if ref in objects and objects[ref] == obj:
                    continue
                key = self.etcd_key(obj)
                value = json.dumps(obj, sort_keys=True).encode()
                if self.transformer is not None:
                    value = self.transformer[0](key, value)
                if ref in revisions:
                    compare.append({'key': self._b64(revisions[ref][0]), 'target': 'MOD', 'result': 'EQUAL',
                                    'mod_revision': str(revisions[ref][1])})
                    if revisions[ref][0] != key:
                        success.append({'request_delete_range': {'key': self._b64(revisions[ref][0])}})
                else:
                    compare.append({'key': self._b64(key), 'target': 'CREATE', 'result': 'EQUAL', 'create_revision': '0'})
                success.append({'request_put': {'key': self._b64(key), 'value': self._b64(value)}})
            for ref in objects:
                if ref not in state['objects']:
                    compare.append({'key': self._b64(revisions[ref][0]), 'target': 'MOD', 'result': 'EQUAL',
                                    'mod_revision': str(revisions[ref][1])})
                    success.append({'request_delete_range': {'key': self._b64(revisions[ref][0])}})
            if state.get('serial', 0) != serial:
                compare.append({'key': self._b64(self.SERIAL_KEY), 'target': 'MOD', 'result': 'EQUAL', 'mod_revision': str(serial_rev)})
                success.append({'request_put': {'key': self._b64(self.SERIAL_KEY), 'value': self._b64(str(state['serial']))}})
            if not success:
                return result
            answer = self._post('/v3/kv/txn', {'compare': compare, 'success': success})
            if answer.get('succeeded'):
                return result
            time.sleep(0.05)
        raise common.ApiError(500, 'too many conflicts')


# How the real API server names its etcd keys where it is not the lower-case plural of the kind.
ETCD_RESOURCE = {'Node': 'minions', 'Service': 'services/specs', 'Endpoints': 'services/endpoints', 'Ingress': 'ingress',
                 'CustomResourceDefinition': 'apiextensions.k8s.io/customresourcedefinitions',
                 'APIService': 'apiregistration.k8s.io/apiservices'}
BUILTIN_GROUPS = {'', 'apps', 'batch', 'policy', 'autoscaling', 'rbac.authorization.k8s.io', 'coordination.k8s.io',
                  'networking.k8s.io', 'storage.k8s.io', 'certificates.k8s.io', 'scheduling.k8s.io', 'discovery.k8s.io',
                  'node.k8s.io', 'admissionregistration.k8s.io', 'flowcontrol.apiserver.k8s.io', 'events.k8s.io',
                  'apiextensions.k8s.io', 'apiregistration.k8s.io'}


def plural_of(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith('y') and lower[-2:-1] not in 'aeiou':
        return lower[:-1] + 'ies'
    if lower.endswith(('s', 'x', 'ch', 'sh')):
        return lower + 'es'
    return lower + 's'


# Versions of API groups that a recent API server no longer serves: (group/version, last minor serving it).
REMOVED_VERSIONS = {'rbac.authorization.k8s.io/v1beta1': 21, 'rbac.authorization.k8s.io/v1alpha1': 21,
                    'extensions/v1beta1': 15, 'apps/v1beta1': 15, 'apps/v1beta2': 15, 'policy/v1beta1': 24,
                    'batch/v1beta1': 24, 'networking.k8s.io/v1beta1': 21, 'storage.k8s.io/v1beta1': 21,
                    'apiextensions.k8s.io/v1beta1': 21, 'coordination.k8s.io/v1beta1': 21}

HEALTH_CHECKS = ['ping', 'log', 'etcd', 'poststarthook/start-apiserver-admission-initializer',
                 'poststarthook/generic-apiserver-start-informers', 'poststarthook/start-apiextensions-informers',
                 'poststarthook/start-apiextensions-controllers', 'poststarthook/crd-informer-synced',
                 'poststarthook/bootstrap-controller', 'poststarthook/rbac/bootstrap-roles',
                 'poststarthook/scheduling/bootstrap-system-priority-classes', 'poststarthook/start-cluster-authentication-info-controller',
                 'poststarthook/aggregator-reload-proxy-client-cert', 'poststarthook/apiservice-registration-controller',
                 'autoregister-completion']


def health_body(endpoint: str, failed: set[str], verbose: bool) -> tuple[int, str]:
    """The body of /healthz, /livez or /readyz as the real server prints it (verbose on failure)."""
    checks = [c for c in HEALTH_CHECKS if not (endpoint == 'livez' and c == 'etcd')]
    if endpoint == 'readyz':
        checks.insert(checks.index('etcd') + 1, 'etcd-readiness')
        checks.append('shutdown')
    if not failed.intersection(checks):
        if not verbose:
            return 200, 'ok'
        lines = [f'[+]{c} ok' for c in checks]
        return 200, '\n'.join(lines) + f'\n{endpoint} check passed\n'
    lines = [f'[-]{c} failed: reason withheld' if c in failed else f'[+]{c} ok' for c in checks]
    return 500, '\n'.join(lines) + f'\n{endpoint} check failed\n'


class ApiServerApp:
    def __init__(self, args: dict, store=None, version: str | None = None):
        self.args = args
        self.version = version or common.kube_version()
        if store is None:
            with open(args['etcd-cafile'], 'rb') as a, open(args['etcd-certfile'], 'rb') as b, open(args['etcd-keyfile'], 'rb') as c:
                store = EtcdStore([s for s in args.get('etcd-servers', 'https://127.0.0.1:2379').split(',') if s], a.read(), b.read(),
                                  c.read(), prefix=args.get('etcd-prefix', '/registry'))
        self.store = store
        with open(args['client-ca-file'], 'rb') as handle:
            self.ca_pem = handle.read()
        self.ca_cert = common.load_cert(self.ca_pem)
        # kubeadm keeps the CA key beside the CA (ca.key) and the stand-in signs kubelet CSRs with it;
        # the hard way's API server has no CA key (ca-key.pem stays with the controller manager).
        ca_key_path = os.path.join(os.path.dirname(args['client-ca-file']), 'ca.key')
        self.ca_key = common.load_key(open(ca_key_path, 'rb').read()) if os.path.exists(ca_key_path) else None
        self.pod_network = None

    # ------------------------------------------------------------ authentication

    def authenticate(self, req: Handler, state: dict | None = None):
        peer = req._peer()
        if peer:
            cn, orgs = peer
            return {'name': cn, 'groups': orgs}
        header = req.headers.get('Authorization', '')
        if header.startswith('Bearer '):
            match = common.TOKEN_RE.match(header[7:].strip())
            if match:
                state = state if state is not None else self.store.read()
                secret = state['objects'].get(key_of('Secret', '', 'kube-system', f'bootstrap-token-{match.group(1)}'))
                if secret and not self.token_expired(secret) and unb64(secret['data']['token-secret']) == match.group(2):
                    return {'name': f'system:bootstrap:{match.group(1)}', 'groups': ['system:bootstrappers'], 'bootstrap': True}
            return 'invalid'
        return None

    # ------------------------------------------------------------ controllers

    @staticmethod
    def token_expired(secret: dict) -> bool:
        expiration = (secret.get('data') or {}).get('expiration')
        return bool(expiration) and common.parse_rfc3339(unb64(expiration)) <= common.now()

    def reconcile(self, state: dict) -> None:
        objects = state['objects']
        now = common.now()
        # token cleaner: expired bootstrap tokens are deleted
        for key, obj in list(objects.items()):
            if obj['kind'] == 'Secret' and obj.get('type') == 'bootstrap.kubernetes.io/token' and self.token_expired(obj):
                del objects[key]
        # garbage collector: objects owned by a deleted Secret (kubeadm-certs is owned by a TTL token)
        for key, obj in list(objects.items()):
            for ref in obj['metadata'].get('ownerReferences') or []:
                if ref.get('kind') == 'Secret' and key_of('Secret', '', obj['metadata'].get('namespace'), ref['name']) not in objects:
                    del objects[key]
                    break
        # node lifecycle: stale heartbeats make Ready Unknown; taints follow the Ready condition
        nodes = [o for o in objects.values() if o['kind'] == 'Node']
        for node in nodes:
            ready = None
            for cond in node.setdefault('status', {}).setdefault('conditions', []):
                if cond['type'] == 'Ready':
                    ready = cond
            if ready and ready['status'] != 'Unknown' and now - common.parse_rfc3339(ready['lastHeartbeatTime']) > NODE_GRACE_SECONDS:
                ready.update({'status': 'Unknown', 'reason': 'NodeStatusUnknown',
                              'message': 'Kubelet stopped posting node status.', 'lastTransitionTime': common.rfc3339(now)})
            taints = [t for t in node['spec'].get('taints') or []
                      if t['key'] not in ('node.kubernetes.io/not-ready', 'node.kubernetes.io/unreachable')]
            if not ready or ready['status'] == 'False':
                taints.append({'key': 'node.kubernetes.io/not-ready', 'effect': 'NoSchedule'})
            elif ready['status'] == 'Unknown':
                taints.append({'key': 'node.kubernetes.io/unreachable', 'effect': 'NoSchedule'})
            if taints:
                node['spec']['taints'] = taints
            else:
                node['spec'].pop('taints', None)
        node_names = {n['metadata']['name'] for n in nodes}
        pods = {k: o for k, o in objects.items() if o['kind'] == 'Pod'}
        # pods on deleted nodes go away (static mirror pods and daemon pods included)
        for key, pod in list(pods.items()):
            if pod['spec'].get('nodeName') and pod['spec']['nodeName'] not in node_names:
                del objects[key]
                del pods[key]
        # DaemonSets: one pod per eligible node
        for ds in [o for o in objects.values() if o['kind'] == 'DaemonSet']:
            ns, name = ds['metadata'].get('namespace', 'default'), ds['metadata']['name']
            spec = ds['spec']['template'].get('spec', {})
            owned = {p['spec'].get('nodeName'): k for k, p in pods.items() if self.owner(p) == ('DaemonSet', name)
                     and p['metadata'].get('namespace') == ns}
            for node in nodes:
                nname = node['metadata']['name']
                if nname not in owned and schedulable(node, spec):
                    pod = self.new_pod(state, ds, f'{name}-{common.random_suffix()}', nname)
                    objects[key_of('Pod', '', ns, pod['metadata']['name'])] = pod
                elif nname in owned and daemon_pod_evicted(node, spec):
                    del objects[owned[nname]]
        pods = {k: o for k, o in objects.items() if o['kind'] == 'Pod'}
        # Deployments: replicas pods, spread over the nodes that fit
        for dep in [o for o in objects.values() if o['kind'] == 'Deployment']:
            ns, name = dep['metadata'].get('namespace', 'default'), dep['metadata']['name']
            template_hash = common.pod_template_hash(dep['spec']['template'])
            owned = [k for k, p in pods.items() if self.owner(p) == ('Deployment', name) and p['metadata'].get('namespace') == ns]
            for key in owned:
                if pods[key]['metadata']['labels'].get('pod-template-hash') != template_hash:
                    del objects[key]
            owned = [k for k in owned if k in objects]
            replicas = dep['spec'].get('replicas', 1)
            for key in owned[replicas:]:
                del objects[key]
            for _ in range(replicas - len(owned)):
                pod = self.new_pod(state, dep, f'{name}-{template_hash}-{common.random_suffix()}', None)
                pod['metadata']['labels']['pod-template-hash'] = template_hash
                objects[key_of('Pod', '', ns, pod['metadata']['name'])] = pod
        # scheduler: pending pods go to the Ready node with the fewest pods of their owner, then overall
        pods = [o for o in objects.values() if o['kind'] == 'Pod']
        for pod in sorted(pods, key=lambda p: p['metadata']['name']):
            if pod['spec'].get('nodeName'):
                continue
            fits = [n for n in nodes if node_ready(n) and schedulable(n, pod['spec'])]
            if not fits:
                continue
            count = lambda n, same: sum(1 for p in pods if p['spec'].get('nodeName') == n['metadata']['name']
                                        and (not same or self.owner(p) == self.owner(pod)))
            best = min(fits, key=lambda n: (count(n, True), count(n, False), n['metadata']['name']))
            pod['spec']['nodeName'] = best['metadata']['name']
        # pod status follows its node
        by_name = {n['metadata']['name']: n for n in nodes}
        for pod in pods:
            self.pod_status(state, pod, by_name.get(pod['spec'].get('nodeName')))
        self.bootstrap_kubernetes_service(objects)
        self.reconcile_endpoints(objects)

    @staticmethod
    def owner(pod: dict):
        refs = pod['metadata'].get('ownerReferences') or []
        return (refs[0]['kind'], refs[0]['name']) if refs else None

    def new_pod(self, state: dict, owner: dict, name: str, node: str | None) -> dict:
        template = copy.deepcopy(owner['spec']['template'])
        meta = template.get('metadata') or {}
        spec = template.get('spec') or {}
        if node:
            spec['nodeName'] = node
        state['serial'] = state.get('serial', 0) + 1
        return {
            'apiVersion': 'v1', 'kind': 'Pod',
            'metadata': {'name': name, 'namespace': owner['metadata'].get('namespace', 'default'),
                         'labels': dict(meta.get('labels') or {}), 'creationTimestamp': common.rfc3339(common.now()),
                         'uid': f'standin-{state["serial"]}',
                         'ownerReferences': [{'apiVersion': owner['apiVersion'], 'kind': owner['kind'],
                                              'name': owner['metadata']['name'], 'controller': True}]},
            'spec': spec,
            'status': {'phase': 'Pending'},
        }

    def pod_status(self, state: dict, pod: dict, node: dict | None) -> None:
        status = pod.setdefault('status', {})
        containers = pod['spec'].get('containers') or [{'name': 'main'}]
        if node is None:
            status.update({'phase': 'Pending', 'standinReason': 'Pending'})
            status.pop('podIP', None)
            status['containerStatuses'] = [{'name': c['name'], 'ready': False, 'restartCount': 0} for c in containers]
            return
        fresh = any(c['type'] == 'Ready' and c['status'] != 'Unknown' for c in node['status'].get('conditions') or [])
        host_network = bool(pod['spec'].get('hostNetwork'))
        running = fresh and (host_network or node_ready(node))
        node_ip = next((a['address'] for a in node['status'].get('addresses') or [] if a['type'] == 'InternalIP'), None)
        if running:
            if not status.get('startTime'):
                status['startTime'] = common.rfc3339(common.now())
            status['phase'] = 'Running'
            status['standinReason'] = 'Running'
            if host_network:
                status['podIP'] = node_ip
            elif not status.get('podIP'):
                status['podIP'] = self.pod_ip(state, node)
        elif status.get('phase') == 'Running':
            pass  # started before its node went NotReady or silent: still Running, its containers not Ready
        else:
            status['phase'] = 'Pending'
            status['standinReason'] = 'ContainerCreating'
        status['hostIP'] = node_ip
        status['containerStatuses'] = [{'name': c['name'], 'ready': running, 'restartCount': 0} for c in containers]

    def pod_ip(self, state: dict, node: dict) -> str | None:
        cidr = node['spec'].get('podCIDR')
        if not cidr:
            return None
        network = ipaddress.ip_network(cidr)
        used = {p['status'].get('podIP') for p in state['objects'].values() if p['kind'] == 'Pod'}
        for host in list(network.hosts())[1:]:
            if str(host) not in used:
                return str(host)
        return None

    # ------------------------------------------------------------ HTTP

    def handle(self, req: Handler, method: str):
        path = req.path.split('?')[0]
        try:
            if path in ('/healthz', '/livez', '/readyz') and method == 'GET':
                failed = set()
                try:
                    self.store.health()
                except (OSError, common.ApiError):
                    failed = {'etcd', 'etcd-readiness'}
                status, body = health_body(path[1:], failed, 'verbose' in req.path.split('?', 1)[-1])
                return req._send(status, body, 'text/plain; charset=utf-8')
            if path == '/version' and method == 'GET':
                major, minor, _ = common.version_tuple(self.version)
                return req._send(200, {'major': str(major), 'minor': str(minor), 'emulationMajor': str(major),
                                       'emulationMinor': str(minor), 'minCompatibilityMajor': str(major),
                                       'minCompatibilityMinor': str(minor - 1), 'gitVersion': self.version,
                                       'gitTreeState': 'clean', 'goVersion': 'go1.24.6', 'compiler': 'gc',
                                       'platform': 'linux/amd64'})
            if path == '/api/v1/namespaces/kube-public/configmaps/cluster-info' and method == 'GET':
                return req._send(200, self.cluster_info())
            user = self.authenticate(req)
            if user == 'invalid' or (path != '/standin/v1/op' and user is None):
                return req._send(401, status_body(401, 'Unauthorized', 'Unauthorized'))
            if user is None:
                return req._send(403, status_body(403, 'Forbidden', f'forbidden: User "system:anonymous" cannot get path "{path}"'))
            if path == '/standin/v1/op' and method == 'POST':
                body = req._body() or {}
                return req._send(200, self.op(user, body.pop('op', ''), body))
            return req._send(404, status_body(404, 'NotFound', 'the server could not find the requested resource'))
        except common.ApiError as error:
            return req._send(error.status, status_body(error.status, error.reason or 'Error', str(error)))
        except OSError as error:
            return req._send(500, status_body(500, 'InternalError', f'etcd unavailable: {error}'))

    def cluster_info(self) -> dict:
        state = self.store.read()
        cm = state['objects'].get(key_of('ConfigMap', '', 'kube-public', 'cluster-info'))
        if cm is None:
            raise common.ApiError(404, 'configmaps "cluster-info" not found', 'NotFound')
        cm = copy.deepcopy(cm)
        content = cm['data']['kubeconfig']
        for obj in state['objects'].values():
            data = obj.get('data') or {}
            if obj['kind'] == 'Secret' and obj.get('type') == 'bootstrap.kubernetes.io/token' and not self.token_expired(obj) \
                    and data.get('usage-bootstrap-signing') and unb64(data['usage-bootstrap-signing']) == 'true':
                token_id, secret = unb64(data['token-id']), unb64(data['token-secret'])
                cm['data'][f'jws-kubeconfig-{token_id}'] = common.jws_detached(content, token_id, secret)
        return cm

    # ------------------------------------------------------------ operations

    def op(self, user: dict, name: str, args: dict):
        bootstrap_ops = {'get_kubeadm_config', 'csr', 'get_certs_secret', 'get_nodes_names'}
        if user.get('bootstrap') and name not in bootstrap_ops:
            raise common.ApiError(403, f'forbidden: User "{user["name"]}" cannot perform {name}', 'Forbidden')
        handler = getattr(self, f'op_{name}', None)
        if handler is None:
            raise common.ApiError(400, f'unknown operation {name!r}', 'BadRequest')
        return handler(user, args)

    def _tx(self, fn):
        def wrapped(state):
            self.reconcile(state)
            result = fn(state)
            self.reconcile(state)
            return result
        return self.store.transact(wrapped)

    def op_get(self, user, args):
        kind, group = args['kind'], args.get('group', '')
        def fn(state):
            out = []
            for obj in state['objects'].values():
                meta = obj['metadata']
                if obj['kind'] != kind or common.group_of(obj['apiVersion']) != group:
                    continue
                if args.get('namespace') and not args.get('allNamespaces') and meta.get('namespace') != args['namespace']:
                    continue
                if args.get('name') and meta['name'] != args['name']:
                    continue
                out.append(obj)
            if args.get('name') and not out:
                raise common.ApiError(404, f'{args.get("resource", kind.lower())} "{args["name"]}" not found', 'NotFound')
            return sorted(out, key=lambda o: (o['metadata'].get('namespace', ''), o['metadata']['name']))
        return self._tx(fn)

    def op_componentstatuses(self, user, args):
        """GET /api/v1/componentstatuses: the scheduler and controller manager through their healthz ports on
        this host, etcd through the storage configuration (one etcd-N per server before v1.27, then a
        single etcd-0 checked through the client, as the real one answers)."""
        out = []
        for name, port in (('scheduler', 10259), ('controller-manager', 10257)):
            url = f'https://127.0.0.1:{port}/healthz'
            try:
                body = common.Client(f'https://127.0.0.1:{port}', insecure=True, timeout=3).request('GET', '/healthz')
                out.append({'name': name, 'healthy': body == 'ok', 'message': str(body), 'error': ''})
            except common.ApiError as error:
                out.append({'name': name, 'healthy': False, 'message': '', 'error': f'unhealthy HTTP status {error.status}'})
            except OSError as error:
                out.append({'name': name, 'healthy': False, 'message': '', 'error': common.go_url_error('GET', url, error)})
        if isinstance(self.store, EtcdStore):
            if common.version_tuple(self.version)[:2] < (1, 27):
                for index in range(len(self.store.servers)):
                    healthy, text = self.store.server_health(index)
                    out.append({'name': f'etcd-{index}', 'healthy': healthy, 'message': text if healthy else '', 'error': '' if healthy else text})
            else:
                try:
                    self.store.health()
                    out.append({'name': 'etcd-0', 'healthy': True, 'message': 'ok', 'error': ''})
                except OSError as error:
                    out.append({'name': 'etcd-0', 'healthy': False, 'message': '', 'error': str(error)})
        else:
            try:
                self.store.read()
                out.append({'name': 'etcd-0', 'healthy': True, 'message': 'ok', 'error': ''})
            except OSError as error:
                out.append({'name': 'etcd-0', 'healthy': False, 'message': '', 'error': str(error)})
        return out

    def op_lease(self, user, args):
        """Leader election (coordination.k8s.io/v1 Lease): take the lease when it is free or expired, renew it
        when held; returns the holder."""
        name, ns, identity = args['name'], args.get('namespace', 'kube-system'), args['identity']
        duration = int(args.get('leaseDurationSeconds', 15))
        def fn(state):
            key = key_of('Lease', 'coordination.k8s.io', ns, name)
            lease = state['objects'].get(key)
            now = common.now()
            stamp = _dt_micro(now)
            if lease is None:
                state['serial'] = state.get('serial', 0) + 1
                lease = {'apiVersion': 'coordination.k8s.io/v1', 'kind': 'Lease',
                         'metadata': {'name': name, 'namespace': ns, 'creationTimestamp': common.rfc3339(now),
                                      'uid': f'standin-{state["serial"]}'},
                         'spec': {'leaseTransitions': 0}}
                state['objects'][key] = lease
            spec = lease['spec']
            holder = spec.get('holderIdentity')
            renewed = spec.get('renewTime')
            expired = not renewed or now - _parse_micro(renewed) > spec.get('leaseDurationSeconds', duration)
            if holder == identity or not holder or expired:
                if holder != identity:
                    spec['leaseTransitions'] = spec.get('leaseTransitions', 0) + (1 if holder else 0)
                    spec['acquireTime'] = stamp
                spec.update({'holderIdentity': identity, 'leaseDurationSeconds': duration, 'renewTime': stamp})
            return spec['holderIdentity']
        return self._tx(fn)

    def op_get_nodes_names(self, user, args):
        return sorted(o['metadata']['name'] for o in self.store.read()['objects'].values() if o['kind'] == 'Node')

    def op_apply(self, user, args):
        create_only = args.get('mode') == 'create'
        def fn(state):
            results = []
            minor = common.version_tuple(self.version)[1]
            for obj in args['objects']:
                last = REMOVED_VERSIONS.get(obj['apiVersion'])
                if last is not None and minor > last:
                    raise common.ApiError(404, f'no matches for kind "{obj["kind"]}" in version "{obj["apiVersion"]}"', 'NoKindMatch')
            for obj in args['objects']:
                obj = copy.deepcopy(obj)
                kind = obj['kind']
                group = common.group_of(obj['apiVersion'])
                meta = obj.setdefault('metadata', {})
                ns = None if kind in CLUSTER_SCOPED or self.crd_scope(state, kind, group) == 'Cluster' else meta.get('namespace') or 'default'
                if ns:
                    meta['namespace'] = ns
                else:
                    meta.pop('namespace', None)
                key = key_of(kind, group, ns, meta['name'])
                ref = f'{common.resource_name(kind, obj["apiVersion"])}/{meta["name"]}'
                old = state['objects'].get(key)
                if old is not None and create_only:
                    raise common.ApiError(409, f'{common.resource_name(kind, obj["apiVersion"]).split(".")[0]}s{("." + group) if group else ""} "{meta["name"]}" already exists', 'AlreadyExists')
                applied = json.dumps({k: v for k, v in obj.items() if k != 'status'}, sort_keys=True)
                if old is not None and old['metadata'].get('annotations', {}).get('standin/last-applied') == applied:
                    results.append({'ref': ref, 'result': 'unchanged'})
                    continue
                state['serial'] = state.get('serial', 0) + 1
                meta.setdefault('annotations', {})['standin/last-applied'] = applied
                meta['creationTimestamp'] = old['metadata']['creationTimestamp'] if old else common.rfc3339(common.now())
                meta['uid'] = old['metadata']['uid'] if old else f'standin-{state["serial"]}'
                if old is not None and 'status' in old:
                    obj['status'] = old['status']
                if kind == 'Service' and not group:
                    self.service_defaults(state, obj, old)
                state['objects'][key] = obj
                results.append({'ref': ref, 'result': 'configured' if old else 'created'})
            return results
        return self._tx(fn)

    # ------------------------------------------------------------ Services (the ClusterIP allocator)

    def service_range(self):
        cidr = (self.args.get('service-cluster-ip-range') or '').split(',')[0]
        return ipaddress.ip_network(cidr, strict=False) if cidr else None

    def service_defaults(self, state: dict, svc: dict, old: dict | None) -> None:
        """What the real API server fills in for a Service: type ClusterIP, TCP, targetPort = port, and a
        ClusterIP from --service-cluster-ip-range: the one asked for when it is free and in range (else 422
        Invalid), the old one on update (immutable), or a free one from above the range's static band
        (the real allocator picks at random there; this one takes the lowest free address)."""
        spec = svc.setdefault('spec', {})
        name = svc['metadata']['name']
        spec.setdefault('type', 'ClusterIP')
        spec.setdefault('sessionAffinity', 'None')
        for port in spec.get('ports') or []:
            port.setdefault('protocol', 'TCP')
            port.setdefault('targetPort', port['port'])
        if spec['type'] == 'ExternalName':
            return
        old_ip = ((old or {}).get('spec') or {}).get('clusterIP')
        wanted = spec.get('clusterIP') or None
        def invalid(message: str):
            raise common.ApiError(422, f'Service "{name}" is invalid: spec.clusterIPs: Invalid value: []string{{"{wanted}"}}: {message}', 'Invalid')
        if old_ip and wanted and wanted != old_ip:
            raise common.ApiError(422, f'Service "{name}" is invalid: spec.clusterIPs[0]: Invalid value: []string{{"{wanted}"}}: may not change once set', 'Invalid')
        network = self.service_range()
        if old_ip:
            spec['clusterIP'] = old_ip
        elif wanted == 'None' or network is None:
            pass
        else:
            taken = {(o.get('spec') or {}).get('clusterIP') for o in state['objects'].values() if o['kind'] == 'Service'}
            if wanted:
                if ipaddress.ip_address(wanted) not in network:
                    invalid(f'failed to allocate IP {wanted}: provided IP is not in the valid range. The range of valid IPs is {network}')
                if wanted in taken:
                    invalid(f'failed to allocate IP {wanted}: provided IP is already allocated')
            else:
                band = min(max(16, network.num_addresses // 16), 256)
                last = int(network.broadcast_address)
                free = next((ip for ip in (ipaddress.ip_address(i) for i in range(int(network.network_address) + band, last)) if str(ip) not in taken), None)
                if free is None:
                    raise common.ApiError(500, f'Internal error occurred: failed to allocate a serviceIP: range is full', 'InternalError')
                spec['clusterIP'] = str(free)
        if spec.get('clusterIP'):
            spec['clusterIPs'] = [spec['clusterIP']]

    def bootstrap_kubernetes_service(self, objects: dict) -> None:
        """The API server's bootstrap controller: default/kubernetes, the first address of the service range,
        443 → the API servers' secure port."""
        network = self.service_range()
        key = key_of('Service', '', 'default', 'kubernetes')
        if network is None or key in objects:
            return
        first = str(network.network_address + 1)
        port = int(self.args.get('secure-port', '6443'))
        objects[key] = {'apiVersion': 'v1', 'kind': 'Service',
                        'metadata': {'name': 'kubernetes', 'namespace': 'default', 'labels': {'component': 'apiserver', 'provider': 'kubernetes'},
                                     'creationTimestamp': common.rfc3339(common.now()), 'uid': 'standin-kubernetes-service'},
                        'spec': {'type': 'ClusterIP', 'clusterIP': first, 'clusterIPs': [first], 'sessionAffinity': 'None',
                                 'ports': [{'name': 'https', 'port': 443, 'protocol': 'TCP', 'targetPort': port}]}}

    @staticmethod
    def pod_ready(pod: dict) -> bool:
        statuses = pod.get('status', {}).get('containerStatuses') or []
        return pod.get('status', {}).get('phase') == 'Running' and bool(statuses) and all(s.get('ready') for s in statuses)

    def reconcile_endpoints(self, objects: dict) -> None:
        """The endpoints controller: for each Service with a selector, an Endpoints object listing the Ready
        pods it selects (addresses) and the others that have an IP (notReadyAddresses); for
        default/kubernetes, the advertise addresses of the running kube-apiserver (mirror) pods. Endpoints
        of a deleted Service go."""
        pods = [o for o in objects.values() if o['kind'] == 'Pod']
        services = {(o['metadata'].get('namespace'), o['metadata']['name']): o for o in objects.values() if o['kind'] == 'Service'}
        for key, obj in list(objects.items()):
            if obj['kind'] == 'Endpoints' and (obj['metadata'].get('namespace'), obj['metadata']['name']) not in services:
                del objects[key]
        for (ns, name), svc in services.items():
            spec = svc.get('spec') or {}
            if ns == 'default' and name == 'kubernetes' and not spec.get('selector'):
                ready, not_ready, ports = [], [], []
                for pod in pods:
                    command = (pod['spec'].get('containers') or [{}])[0].get('command') or []
                    if pod['metadata'].get('namespace') != 'kube-system' or command[:1] != ['kube-apiserver'] or not self.pod_ready(pod):
                        continue
                    flags = dict(item[2:].split('=', 1) for item in command[1:] if item.startswith('--') and '=' in item)
                    if flags.get('advertise-address'):
                        ready.append({'ip': flags['advertise-address']})
                        ports = [{'name': 'https', 'port': int(flags.get('secure-port', '6443')), 'protocol': 'TCP'}]
            elif spec.get('selector'):
                selected = [p for p in pods if p['metadata'].get('namespace') == ns and p['status'].get('podIP')
                            and all((p['metadata'].get('labels') or {}).get(k) == v for k, v in spec['selector'].items())]
                ready = [self.endpoint_address(p) for p in selected if self.pod_ready(p)]
                not_ready = [self.endpoint_address(p) for p in selected if not self.pod_ready(p)]
                ports = []
                for port in spec.get('ports') or []:
                    target = port.get('targetPort', port['port'])
                    if isinstance(target, str) and not target.isdigit():
                        named = [c.get('containerPort') for p in selected for c in p['spec'].get('containers') or []
                                 for c in c.get('ports') or [] if c.get('name') == target]
                        if not named:
                            continue
                        target = named[0]
                    ports.append({**({'name': port['name']} if port.get('name') else {}), 'port': int(target), 'protocol': port.get('protocol', 'TCP')})
            else:
                continue  # Endpoints of a Service without a selector are the user's
            subset = {}
            if ready:
                subset['addresses'] = sorted(ready, key=lambda a: a['ip'])
            if not_ready:
                subset['notReadyAddresses'] = sorted(not_ready, key=lambda a: a['ip'])
            subsets = [{**subset, 'ports': ports}] if subset and ports else []
            key = key_of('Endpoints', '', ns, name)
            old = objects.get(key)
            if old is not None and old.get('subsets') == subsets:
                continue
            objects[key] = {'apiVersion': 'v1', 'kind': 'Endpoints',
                            'metadata': {'name': name, 'namespace': ns, 'labels': dict(svc['metadata'].get('labels') or {}),
                                         'creationTimestamp': old['metadata']['creationTimestamp'] if old else common.rfc3339(common.now())},
                            'subsets': subsets}

    @staticmethod
    def endpoint_address(pod: dict) -> dict:
        return {'ip': pod['status']['podIP'], 'nodeName': pod['spec'].get('nodeName'),
                'targetRef': {'kind': 'Pod', 'name': pod['metadata']['name'], 'namespace': pod['metadata']['namespace']}}

    def op_proxy_state(self, user, args):
        """What a node's network stand-ins need in one call: Services, Endpoints, each node's pod CIDR and
        InternalIP (the CNI's routes), and CoreDNS's Corefile."""
        def fn(state):
            objects = state['objects'].values()
            nodes = [{'name': n['metadata']['name'], 'podCIDR': n['spec'].get('podCIDR'),
                      'ip': next((a['address'] for a in (n.get('status') or {}).get('addresses') or [] if a['type'] == 'InternalIP'), None)}
                     for n in objects if n['kind'] == 'Node']
            corefile = state['objects'].get(key_of('ConfigMap', '', 'kube-system', 'coredns'))
            return {'services': [o for o in objects if o['kind'] == 'Service'], 'endpoints': [o for o in objects if o['kind'] == 'Endpoints'],
                    'nodes': nodes, 'corefile': ((corefile or {}).get('data') or {}).get('Corefile', '')}
        return self._tx(fn)

    @staticmethod
    def crd_scope(state, kind, group):
        for obj in state['objects'].values():
            if obj['kind'] == 'CustomResourceDefinition':
                spec = obj.get('spec') or {}
                if spec.get('group') == group and (spec.get('names') or {}).get('kind') == kind:
                    return spec.get('scope')
        return None

    def op_delete(self, user, args):
        def fn(state):
            key = key_of(args['kind'], args.get('group', ''), args.get('namespace'), args['name'])
            if key not in state['objects']:
                raise common.ApiError(404, f'{args.get("resource", args["kind"].lower())} "{args["name"]}" not found', 'NotFound')
            del state['objects'][key]
            return True
        return self._tx(fn)

    def op_register_node(self, user, args):
        node = args['node']
        name = node['metadata']['name']
        if user['name'] != f'system:node:{name}' and 'kubeadm:cluster-admins' not in user['groups'] and 'system:masters' not in user['groups']:
            raise common.ApiError(403, f'nodes "{name}" is forbidden: node "{user["name"]}" can only register itself', 'Forbidden')
        def fn(state):
            key = key_of('Node', '', None, name)
            old = state['objects'].get(key)
            if old is None:
                state['serial'] = state.get('serial', 0) + 1
                node['metadata']['creationTimestamp'] = common.rfc3339(common.now())
                node['metadata']['uid'] = f'standin-{state["serial"]}'
                self.allocate_pod_cidr(state, node)
                state['objects'][key] = node
            else:
                old['metadata'].setdefault('labels', {}).update(node['metadata'].get('labels') or {})
                old['status'].update({k: v for k, v in node.get('status', {}).items() if k != 'conditions'})
            return True
        return self._tx(fn)

    def allocate_pod_cidr(self, state, node):
        """The node IPAM controller: a /24 of the pod subnet for a node without one. kubeadm uploads the
        kubeadm-config ConfigMap (the subnet) after the first kubelet registers, so like the real
        controller this also runs later, on a node status update, for nodes registered before it."""
        if node['spec'].get('podCIDR'):
            return
        subnet = self.pod_subnet(state)
        if not subnet:
            return
        taken = {n['spec'].get('podCIDR') for n in state['objects'].values() if n['kind'] == 'Node'}
        for candidate in ipaddress.ip_network(subnet).subnets(new_prefix=24):
            if str(candidate) not in taken:
                node['spec']['podCIDR'] = str(candidate)
                node['spec']['podCIDRs'] = [str(candidate)]
                return

    @staticmethod
    def pod_subnet(state):
        cm = state['objects'].get(key_of('ConfigMap', '', 'kube-system', 'kubeadm-config'))
        if not cm:
            return None
        config = common.yaml.safe_load(cm['data'].get('ClusterConfiguration', '')) or {}
        return (config.get('networking') or {}).get('podSubnet', '').split(',')[0] or None

    def op_node_status(self, user, args):
        name = args['name']
        def fn(state):
            node = state['objects'].get(key_of('Node', '', None, name))
            if node is None:
                raise common.ApiError(404, f'nodes "{name}" not found', 'NotFound')
            self.allocate_pod_cidr(state, node)
            now = common.rfc3339(common.now())
            status = node.setdefault('status', {})
            conditions = status.setdefault('conditions', [])
            ready = next((c for c in conditions if c['type'] == 'Ready'), None)
            value = 'True' if args['ready'] else 'False'
            if ready is None:
                ready = {'type': 'Ready'}
                conditions.append(ready)
            if ready.get('status') != value:
                ready['lastTransitionTime'] = now
            ready.update({'status': value, 'reason': args['reason'], 'message': args['message'], 'lastHeartbeatTime': now})
            for key in ('addresses', 'nodeInfo', 'capacity', 'allocatable'):
                if key in args:
                    status[key] = args[key]
            return True
        return self._tx(fn)

    def op_patch_node(self, user, args):
        """Labels and taints; returns per node whether something changed (kubectl taint/label)."""
        def fn(state):
            out = {}
            names = args.get('names') or sorted(o['metadata']['name'] for o in state['objects'].values() if o['kind'] == 'Node')
            for name in names:
                node = state['objects'].get(key_of('Node', '', None, name))
                if node is None:
                    raise common.ApiError(404, f'nodes "{name}" not found', 'NotFound')
                labels = node['metadata'].setdefault('labels', {})
                before = json.dumps([labels, node['spec'].get('taints')], sort_keys=True)
                labels.update(args.get('addLabels') or {})
                for key in args.get('removeLabels') or []:
                    labels.pop(key, None)
                taints = node['spec'].get('taints') or []
                missing = []
                for spec in args.get('removeTaints') or []:
                    keep = [t for t in taints if not (t['key'] == spec['key'] and (not spec.get('effect') or t['effect'] == spec['effect']))]
                    if len(keep) == len(taints):
                        missing.append(spec['key'] + (f':{spec["effect"]}' if spec.get('effect') else ''))
                    taints = keep
                for spec in args.get('addTaints') or []:
                    taints = [t for t in taints if not (t['key'] == spec['key'] and t['effect'] == spec['effect'])] + [spec]
                if missing and args.get('strict'):
                    out[name] = {'missing': missing}
                    continue
                if taints:
                    node['spec']['taints'] = taints
                else:
                    node['spec'].pop('taints', None)
                out[name] = {'changed': before != json.dumps([labels, node['spec'].get('taints')], sort_keys=True), 'missing': missing}
            return out
        return self._tx(fn)

    def op_set_unschedulable(self, user, args):
        """kubectl cordon/uncordon: spec.unschedulable, and the node.kubernetes.io/unschedulable:NoSchedule
        taint the node lifecycle controller keeps in step with it. Returns per node whether it changed."""
        wanted = bool(args['unschedulable'])
        def fn(state):
            out = {}
            for name in args['names']:
                node = state['objects'].get(key_of('Node', '', None, name))
                if node is None:
                    raise common.ApiError(404, f'nodes "{name}" not found', 'NotFound')
                out[name] = bool(node['spec'].get('unschedulable')) != wanted
                taints = [t for t in node['spec'].get('taints') or [] if t['key'] != 'node.kubernetes.io/unschedulable']
                if wanted:
                    node['spec']['unschedulable'] = True
                    taints.append({'key': 'node.kubernetes.io/unschedulable', 'effect': 'NoSchedule',
                                   'timeAdded': common.rfc3339(common.now())})
                else:
                    node['spec'].pop('unschedulable', None)
                if taints:
                    node['spec']['taints'] = taints
                else:
                    node['spec'].pop('taints', None)
            return out
        return self._tx(fn)

    def op_node_pods(self, user, args):
        def fn(state):
            return [p for p in state['objects'].values() if p['kind'] == 'Pod' and p['spec'].get('nodeName') == args['node']]
        return self._tx(fn)

    def op_set_mirror_pods(self, user, args):
        node_name = args['node']
        def fn(state):
            for key, obj in list(state['objects'].items()):
                if obj['kind'] == 'Pod' and obj['metadata'].get('annotations', {}).get('kubernetes.io/config.mirror') \
                        and obj['spec'].get('nodeName') == node_name:
                    if obj['metadata']['name'] not in {p['metadata']['name'] for p in args['pods']}:
                        del state['objects'][key]
            for pod in args['pods']:
                key = key_of('Pod', '', pod['metadata']['namespace'], pod['metadata']['name'])
                # a changed manifest (kubeadm upgrade's new image) is a new mirror Pod
                if key not in state['objects'] or state['objects'][key]['spec'] != pod['spec']:
                    pod['metadata']['creationTimestamp'] = common.rfc3339(common.now())
                    state['objects'][key] = pod
            return True
        return self._tx(fn)

    # tokens ------------------------------------------------------

    def op_token_create(self, user, args):
        token_id, token_secret = args['token'].split('.')
        def fn(state):
            key = key_of('Secret', '', 'kube-system', f'bootstrap-token-{token_id}')
            if key in state['objects'] and args.get('failIfExists'):
                raise common.ApiError(409, f'a token with id "{token_id}" already exists', 'AlreadyExists')
            data = {'token-id': b64(token_id), 'token-secret': b64(token_secret)}
            if args.get('description'):
                data['description'] = b64(args['description'])
            if args.get('expires'):
                data['expiration'] = b64(args['expires'])
            for usage in args.get('usages') or []:
                data[f'usage-bootstrap-{usage}'] = b64('true')
            if args.get('groups'):
                data['auth-extra-groups'] = b64(','.join(args['groups']))
            state['objects'][key] = {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'bootstrap.kubernetes.io/token',
                                     'metadata': {'name': f'bootstrap-token-{token_id}', 'namespace': 'kube-system',
                                                  'creationTimestamp': common.rfc3339(common.now())},
                                     'data': data}
            return True
        return self._tx(fn)

    def op_token_list(self, user, args):
        def fn(state):
            out = []
            for obj in state['objects'].values():
                if obj['kind'] == 'Secret' and obj.get('type') == 'bootstrap.kubernetes.io/token':
                    out.append({k: unb64(v) for k, v in obj['data'].items()})
            return sorted(out, key=lambda t: t['token-id'])
        return self._tx(fn)

    def op_token_delete(self, user, args):
        def fn(state):
            key = key_of('Secret', '', 'kube-system', f'bootstrap-token-{args["id"]}')
            if key not in state['objects']:
                raise common.ApiError(404, f'secrets "bootstrap-token-{args["id"]}" not found', 'NotFound')
            del state['objects'][key]
            return True
        return self._tx(fn)

    # certificates ------------------------------------------------

    def op_upload_certs(self, user, args):
        token_id, token_secret = args['ttlToken'].split('.')
        def fn(state):
            state['objects'][key_of('Secret', '', 'kube-system', f'bootstrap-token-{token_id}')] = {
                'apiVersion': 'v1', 'kind': 'Secret', 'type': 'bootstrap.kubernetes.io/token',
                'metadata': {'name': f'bootstrap-token-{token_id}', 'namespace': 'kube-system',
                             'creationTimestamp': common.rfc3339(common.now())},
                'data': {'token-id': b64(token_id), 'token-secret': b64(token_secret), 'expiration': b64(args['expires']),
                         'description': b64('Proxy for managing TTL for the kubeadm-certs secret')}}
            state['objects'][key_of('Secret', '', 'kube-system', 'kubeadm-certs')] = {
                'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
                'metadata': {'name': 'kubeadm-certs', 'namespace': 'kube-system',
                             'creationTimestamp': common.rfc3339(common.now()),
                             'ownerReferences': [{'apiVersion': 'v1', 'kind': 'Secret', 'name': f'bootstrap-token-{token_id}',
                                                  'controller': True, 'blockOwnerDeletion': True}]},
                'data': args['data']}
            return True
        return self._tx(fn)

    def op_get_certs_secret(self, user, args):
        def fn(state):
            secret = state['objects'].get(key_of('Secret', '', 'kube-system', 'kubeadm-certs'))
            if secret is None:
                raise common.ApiError(404, 'secrets "kubeadm-certs" not found', 'NotFound')
            return secret
        return self._tx(fn)

    def op_get_kubeadm_config(self, user, args):
        state = self.store.read()
        cm = state['objects'].get(key_of('ConfigMap', '', 'kube-system', 'kubeadm-config'))
        kubelet = state['objects'].get(key_of('ConfigMap', '', 'kube-system', 'kubelet-config'))
        if cm is None:
            raise common.ApiError(404, 'configmaps "kubeadm-config" not found', 'NotFound')
        return {'kubeadm-config': cm, 'kubelet-config': kubelet}

    def op_csr(self, user, args):
        """The CSR is approved at once (kubeadm's csrapprover RBAC) and signed with the cluster CA."""
        from cryptography import x509
        csr = x509.load_pem_x509_csr(args['csr'].encode())
        cn, orgs = common.cert_subject(csr)
        if not cn.startswith('system:node:') or orgs != ['system:nodes']:
            raise common.ApiError(403, f'CSR for {cn} refused', 'Forbidden')
        if not user.get('bootstrap') and user['name'] != cn:
            raise common.ApiError(403, f'{user["name"]} cannot request a certificate for {cn}', 'Forbidden')
        if self.ca_key is None:
            raise common.ApiError(500, 'the API server has no CA key to sign with', 'InternalError')
        cert = common.sign_cert(self.ca_key, self.ca_cert, csr.public_key(), cn, orgs, client=True)
        return {'certificate': common.cert_pem(cert).decode()}


CLUSTER_SCOPED = common.CLUSTER_SCOPED_KINDS


def _dt_micro(ts: float) -> str:
    import datetime as _dt
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def _parse_micro(text: str) -> float:
    import datetime as _dt
    return _dt.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=_dt.timezone.utc).timestamp()


class HealthApp:
    def handle(self, req, method):
        return req._send(200, 'ok', 'text/plain; charset=utf-8')


def manifest_version(path: str) -> str | None:
    """The version the static Pod runs: its image's tag (registry.k8s.io/kube-apiserver:v1.35.0), as
    the real API server's version is the image's."""
    with open(path) as handle:
        image = common.yaml.safe_load(handle)['spec']['containers'][0].get('image', '')
    tag = image.rsplit(':', 1)[-1] if ':' in image.rsplit('/', 1)[-1] else ''
    return tag if re.match(r'^v\d+\.\d+\.\d+', tag) else None


def run_apiserver(manifest: str):
    args = manifest_args(manifest)
    app = ApiServerApp(args, version=manifest_version(manifest))
    context = server_context(args['tls-cert-file'], args['tls-private-key-file'], args['client-ca-file'], require=False)
    port = int(args.get('secure-port', '6443'))
    serve(args.get('bind-address', '0.0.0.0'), port, context, app)
    # kube-controller-manager and kube-scheduler health endpoints, served with the API server's certificate
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    plain.load_cert_chain(args['tls-cert-file'], args['tls-private-key-file'])
    for health_port in (10257, 10259):
        try:
            serve('127.0.0.1', health_port, plain, HealthApp())
        except OSError:
            pass
    while True:
        time.sleep(3600)


def set_process_name(name: str) -> None:
    """Takes the real component's process name (what `ss -p`, `ps -o comm` and kubeadm's and
    Capstan's preflight see on a port), not the stand-in's file name (`kube-apiserver-` is the
    15-character cut of kube-apiserver-standin)."""
    try:
        with open('/proc/self/comm', 'w') as handle:
            handle.write(name)
    except OSError:
        pass


def main():
    manifest = sys.argv[sys.argv.index('--manifest') + 1]
    set_process_name('kube-apiserver')
    run_apiserver(manifest)


if __name__ == '__main__':
    main()
