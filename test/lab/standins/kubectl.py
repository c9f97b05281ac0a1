#!/usr/bin/python3
"""kubectl stand-in (a lab test double; see standin_common.py). Subcommands: get, apply, create
deployment, delete, taint, label, wait, version, cluster-info, config view, cordon, uncordon, drain."""
from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, '/usr/lib/capstan-standin')
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import pflag  # noqa: E402
import standin_common as common  # noqa: E402

RESOURCES = {  # name/alias -> (kind, group, namespaced)
    'nodes': ('Node', '', False), 'node': ('Node', '', False), 'no': ('Node', '', False),
    'pods': ('Pod', '', True), 'pod': ('Pod', '', True), 'po': ('Pod', '', True),
    'deployments': ('Deployment', 'apps', True), 'deployment': ('Deployment', 'apps', True), 'deploy': ('Deployment', 'apps', True),
    'daemonsets': ('DaemonSet', 'apps', True), 'daemonset': ('DaemonSet', 'apps', True), 'ds': ('DaemonSet', 'apps', True),
    'services': ('Service', '', True), 'service': ('Service', '', True), 'svc': ('Service', '', True),
    'endpoints': ('Endpoints', '', True), 'ep': ('Endpoints', '', True),
    'configmaps': ('ConfigMap', '', True), 'configmap': ('ConfigMap', '', True), 'cm': ('ConfigMap', '', True),
    'secrets': ('Secret', '', True), 'secret': ('Secret', '', True),
    'namespaces': ('Namespace', '', False), 'namespace': ('Namespace', '', False), 'ns': ('Namespace', '', False),
    'clusterroles': ('ClusterRole', 'rbac.authorization.k8s.io', False), 'clusterrole': ('ClusterRole', 'rbac.authorization.k8s.io', False),
    'clusterrolebindings': ('ClusterRoleBinding', 'rbac.authorization.k8s.io', False),
    'clusterrolebinding': ('ClusterRoleBinding', 'rbac.authorization.k8s.io', False),
    'leases': ('Lease', 'coordination.k8s.io', True), 'lease': ('Lease', 'coordination.k8s.io', True),
    'componentstatuses': ('ComponentStatus', '', False), 'componentstatus': ('ComponentStatus', '', False),
    'cs': ('ComponentStatus', '', False),
}
PLURAL = {'Node': 'nodes', 'Pod': 'pods', 'Deployment': 'deployments.apps', 'DaemonSet': 'daemonsets.apps',
          'Service': 'services', 'Endpoints': 'endpoints', 'ConfigMap': 'configmaps', 'Secret': 'secrets', 'Namespace': 'namespaces',
          'ClusterRole': 'clusterroles.rbac.authorization.k8s.io', 'ClusterRoleBinding': 'clusterrolebindings.rbac.authorization.k8s.io',
          'Lease': 'leases.coordination.k8s.io'}


class Fail(Exception):
    pass


def client() -> common.Client:
    path = OPTS.get('kubeconfig') or (os.environ.get('KUBECONFIG', '').split(':')[0]) or os.path.expanduser('~/.kube/config')
    if not os.path.exists(path):
        if OPTS.get('kubeconfig'):
            raise Fail(f'error: stat {path}: no such file or directory')
        common.klog('E', 'memcache.go:265', '"Unhandled Error" err="couldn\'t get current server API group list: Get '
                    '\\"http://localhost:8080/api?timeout=32s\\": dial tcp [::1]:8080: connect: connection refused"')
        raise Fail('The connection to the server localhost:8080 was refused - did you specify the right host or port?')
    return common.client_from_kubeconfig(path)


def call(c: common.Client, op: str, **args):
    try:
        return c.op(op, **args)
    except common.ApiError as error:
        if error.status == 404:
            raise Fail(f'Error from server (NotFound): {error}')
        if error.status == 401:
            raise Fail('error: You must be logged in to the server (Unauthorized)')
        raise Fail(f'Error from server ({error.reason or "InternalError"}): {error}')
    except OSError as error:
        match = re.match(r'https://([^/]+)', c.server)
        raise Fail(f'The connection to the server {match.group(1) if match else c.server} was refused - did you specify the right host or port?')


# ------------------------------------------------------------------ printing

def age(obj) -> str:
    ts = obj['metadata'].get('creationTimestamp')
    return common.human_duration(common.now() - common.parse_rfc3339(ts)) if ts else '<unknown>'


def node_row(node, wide):
    conds = {c['type']: c for c in node.get('status', {}).get('conditions') or []}
    status = 'Unknown' if 'Ready' not in conds else ('Ready' if conds['Ready']['status'] == 'True' else 'NotReady')
    if node['spec'].get('unschedulable'):
        status += ',SchedulingDisabled'
    labels = node['metadata'].get('labels') or {}
    roles = sorted(k.split('/', 1)[1] for k in labels if k.startswith('node-role.kubernetes.io/') and '/' in k)
    info = node.get('status', {}).get('nodeInfo') or {}
    row = [node['metadata']['name'], status, ','.join(r for r in roles if r) or '<none>', age(node), info.get('kubeletVersion', '')]
    if wide:
        addrs = {a['type']: a['address'] for a in node.get('status', {}).get('addresses') or []}
        row += [addrs.get('InternalIP', '<none>'), addrs.get('ExternalIP', '<none>'), info.get('osImage', '<unknown>'),
                info.get('kernelVersion', '<unknown>'), info.get('containerRuntimeVersion', '<unknown>')]
    return row


def pod_row(pod, wide, all_ns):
    statuses = pod['status'].get('containerStatuses') or []
    ready = sum(1 for s in statuses if s.get('ready'))
    row = ([pod['metadata']['namespace']] if all_ns else []) + [
        pod['metadata']['name'], f'{ready}/{len(statuses) or len(pod["spec"].get("containers") or [])}',
        pod['status'].get('standinReason') or pod['status'].get('phase', 'Pending'),
        str(sum(s.get('restartCount', 0) for s in statuses)), age(pod)]
    if wide:
        row += [pod['status'].get('podIP') or '<none>', pod['spec'].get('nodeName') or '<none>', '<none>', '<none>']
    return row


def headers(kind, wide, all_ns):
    ns = ['NAMESPACE'] if all_ns else []
    if kind == 'Node':
        return ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION'] + (['INTERNAL-IP', 'EXTERNAL-IP', 'OS-IMAGE', 'KERNEL-VERSION', 'CONTAINER-RUNTIME'] if wide else [])
    if kind == 'Pod':
        return ns + ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE'] + (['IP', 'NODE', 'NOMINATED NODE', 'READINESS GATES'] if wide else [])
    if kind == 'Deployment':
        return ns + ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE']
    if kind == 'DaemonSet':
        return ns + ['NAME', 'DESIRED', 'CURRENT', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'NODE SELECTOR', 'AGE']
    if kind == 'Service':
        return ns + ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE']
    if kind == 'Endpoints':
        return ns + ['NAME', 'ENDPOINTS', 'AGE']
    if kind == 'ClusterRole':
        return ['NAME', 'CREATED AT']
    if kind == 'ClusterRoleBinding':
        return ['NAME', 'ROLE', 'AGE']
    if kind == 'Lease':
        return ns + ['NAME', 'HOLDER', 'AGE']
    return ns + ['NAME', 'AGE']


def owned_pods(pods, kind, obj):
    return [p for p in pods if (p['metadata'].get('ownerReferences') or [{}])[0].get('name') == obj['metadata']['name']
            and (p['metadata'].get('ownerReferences') or [{}])[0].get('kind') == kind
            and p['metadata'].get('namespace') == obj['metadata'].get('namespace')]


def row_for(kind, obj, wide, all_ns, pods):
    ns = [obj['metadata'].get('namespace', '')] if all_ns else []
    if kind == 'Node':
        return node_row(obj, wide)
    if kind == 'Pod':
        return pod_row(obj, wide, all_ns)
    if kind == 'Deployment':
        mine = owned_pods(pods, 'Deployment', obj)
        ready = sum(1 for p in mine if p['status'].get('phase') == 'Running')
        return ns + [obj['metadata']['name'], f'{ready}/{obj["spec"].get("replicas", 1)}', str(len(mine)), str(ready), age(obj)]
    if kind == 'DaemonSet':
        mine = owned_pods(pods, 'DaemonSet', obj)
        ready = sum(1 for p in mine if p['status'].get('phase') == 'Running')
        selector = ','.join(f'{k}={v}' for k, v in ((obj['spec']['template'].get('spec') or {}).get('nodeSelector') or {}).items()) or '<none>'
        return ns + [obj['metadata']['name'], str(len(mine)), str(len(mine)), str(ready), str(len(mine)), str(ready), selector, age(obj)]
    if kind == 'Service':
        spec = obj.get('spec') or {}
        ports = ','.join(f'{p["port"]}/{p.get("protocol", "TCP")}' for p in spec.get('ports') or []) or '<none>'
        return ns + [obj['metadata']['name'], spec.get('type', 'ClusterIP'), spec.get('clusterIP', '<none>'), '<none>', ports, age(obj)]
    if kind == 'Endpoints':
        # kubectl's printer: ready addresses × ports, the first three, then "+ N more..."
        pairs = [f'{a["ip"]}:{p["port"]}' for s in obj.get('subsets') or [] for p in s.get('ports') or [] for a in s.get('addresses') or []]
        text = ','.join(pairs[:3]) + (f' + {len(pairs) - 3} more...' if len(pairs) > 3 else '') if pairs else '<none>'
        return ns + [obj['metadata']['name'], text, age(obj)]
    if kind == 'ClusterRole':
        return [obj['metadata']['name'], obj['metadata'].get('creationTimestamp', '<unknown>')]
    if kind == 'ClusterRoleBinding':
        ref = obj.get('roleRef') or {}
        return [obj['metadata']['name'], f'{ref.get("kind", "")}/{ref.get("name", "")}', age(obj)]
    if kind == 'Lease':
        return ns + [obj['metadata']['name'], (obj.get('spec') or {}).get('holderIdentity', ''), age(obj)]
    return ns + [obj['metadata']['name'], age(obj)]


def cmd_componentstatuses(names):
    """kubectl get componentstatuses (cs): the API server's view of scheduler, controller manager and etcd."""
    c = client()
    statuses = call(c, 'componentstatuses')
    if common.version_tuple()[:2] >= (1, 19):
        sys.stderr.write('Warning: v1 ComponentStatus is deprecated in v1.19+\n')
    if names:
        known = {s['name'] for s in statuses}
        for name in names:
            if name not in known:
                raise Fail(f'Error from server (NotFound): componentstatuses "{name}" not found')
        statuses = [s for s in statuses if s['name'] in names]
    rows = [['NAME', 'STATUS', 'MESSAGE', 'ERROR']]
    rows += [[s['name'], 'Healthy' if s['healthy'] else 'Unhealthy', s['message'], s['error']] for s in statuses]
    sys.stdout.write(common.tabwrite(rows))


def clean(obj):
    obj = json.loads(json.dumps(obj))
    annotations = obj['metadata'].get('annotations') or {}
    if 'standin/last-applied' in annotations:
        annotations['kubectl.kubernetes.io/last-applied-configuration'] = annotations.pop('standin/last-applied')
    obj.get('status', {}).pop('standinReason', None)
    return obj


# ------------------------------------------------------------------ jsonpath (the subset kubectl users reach for)

def jsonpath(template: str, data) -> str:
    out, pos = [], 0
    tokens = re.findall(r'\{((?:[^{}"]|"[^"]*")*)\}|([^{}]+)', template)
    def render(items, scopes):
        i = 0
        while i < len(items):
            expr, text = items[i]
            if text:
                out.append(text)
            elif expr.strip().startswith('range '):
                depth, j = 1, i + 1
                while j < len(items):
                    e = items[j][0].strip()
                    depth += e.startswith('range ')
                    depth -= e == 'end'
                    if depth == 0:
                        break
                    j += 1
                for value in evaluate(expr.strip()[6:], scopes[-1]):
                    render(items[i + 1:j], scopes + [value])
                i = j
            elif expr.strip() != 'end':
                e = expr.strip()
                if e.startswith('"') and e.endswith('"'):
                    out.append(json.loads(e))
                else:
                    values = evaluate(e, scopes[-1])
                    out.append(' '.join(v if isinstance(v, str) else json.dumps(v) for v in values))
            i += 1
    render(tokens, [data])
    return ''.join(out)


def evaluate(expr: str, data) -> list:
    expr = expr.strip()
    if expr in ('', '.', '@'):
        return [data]
    parts = re.findall(r'\.\.?[^.\[]+|\[[^\]]*\]', expr if expr.startswith(('.', '[')) else '.' + expr)
    current = [data]
    for part in parts:
        nxt = []
        for value in current:
            if part.startswith('['):
                inner = part[1:-1]
                if inner == '*':
                    nxt += list(value.values()) if isinstance(value, dict) else list(value or [])
                elif inner.startswith('?('):
                    match = re.match(r'\?\(@\.([\w.]+)\s*(==|!=)\s*["\']?([^"\')]*)["\']?\)', inner)
                    for item in value or []:
                        got = evaluate('.' + match.group(1), item)
                        ok = bool(got) and str(got[0]) == match.group(3)
                        if ok == (match.group(2) == '=='):
                            nxt.append(item)
                elif re.fullmatch(r'-?\d+', inner):
                    try:
                        nxt.append(value[int(inner)])
                    except (IndexError, TypeError, KeyError):
                        pass
                else:
                    key = inner.strip('\'"')
                    if isinstance(value, dict) and key in value:
                        nxt.append(value[key])
            else:
                key = part.lstrip('.')
                if key == '*':
                    nxt += list(value.values()) if isinstance(value, dict) else list(value or [])
                elif isinstance(value, dict) and key in value:
                    nxt.append(value[key])
        current = nxt
    return current


# ------------------------------------------------------------------ commands

def resolve(name: str):
    if name not in RESOURCES:
        raise Fail(f'error: the server doesn\'t have a resource type "{name}"')
    return RESOURCES[name]


def cmd_get(args):
    if OPTS.get('raw'):
        # kubectl get --raw=/readyz: the body as the server sent it (text for health endpoints).
        if args:
            raise Fail('error: arguments may not be passed when --raw is specified')
        try:
            body = client().request('GET', OPTS['raw'])
        except common.ApiError as error:
            raise Fail(f'Error from server ({error.reason or "InternalError"}): {error}')
        except OSError as error:
            raise Fail(f'The connection to the server was refused - did you specify the right host or port? ({error})')
        sys.stdout.write(body if isinstance(body, str) else json.dumps(body))
        return
    if not args:
        raise Fail('error: You must specify the type of resource to get. Use "kubectl api-resources" for a complete list of supported resources.')
    kinds = args[0].split(',')
    names = args[1:]
    if '/' in args[0]:
        kinds, names = [args[0].split('/')[0]], [args[0].split('/')[1]] + args[1:]
    if resolve(kinds[0])[0] == 'ComponentStatus':
        return cmd_componentstatuses(names)
    c = client()
    output = OPTS.get('output', '')
    wide = output == 'wide'
    all_ns = bool(OPTS.get('all-namespaces'))
    ns = OPTS.get('namespace') or 'default'
    items = []
    for kind_name in kinds:
        kind, group, namespaced = resolve(kind_name)
        if names:
            for name in names:
                items += [(kind, o) for o in call(c, 'get', kind=kind, group=group, namespace=ns if namespaced else None, name=name,
                                                  resource=PLURAL.get(kind, kind.lower()))]
        else:
            items += [(kind, o) for o in call(c, 'get', kind=kind, group=group, namespace=ns if namespaced else None,
                                              allNamespaces=all_ns)]
    selector = OPTS.get('selector')
    if selector:
        wanted = dict(item.split('=', 1) for item in selector.split(',') if '=' in item)
        items = [(k, o) for k, o in items if all((o['metadata'].get('labels') or {}).get(a) == b for a, b in wanted.items())]
    single = bool(names) and len(items) == 1
    if output in ('json', 'yaml') or output.startswith('jsonpath') or output.startswith('custom-columns'):
        data = clean(items[0][1]) if single else {'apiVersion': 'v1', 'items': [clean(o) for _, o in items], 'kind': 'List',
                                                  'metadata': {'resourceVersion': ''}}
        if output == 'json':
            print(json.dumps(data, indent=4))
        elif output == 'yaml':
            sys.stdout.write(common.dump_yaml(data))
        elif output.startswith('jsonpath'):
            template = output.split('=', 1)[1] if '=' in output else ''
            sys.stdout.write(jsonpath(template.strip("'"), data))
        return
    if not items:
        sys.stderr.write(f'No resources found{"" if all_ns or not resolve(kinds[0])[2] else f" in {ns} namespace"}.\n')
        return
    pods = [o for _, o in items if _ == 'Pod']
    if any(k in ('Deployment', 'DaemonSet') for k, _ in items):
        pods = call(c, 'get', kind='Pod', group='', allNamespaces=True)
    by_kind: dict = {}
    for kind, obj in items:
        by_kind.setdefault(kind, []).append(obj)
    blocks = []
    for kind, objs in by_kind.items():
        rows = [] if OPTS.get('no-headers') else [headers(kind, wide, all_ns)]
        rows += [row_for(kind, o, wide, all_ns, pods) for o in objs]
        blocks.append(common.tabwrite(rows))
    sys.stdout.write('\n'.join(blocks))


def is_list(obj) -> bool:
    """apimachinery's unstructuredJSONScheme.decode: an object with an `items` field is a list
    (UnstructuredList), whatever its kind says."""
    return isinstance(obj, dict) and 'items' in obj and (obj['items'] is None or isinstance(obj['items'], list))


def flatten(doc) -> list:
    """The objects kubectl acts on for one manifest document, in its order. kubectl reads -f through
    cli-runtime's resource.Builder with Flatten(): its FlattenListVisitor visits a list's items one by
    one instead of the list, so `kubectl apply -f` of weave's `apiVersion: v1` / `kind: List` manifest
    applies its ServiceAccount, RBAC objects and DaemonSet (`serviceaccount/weave-net created`, ...),
    never a List object. Lists inside a list are expanded after the list's own items (the visitor's
    queue); an item with neither kind nor apiVersion takes the list's apiVersion and its kind without
    the `List` suffix (unstructuredJSONScheme.decodeToList)."""
    if not is_list(doc):
        return [doc]
    out, queue = [], [doc]
    while queue:
        current = queue.pop(0)
        if not is_list(current):
            out.append(current)
            continue
        item_kind = current.get('kind', '') if isinstance(current.get('kind'), str) else ''
        item_kind = item_kind[:-len('List')] if item_kind.endswith('List') else item_kind
        for item in current['items'] or []:
            if isinstance(item, dict) and not item.get('kind') and not item.get('apiVersion'):
                item = {**item, 'kind': item_kind, 'apiVersion': current.get('apiVersion', '')}
            queue.append(item)
    return out


def read_manifests(path: str) -> list[dict]:
    if path == '-':
        text = sys.stdin.read()
    elif re.match(r'https?://', path):
        try:
            with urllib.request.urlopen(path, timeout=30) as response:
                text = response.read().decode()
        except OSError as error:
            raise Fail(f'error: unable to read URL "{path}", server reported {common.go_url_error("GET", path, getattr(error, "reason", error) if isinstance(getattr(error, "reason", None), Exception) else error)}')
    else:
        if os.path.isdir(path):
            files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(('.yaml', '.yml', '.json')))
            return [doc for f in files for doc in read_manifests(f)]
        if not os.path.exists(path):
            raise Fail(f'error: the path "{path}" does not exist')
        text = open(path).read()
    try:
        docs = common.load_yaml_documents(text)
    except common.yaml.YAMLError as error:
        raise Fail(f'error: error parsing {path}: error converting YAML to JSON: {error}')
    out = [obj for doc in docs for obj in flatten(doc)]
    for doc in out:
        if not isinstance(doc, dict) or not doc.get('kind') or not doc.get('apiVersion'):
            raise Fail(f'error: error validating "{path}": error validating data: [apiVersion not set, kind not set]; if you choose to ignore these errors, turn validation off with --validate=false')
    return out


def cmd_apply(args, mode='apply'):
    files = OPTS.get('filename') or []
    if not files:
        raise Fail('error: must specify one of -f and -k')
    objects = [doc for f in files for doc in read_manifests(f)]
    ns = OPTS.get('namespace')
    if ns:
        for obj in objects:
            obj.setdefault('metadata', {}).setdefault('namespace', ns)
    try:
        results = client().op('apply', objects=objects, mode=mode)
    except common.ApiError as error:
        if error.reason != 'NoKindMatch':
            call(client(), 'apply', objects=objects, mode=mode)  # reports the error as every other command does
            raise
        # kubectl maps kinds through discovery first: a version the server no longer serves fails there.
        bad = next((o for o in objects if f'"{o["kind"]}" in version "{o["apiVersion"]}"' in str(error)), objects[0])
        source = 'STDIN' if files == ['-'] else files[0]
        raise Fail(f'error: resource mapping not found for name: "{bad["metadata"].get("name", "")}" namespace: '
                   f'"{bad["metadata"].get("namespace", "")}" from "{source}": {error}\nensure CRDs are installed first')
    except OSError:
        results = call(client(), 'apply', objects=objects, mode=mode)
    for item in results:
        print(f'{item["ref"]} {item["result"]}')


def cmd_create(args):
    if args and args[0] == 'deployment' and len(args) > 1:
        name, image = args[1], OPTS.get('image')
        if not image:
            raise Fail('error: required flag(s) "image" not set')
        labels = {'app': name}
        obj = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name, 'labels': labels,
                                                                             'namespace': OPTS.get('namespace') or 'default'},
               'spec': {'replicas': int(OPTS.get('replicas') or 1), 'selector': {'matchLabels': labels},
                        'template': {'metadata': {'labels': labels},
                                     'spec': {'containers': [{'name': re.sub(r'[^a-z0-9-]', '-', image.split('/')[-1].split(':')[0]), 'image': image}]}}}}
        call(client(), 'apply', objects=[obj], mode='create')
        print(f'deployment.apps/{name} created')
        return
    return cmd_apply(args, mode='create')


def cmd_delete(args):
    c = client()
    if OPTS.get('filename'):
        objects = [doc for f in OPTS['filename'] for doc in read_manifests(f)]
        for obj in objects:
            kind, group = obj['kind'], common.group_of(obj['apiVersion'])
            namespace = None if kind in common.CLUSTER_SCOPED_KINDS else obj['metadata'].get('namespace') or OPTS.get('namespace') or 'default'
            call(c, 'delete', kind=kind, group=group, namespace=namespace, name=obj['metadata']['name'])
            print(f'{common.resource_name(kind, obj["apiVersion"])} "{obj["metadata"]["name"]}" deleted')
        return
    kind, group, namespaced = resolve(args[0])
    for name in args[1:]:
        call(c, 'delete', kind=kind, group=group, namespace=(OPTS.get('namespace') or 'default') if namespaced else None, name=name,
             resource=PLURAL.get(kind))
        print(f'{common.resource_name(kind, (group + "/v1") if group else "v1")} "{name}" deleted')


def parse_taint(spec: str):
    remove = spec.endswith('-')
    spec = spec.rstrip('-')
    key, _, effect = spec.partition(':')
    value = None
    if '=' in key:
        key, value = key.split('=', 1)
    if not remove and effect not in ('NoSchedule', 'PreferNoSchedule', 'NoExecute'):
        raise Fail(f'error: invalid taint spec: {spec}, unsupported taint effect')
    taint = {'key': key, 'effect': effect} if effect else {'key': key}
    if value:
        taint['value'] = value
    return remove, taint


def cmd_taint(args):
    if not args or args[0] not in ('nodes', 'node', 'no'):
        raise Fail('error: at least one taint update is required')
    rest = args[1:]
    names = [] if OPTS.get('all') else [rest.pop(0)] if rest else []
    if not rest:
        raise Fail('error: at least one taint update is required')
    adds, removes = [], []
    for spec in rest:
        remove, taint = parse_taint(spec)
        (removes if remove else adds).append(taint)
    c = client()
    result = call(c, 'patch_node', names=names or None, addTaints=adds, removeTaints=removes, strict=True)
    errors = []
    for name, outcome in result.items():
        if outcome.get('missing'):
            errors.append(f'taint "{outcome["missing"][0].split(":")[0]}" not found')
            continue
        print(f'node/{name} {"untainted" if removes and not adds else "tainted" if outcome["changed"] else "not tainted" if not removes else "modified"}')
    if errors:
        raise Fail(f'error: {errors[0]}')


def cmd_label(args):
    kind, _, _ = resolve(args[0])
    if kind != 'Node':
        raise Fail('error: the stand-in labels nodes only')
    rest = args[1:]
    names = [] if OPTS.get('all') else [rest.pop(0)]
    add = dict(item.split('=', 1) for item in rest if '=' in item)
    remove = [item[:-1] for item in rest if item.endswith('-')]
    result = call(client(), 'patch_node', names=names or None, addLabels=add, removeLabels=remove)
    for name, outcome in result.items():
        print(f'node/{name} {"labeled" if add else "unlabeled"}' if outcome['changed'] else f'node/{name} not labeled')


def cmd_wait(args):
    condition = OPTS.get('for', '')
    match = re.fullmatch(r'condition=(\w+)(?:=(\w+))?', condition)
    if not match:
        raise Fail(f'error: unrecognized condition: "{condition}"')
    cond, want = match.group(1), (match.group(2) or 'True')
    timeout = common.parse_duration(OPTS.get('timeout') or '30s')
    target = args[0] if args else ''
    kind_name, _, name = target.partition('/')
    names = ([name] if name else []) + args[1:]
    kind, group, namespaced = resolve(kind_name)
    c = client()
    ns = (OPTS.get('namespace') or 'default') if namespaced else None
    items = call(c, 'get', kind=kind, group=group, namespace=ns, allNamespaces=bool(OPTS.get('all-namespaces')))
    wanted = names or [o['metadata']['name'] for o in items]
    if not OPTS.get('all') and not names and not OPTS.get('selector'):
        raise Fail('error: resource(s) were provided, but no name was specified')
    if not wanted:
        raise Fail('error: no matching resources found')
    started = time.time()
    plural = PLURAL.get(kind, kind.lower() + 's')
    for obj_name in wanted:
        while True:
            objs = {o['metadata']['name']: o for o in call(c, 'get', kind=kind, group=group, namespace=ns)}
            obj = objs.get(obj_name)
            if obj is None:
                raise Fail(f'Error from server (NotFound): {plural.split(".")[0]} "{obj_name}" not found')
            status = next((x['status'] for x in (obj.get('status') or {}).get('conditions') or [] if x['type'].lower() == cond.lower()), None)
            if kind == 'Pod' and cond.lower() == 'ready':
                status = 'True' if obj['status'].get('phase') == 'Running' else 'False'
            if status is not None and status.lower() == want.lower():
                print(f'{kind.lower()}/{obj_name} condition met')
                break
            if time.time() - started >= timeout:
                raise Fail(f'error: timed out waiting for the condition on {plural}/{obj_name}')
            time.sleep(1)


def node_names(args, verb):
    if args and args[0] in ('node', 'nodes', 'no'):
        args = args[1:]
    args = [a.split('/', 1)[1] if a.startswith(('node/', 'nodes/')) else a for a in args]
    if not args:
        raise Fail(f'error: resource(s) were provided, but no name was specified' if verb != 'drain' else
                   'error: USAGE: drain NODE [flags]\nSee \'kubectl drain -h\' for help and examples')
    return args


def set_unschedulable(c, names, unschedulable: bool) -> None:
    changed = call(c, 'set_unschedulable', names=names, unschedulable=unschedulable)
    verb = 'cordoned' if unschedulable else 'uncordoned'
    for name in names:
        print(f'node/{name} {verb}' if changed[name] else f'node/{name} already {verb}')


def cmd_cordon(args):
    set_unschedulable(client(), node_names(args, 'cordon'), True)


def cmd_uncordon(args):
    set_unschedulable(client(), node_names(args, 'uncordon'), False)


def drain_filter(pod) -> tuple[str, str]:
    """kubectl's drain filters (k8s.io/kubectl/pkg/drain/filters.go): ('delete' | 'skip' | 'warn' | 'error', message)."""
    annotations = pod['metadata'].get('annotations') or {}
    if annotations.get('kubernetes.io/config.mirror'):
        return 'skip', ''
    if pod['status'].get('phase') in ('Succeeded', 'Failed'):
        return 'delete', ''
    owner = (pod['metadata'].get('ownerReferences') or [{}])[0]
    if owner.get('kind') == 'DaemonSet':
        if OPTS.get('ignore-daemonsets'):
            return 'warn', 'ignoring DaemonSet-managed Pods'
        return 'error', 'cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)'
    if not owner.get('kind'):
        if not OPTS.get('force'):
            return 'error', 'cannot delete Pods that declare no controller (use --force to override)'
        return 'warn', 'deleting Pods that declare no controller'
    if any('emptyDir' in v for v in pod['spec'].get('volumes') or []):
        if not OPTS.get('delete-emptydir-data'):
            return 'error', 'cannot delete Pods with local storage (use --delete-emptydir-data to override)'
        return 'delete', ''
    return 'delete', ''


def cmd_drain(args):
    """kubectl drain NODE: cordon, then evict every pod the filters allow; refuses (node left cordoned,
    as kubectl leaves it) when a pod may not go. The stand-in evicts by deleting (no PodDisruptionBudgets)."""
    c = client()
    names = node_names(args, 'drain')
    set_unschedulable(c, names, True)
    pods = call(c, 'get', kind='Pod', group='', allNamespaces=True)
    for name in names:
        mine = [p for p in pods if p['spec'].get('nodeName') == name]
        verdicts = [(p, *drain_filter(p)) for p in mine]
        errors, warnings = {}, {}
        for pod, verdict, message in verdicts:
            ref = f'{pod["metadata"]["namespace"]}/{pod["metadata"]["name"]}'
            if verdict == 'error':
                errors.setdefault(message, []).append(ref)
            elif verdict == 'warn':
                warnings.setdefault(message, []).append(ref)
        if errors:
            texts = [f'{m}: {", ".join(refs)}' for m, refs in errors.items()]
            text = texts[0] if len(texts) == 1 else f'[{", ".join(texts)}]'
            sys.stdout.flush()
            sys.stderr.write(f'error: unable to drain node "{name}" due to error: {text}, continuing command...\n'
                             f'There are pending nodes to be drained:\n {name}\n{text}\n')
            sys.exit(1)
        if warnings:
            sys.stderr.write('Warning: ' + '; '.join(f'{m}: {", ".join(refs)}' for m, refs in warnings.items()) + '\n')
        for pod, verdict, _ in verdicts:
            if verdict in ('delete', 'warn') and (pod['metadata'].get('ownerReferences') or [{}])[0].get('kind') != 'DaemonSet':
                meta = pod['metadata']
                sys.stderr.write(f'evicting pod {meta["namespace"]}/{meta["name"]}\n')
                sys.stderr.flush()
                call(c, 'delete', kind='Pod', group='', namespace=meta['namespace'], name=meta['name'], resource='pods')
                print(f'pod/{meta["name"]} evicted')
        print(f'node/{name} drained')


def cmd_version(args):
    version = common.kube_version()
    if OPTS.get('client'):
        print(f'Client Version: {version}\nKustomize Version: {common.KUSTOMIZE_VERSION}')
        return
    print(f'Client Version: {version}\nKustomize Version: {common.KUSTOMIZE_VERSION}')
    c = client()
    try:
        server = c.request('GET', '/version')
    except OSError:
        match = re.match(r'https://([^/]+)', c.server)
        raise Fail(f'The connection to the server {match.group(1)} was refused - did you specify the right host or port?')
    print(f'Server Version: {server["gitVersion"]}')


def cmd_cluster_info(args):
    c = client()
    try:
        c.request('GET', '/version')
    except OSError:
        match = re.match(r'https://([^/]+)', c.server)
        raise Fail(f'The connection to the server {match.group(1)} was refused - did you specify the right host or port?')
    print(f'Kubernetes control plane is running at {c.server}')
    for svc in call(c, 'get', kind='Service', group='', allNamespaces=True):
        labels = svc['metadata'].get('labels') or {}
        if labels.get('kubernetes.io/cluster-service') == 'true':
            name = labels.get('kubernetes.io/name', svc['metadata']['name'])
            port = (svc['spec'].get('ports') or [{}])[0].get('name', '')
            print(f'{name} is running at {c.server}/api/v1/namespaces/{svc["metadata"]["namespace"]}/services/{svc["metadata"]["name"]}:{port}/proxy')
    print()
    print("To further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.")


OPTS: dict = {}
# The flags of the commands the stand-in has (kubectl's global flags, then its commands' own): any
# other is refused as the real kubectl refuses it.
VALUE_FLAGS = {'kubeconfig', 'namespace', 'output', 'filename', 'selector', 'for', 'timeout', 'image', 'replicas', 'context',
               'cluster', 'user', 'server', 'token', 'certificate-authority', 'client-certificate', 'client-key',
               'tls-server-name', 'as', 'as-group', 'cache-dir', 'v', 'request-timeout', 'raw', 'field-selector',
               'sort-by', 'field-manager', 'grace-period', 'port', 'pod-selector'}
BOOL_FLAGS = {'all', 'all-namespaces', 'no-headers', 'client', 'show-labels', 'watch', 'ignore-not-found', 'overwrite',
              'insecure-skip-tls-verify', 'wait', 'force', 'recursive', 'server-side',
              'ignore-daemonsets', 'delete-emptydir-data', 'disable-eviction'}
SHORT = {'n': 'namespace', 'o': 'output', 'f': 'filename', 'l': 'selector', 'A': 'all-namespaces', 'v': 'v',
         's': 'server', 'w': 'watch', 'R': 'recursive'}


def command_of(argv: list[str]) -> str:
    """The subcommand in an argument list pflag refused (the first argument that is not a flag or a
    flag's value), for kubectl's `See 'kubectl <command> --help'` line."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == '--':
            break
        if not arg.startswith('-') or arg == '-':
            return arg
        takes_value = (arg.startswith('--') and '=' not in arg and arg[2:] in VALUE_FLAGS) or \
            (len(arg) == 2 and SHORT.get(arg[1]) in VALUE_FLAGS)
        i += 2 if takes_value else 1
    return ''


def parse(argv):
    """pflag's parsing (pflag.py); an unknown flag fails like kubectl's: `error: unknown flag: --foo`
    then `See 'kubectl <command> --help' for usage.`, exit 1."""
    try:
        flags, positionals = pflag.parse(argv, VALUE_FLAGS, BOOL_FLAGS, SHORT, repeated={'filename'})
    except pflag.FlagError as error:
        command = command_of(argv)
        raise Fail(f'error: {error}\nSee \'kubectl{" " + command if command else ""} --help\' for usage.')
    OPTS.update(flags)
    return positionals


def main():
    try:
        args = parse(sys.argv[1:])
        if not args:
            print('kubectl controls the Kubernetes cluster manager.')
            return
        commands = {'get': cmd_get, 'apply': cmd_apply, 'create': cmd_create, 'delete': cmd_delete, 'taint': cmd_taint,
                    'label': cmd_label, 'wait': cmd_wait, 'version': cmd_version, 'cluster-info': cmd_cluster_info,
                    'cordon': cmd_cordon, 'uncordon': cmd_uncordon, 'drain': cmd_drain}
        if args[0] == 'config' and args[1:2] == ['view']:
            path = OPTS.get('kubeconfig') or os.environ.get('KUBECONFIG') or os.path.expanduser('~/.kube/config')
            config = common.yaml.safe_load(open(path))
            for cluster in config.get('clusters') or []:
                if 'certificate-authority-data' in cluster['cluster']:
                    cluster['cluster']['certificate-authority-data'] = 'DATA+OMITTED'
            for user in config.get('users') or []:
                for key in ('client-certificate-data', 'client-key-data'):
                    if key in user['user']:
                        user['user'][key] = 'DATA+OMITTED' if key == 'client-certificate-data' else 'DATA+OMITTED'
            sys.stdout.write(common.dump_yaml(config))
            return
        if args[0] not in commands:
            raise Fail(f'error: unknown command "{args[0]}" for "kubectl"')
        commands[args[0]](args[1:])
    except Fail as error:
        sys.stdout.flush()
        sys.stderr.write(f'{error}\n')
        sys.exit(1)


if __name__ == '__main__':
    main()
