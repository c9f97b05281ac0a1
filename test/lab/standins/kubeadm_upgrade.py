"""`kubeadm upgrade plan | apply | node` for the kubeadm stand-in (a lab test double; see standin_common.py).

Output and errors follow kubeadm 1.34/1.35 (cmd/kubeadm/app/cmd/upgrade and
cmd/kubeadm/app/cmd/phases/upgrade); the version rules are kubeadm_versions.py. What it changes:
- apply (first control plane) and node (other control planes): the image tags of the
  kube-apiserver, kube-controller-manager and kube-scheduler static Pod manifests (the old ones
  backed up under /etc/kubernetes/tmp/kubeadm-backup-manifests-<time>/), then waits for the kubelet
  to run the new ones (the mirror Pod's image; for the API server, /version answering the target);
- apply: the kubeadm-config ClusterConfiguration's kubernetesVersion, the kubelet-config ConfigMap,
  the kube-proxy DaemonSet's image;
- apply and node: /var/lib/kubelet/config.yaml from the kubelet-config ConfigMap (backed up first).
Not modelled: certificate renewal, etcd upgrades (the etcd manifest is left as it is), dry runs.
"""
from __future__ import annotations

import os
import ssl
import sys
import time
import urllib.request

import standin_common as common
import kubeadm_versions as versions
from standin_common import PhaseError

CONTROL_PLANE_COMPONENTS = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler']
COMPONENT_TIMEOUT = 300.0
UPLOAD_CONFIG_HINT = "[upgrade] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it."
COMMON_FLAGS = {'config': 'str', 'kubeconfig': 'str', 'v': 'str', 'ignore-preflight-errors': 'list', 'dry-run': 'bool',
                'allow-experimental-upgrades': 'bool', 'allow-release-candidate-upgrades': 'bool', 'help': 'bool'}


def out(line: str = '') -> None:
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


def read_cluster_configuration(client: common.Client) -> tuple[dict, dict | None]:
    out('[upgrade] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...')
    out(UPLOAD_CONFIG_HINT)
    try:
        remote = client.op('get_kubeadm_config')
    except (common.ApiError, OSError) as error:
        raise PhaseError(f'unable to fetch the kubeadm-config ConfigMap: {error}')
    return common.yaml.safe_load(remote['kubeadm-config']['data']['ClusterConfiguration']), remote.get('kubelet-config')


def cluster_version(client: common.Client) -> str:
    try:
        return client.request('GET', '/version')['gitVersion']
    except (common.ApiError, OSError) as error:
        raise PhaseError(f'Unable to fetch cluster version: Couldn\'t fetch cluster version from the API Server: {error}')


def kubelet_versions(nodes: list[dict]) -> dict[str, str]:
    return {n['metadata']['name']: (n.get('status', {}).get('nodeInfo') or {}).get('kubeletVersion', '') for n in nodes}


def is_control_plane(node: dict) -> bool:
    return 'node-role.kubernetes.io/control-plane' in (node['metadata'].get('labels') or {})


def node_ready(node: dict) -> bool:
    return any(c['type'] == 'Ready' and c['status'] == 'True' for c in (node.get('status') or {}).get('conditions') or [])


def health_checks(client: common.Client, nodes: list[dict], ignore: set[str]) -> None:
    """CheckClusterHealth's ControlPlaneNodesReady check (the Job and manifest checks always pass here)."""
    out('[upgrade] Running cluster health checks')
    not_ready = sorted(n['metadata']['name'] for n in nodes if is_control_plane(n) and not node_ready(n))
    if not_ready and 'all' not in ignore and 'controlplanenodesready' not in ignore:
        sys.stdout.flush()
        sys.stderr.write('[preflight] Some fatal errors occurred:\n'
                         f'\t[ERROR ControlPlaneNodesReady]: there are NotReady control-planes in the cluster: [{" ".join(not_ready)}]\n'
                         "[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\n")
        raise PhaseError('preflight checks failed', 'preflight')


def manifest_path(component: str) -> str:
    return f'{common.MANIFESTS_DIR}/{component}.yaml'


def with_tag(image: str, tag: str) -> str:
    """registry.k8s.io/kube-apiserver:v1.34.1 → …:<tag> (a registry port is not a tag)."""
    name = image.rsplit(':', 1)[0] if ':' in image.rsplit('/', 1)[-1] else image
    return f'{name}:{tag}'


def mirror_image(client: common.Client, component: str, node: str) -> str | None:
    try:
        pods = client.op('get', kind='Pod', namespace='kube-system', name=f'{component}-{node}')
    except (common.ApiError, OSError):
        return None
    return pods[0]['spec']['containers'][0].get('image') if pods else None


def apiserver_version(address: str, port: int) -> str | None:
    try:
        with urllib.request.urlopen(f'https://{address}:{port}/version', timeout=2, context=ssl._create_unverified_context()) as response:
            return common.json.loads(response.read())['gitVersion']
    except (OSError, ValueError, KeyError):
        return None


def upgrade_static_pods(client: common.Client, node: str, target: str, backup_dir: str) -> None:
    """Rewrites each control-plane manifest's image tag to `target` and waits for the kubelet to run it."""
    for component in CONTROL_PLANE_COMPONENTS:
        path = manifest_path(component)
        pod = common.yaml.safe_load(common.read_text(path) or '') or {}
        container = pod['spec']['containers'][0]
        new_image = with_tag(container['image'], target)
        if container['image'] == new_image:
            out(f'[upgrade/staticpods] Current and new manifests of {component} are equal, skipping upgrade')
            continue
        out(f'[upgrade/staticpods] Preparing for "{component}" upgrade')
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        common.write_file(os.path.join(backup_dir, f'{component}.yaml'), common.read_text(path) or '', 0o600)
        container['image'] = new_image
        out(f'[upgrade/staticpods] Moving new manifest to "{path}" and backing up old manifest to "{backup_dir}/{component}.yaml"')
        common.write_file(path, common.dump_yaml(pod), 0o600)
        out('[upgrade/staticpods] Waiting for the kubelet to restart the component')
        out(f'[upgrade/staticpods] This can take up to {common.format_duration(COMPONENT_TIMEOUT)}')
        args = {a[2:].split('=', 1)[0]: a.split('=', 1)[1] for a in container.get('command', []) if a.startswith('--') and '=' in a}
        started = time.time()
        while True:
            running = mirror_image(client, component, node) == new_image
            if running and component == 'kube-apiserver':
                running = apiserver_version(args.get('advertise-address', '127.0.0.1'), int(args.get('secure-port', 6443))) == target
            if running:
                break
            if time.time() - started > COMPONENT_TIMEOUT:
                raise PhaseError(f'couldn\'t upgrade control plane. kubeadm has tried to recover everything into the earlier state. '
                                 f'Errors faced: timed out waiting for the condition', 'control-plane')
            time.sleep(0.5)
        out(f'[apiclient] Found 1 Pods for label selector component={component}')
        out(f'[upgrade/staticpods] Component "{component}" upgraded successfully!')


def write_kubelet_config(kubelet_cm: dict | None, backup_dir: str) -> None:
    path = f'{common.KUBELET_DIR}/config.yaml'
    data = ((kubelet_cm or {}).get('data') or {}).get('kubelet')
    if not data:
        raise PhaseError('the kubelet-config ConfigMap has no "kubelet" key', 'kubelet-config')
    os.makedirs(backup_dir, mode=0o700, exist_ok=True)
    common.klog('W', 'postupgrade.go:117', f'Using temporary directory {backup_dir} for kubelet config. To override it set the environment variable KUBEADM_UPGRADE_DRYRUN_DIR')
    out(f'[upgrade] Backing up kubelet config file to {backup_dir}/config.yaml')
    common.write_file(os.path.join(backup_dir, 'config.yaml'), common.read_text(path) or '')
    out(f'[kubelet-start] Writing kubelet configuration to file "{path}"')
    common.write_file(path, data)


def stamp() -> str:
    return time.strftime('%Y-%m-%d-%H-%M-%S', time.gmtime(common.now()))


def confirm(values: dict) -> None:
    if values.get('yes') or values.get('force'):
        return
    sys.stdout.write('[upgrade] Are you sure you want to proceed? [y/N]: ')
    sys.stdout.flush()
    if sys.stdin.readline().strip().lower() not in ('y', 'yes'):
        raise PhaseError("won't proceed; the user didn't answer (Y|y) in order to continue", 'preflight')


# ------------------------------------------------------------------ kubeadm upgrade apply

def cmd_apply(kubeadm, argv: list[str]) -> None:
    values, positionals, _ = kubeadm.parse_flags(argv, {**COMMON_FLAGS, 'yes': 'bool', 'force': 'bool', 'etcd-upgrade': 'bool',
                                                         'certificate-renewal': 'bool', 'image-pull-timeout': 'str',
                                                         'patches': 'str', 'print-config': 'bool', 'skip-phases': 'list'})
    if len(positionals) > 1:
        raise PhaseError(f'[upgrade/config] FATAL: expected one argument (the version), got {len(positionals)}')
    client = kubeadm.admin_client(values.get('kubeconfig') or kubeadm.ADMIN_CONF)
    cluster_cfg, kubelet_cm = read_cluster_configuration(client)
    requested = positionals[0] if positionals else cluster_cfg.get('kubernetesVersion', '')
    if not requested:
        raise PhaseError('missing version argument')
    try:
        target = versions.normalize(requested)
    except versions.VersionError:
        raise PhaseError(f'unable to parse normalized version "{requested}" as a semantic version', 'preflight')
    out('[upgrade/preflight] Running preflight checks')
    nodes = client.op('get', kind='Node')
    health_checks(client, nodes, {i.lower() for i in values.get('ignore-preflight-errors', [])})
    out(f'[upgrade/preflight] You have chosen to upgrade the cluster version to "{target}"')
    current = cluster_version(client)
    out(f'[upgrade/versions] Cluster version: {current}')
    own = common.kube_version()
    out(f'[upgrade/versions] kubeadm version: {own}')
    mandatory, skippable = versions.policy_errors(current, own, target, [v for v in kubelet_versions(nodes).values() if v])
    refusal = versions.policy_refusal(mandatory, skippable, bool(values.get('force')))
    if refusal:
        raise PhaseError(refusal, 'preflight')
    if skippable:
        out(f'[upgrade/preflight] Found {len(skippable)} potential version compatibility errors but skipping since the --force flag is set: ')
        out()
        sys.stdout.write(versions.format_errors(skippable))
    confirm(values)
    out('[upgrade/preflight] Pulling images required for setting up a Kubernetes cluster')
    out('[upgrade/preflight] This might take a minute or two, depending on the speed of your internet connection')
    out("[upgrade/preflight] You can also perform this action beforehand using 'kubeadm config images pull'")
    node = common.hostname()
    out(f'[upgrade/control-plane] Upgrading your static Pod-hosted control plane to version "{target}" (timeout: 5m0s)...')
    out(f'[upgrade/staticpods] Writing new Static Pod manifests to "/etc/kubernetes/tmp/kubeadm-upgraded-manifests{stamp()}"')
    out('[upgrade/staticpods] Current and new manifests of etcd are equal, skipping upgrade')
    upgrade_static_pods(client, node, target, f'/etc/kubernetes/tmp/kubeadm-backup-manifests-{stamp()}')
    out('[upgrade/control-plane] The control plane instance for this node was successfully upgraded!')
    cluster_cfg['kubernetesVersion'] = target
    networking = cluster_cfg.get('networking') or {}
    dns_ip = kubeadm.service_ip(networking.get('serviceSubnet', '10.96.0.0/12'), 10)
    domain = networking.get('dnsDomain', 'cluster.local')
    out('[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" Namespace')
    out('[kubelet] Creating a ConfigMap "kubelet-config" in namespace kube-system with the configuration for the kubelets in the cluster')
    kubelet_yaml = kubeadm.kubelet_config_yaml(dns_ip, domain)
    client.op('apply', objects=[
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'kubeadm-config', 'namespace': 'kube-system'},
         'data': {'ClusterConfiguration': common.dump_yaml(cluster_cfg)}},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'kubelet-config', 'namespace': 'kube-system'},
         'data': {'kubelet': kubelet_yaml}},
    ])
    write_kubelet_config({'data': {'kubelet': kubelet_yaml}}, f'/etc/kubernetes/tmp/kubeadm-kubelet-config-{stamp()}')
    out('[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!')
    out('[upgrade/bootstrap-token] Configuring bootstrap token and cluster-info RBAC rules')
    out('[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes')
    out('[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials')
    out('[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token')
    out('[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster')
    addons_cfg = {'serviceSubnet': networking.get('serviceSubnet', '10.96.0.0/12'), 'dnsDomain': domain,
                  'podSubnet': networking.get('podSubnet', ''), 'kubernetesVersion': target}
    client.op('apply', objects=kubeadm.coredns_and_proxy_objects(addons_cfg))
    out('[addons] Applied essential addon: CoreDNS')
    out('[addons] Applied essential addon: kube-proxy')
    out()
    out(f'[upgrade] SUCCESS! A control plane node of your cluster was upgraded to "{target}".')
    out()
    out('[upgrade] Now please proceed with upgrading the rest of the nodes by following the right order.')


# ------------------------------------------------------------------ kubeadm upgrade node

def cmd_node(kubeadm, argv: list[str]) -> None:
    values, positionals, _ = kubeadm.parse_flags(argv, {**COMMON_FLAGS, 'certificate-renewal': 'bool', 'etcd-upgrade': 'bool',
                                                         'patches': 'str', 'skip-phases': 'list', 'image-pull-timeout': 'str'})
    if positionals:
        raise PhaseError(f'unknown command "{positionals[0]}" for "kubeadm upgrade node"')
    control_plane = os.path.exists(manifest_path('kube-apiserver'))
    # A worker has no admin.conf: it reads the ConfigMaps with the kubelet's credentials, as kubeadm does.
    kubeconfig = values.get('kubeconfig') or (kubeadm.ADMIN_CONF if control_plane else '/etc/kubernetes/kubelet.conf')
    client = kubeadm.admin_client(kubeconfig)
    cluster_cfg, kubelet_cm = read_cluster_configuration(client)
    target = cluster_cfg['kubernetesVersion']
    out('[upgrade/preflight] Running pre-flight checks')
    if control_plane:
        out('[upgrade/preflight] Pulling images required for setting up a Kubernetes cluster')
        out('[upgrade/preflight] This might take a minute or two, depending on the speed of your internet connection')
        out("[upgrade/preflight] You can also perform this action beforehand using 'kubeadm config images pull'")
        out(f'[upgrade/control-plane] Upgrading your Static Pod-hosted control plane instance to version "{target}"...')
        out('[upgrade/staticpods] Current and new manifests of etcd are equal, skipping upgrade')
        upgrade_static_pods(client, common.hostname(), target, f'/etc/kubernetes/tmp/kubeadm-backup-manifests-{stamp()}')
        out('[upgrade/control-plane] The control plane instance for this node was successfully upgraded!')
        out('[upgrade/kubeconfig] The kubeconfig files for this node were successfully upgraded!')
    else:
        out('[upgrade/preflight] Skipping prepull. Not a control plane node.')
        out('[upgrade/control-plane] Skipping phase. Not a control plane node.')
        out('[upgrade/kubeconfig] Skipping phase. Not a control plane node.')
    write_kubelet_config(kubelet_cm, f'/etc/kubernetes/tmp/kubeadm-kubelet-config-{stamp()}')
    out('[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!')
    if control_plane:
        out('[upgrade/addon] Skipping the addon/coredns phase. The addon will be upgraded once all control plane nodes are upgraded.')
    else:
        out('[upgrade/addon] Skipping the addon/coredns phase. Not a control plane node.')
        out('[upgrade/addon] Skipping the addon/kube-proxy phase. Not a control plane node.')
    out('[upgrade] The configuration for this node was successfully upgraded!')
    out('[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.')


# ------------------------------------------------------------------ kubeadm upgrade plan

def cmd_plan(kubeadm, argv: list[str]) -> None:
    values, positionals, _ = kubeadm.parse_flags(argv, {**COMMON_FLAGS, 'output': 'str', 'show-managed-fields': 'bool',
                                                         'print-config': 'bool', 'allow-missing-template-keys': 'bool'})
    client = kubeadm.admin_client(values.get('kubeconfig') or kubeadm.ADMIN_CONF)
    out('[preflight] Running pre-flight checks.')
    cluster_cfg, _ = read_cluster_configuration(client)
    nodes = client.op('get', kind='Node')
    health_checks(client, nodes, {i.lower() for i in values.get('ignore-preflight-errors', [])})
    out('[upgrade] Fetching available versions to upgrade to')
    current = cluster_version(client)
    own = common.kube_version()
    out(f'[upgrade/versions] Cluster version: {current}')
    out(f'[upgrade/versions] kubeadm version: {own}')
    if positionals:
        try:
            target = versions.normalize(positionals[0])
        except versions.VersionError:
            raise PhaseError(f'unable to parse normalized version "{positionals[0]}" as a semantic version')
    else:
        # The lab has no internet: real kubeadm fails to fetch the stable label and falls back to itself.
        url = 'https://dl.k8s.io/release/stable.txt'
        common.klog('I', 'version.go:261', f'remote version is much newer: could not fetch a Kubernetes version from the internet: unable to get URL "{url}": Get "{url}": dial tcp: lookup dl.k8s.io on 127.0.0.53:53: no such host; falling back to: {own}')
        target = own
    out(f'[upgrade/versions] Target version: {target}')
    mandatory, _ = versions.policy_errors(current, own, target, [v for v in kubelet_versions(nodes).values() if v])
    if mandatory:
        raise PhaseError(versions.policy_refusal(mandatory, [], False) or '')
    major, minor, _, _ = versions.parse(current)
    out(f'[upgrade/versions] Latest version in the v{major}.{minor} series: {current}')
    out()
    if not versions.less_than(current, target):
        out("Awesome, you're up-to-date! Enjoy!")
        return
    masters = sorted(n['metadata']['name'] for n in nodes if is_control_plane(n))
    rows = [['COMPONENT', 'NODE', 'CURRENT', 'TARGET']]
    rows += [['kubelet', name, version, target] for name, version in sorted(kubelet_versions(nodes).items())]
    out("Components that must be upgraded manually after you have upgraded the control plane with 'kubeadm upgrade apply':")
    sys.stdout.write(common.tabwrite(rows, minwidth=0, padding=3))
    out()
    out('Upgrade to the latest stable version:')
    out()
    rows = [['COMPONENT', 'NODE', 'CURRENT', 'TARGET']]
    for component in CONTROL_PLANE_COMPONENTS:
        for name in masters:
            image = mirror_image(client, component, name) or ''
            rows.append([component, name, image.rsplit(':', 1)[-1] if ':' in image else current, target])
    rows.append(['kube-proxy', '', current, target])
    rows.append(['CoreDNS', '', 'v1.12.1', 'v1.12.1'])
    for name in masters:
        image = mirror_image(client, 'etcd', name) or ''
        tag = image.rsplit(':', 1)[-1] if ':' in image else ''
        rows.append(['etcd', name, tag, tag])
    sys.stdout.write(common.tabwrite(rows, minwidth=0, padding=3))
    out()
    out('You can now apply the upgrade by executing the following command:')
    out()
    out(f'\tkubeadm upgrade apply {target}')
    out()
    if own != target:
        out(f'Note: Before you can perform this upgrade, you have to update kubeadm to {target}.')
        out()
    out('_____________________________________________________________________')
    out()
    out('The table below shows the current state of component configs as understood by this version of kubeadm.')
    out('Configs that have a "yes" mark in the "MANUAL UPGRADE REQUIRED" column require manual config upgrade or')
    out('resetting to kubeadm defaults before a successful upgrade can be performed. The version to manually')
    out('upgrade to is denoted in the "PREFERRED VERSION" column.')
    out()
    sys.stdout.write(common.tabwrite([['API GROUP', 'CURRENT VERSION', 'PREFERRED VERSION', 'MANUAL UPGRADE REQUIRED'],
                                      ['kubeproxy.config.k8s.io', 'v1alpha1', 'v1alpha1', 'no'],
                                      ['kubelet.config.k8s.io', 'v1beta1', 'v1beta1', 'no']], minwidth=0, padding=3))
    out('_____________________________________________________________________')
    out()


def main(kubeadm, argv: list[str]) -> None:
    """`kubeadm upgrade <plan|apply|node> …`; `kubeadm` is the kubeadm stand-in's module (its flag parser and helpers)."""
    commands = {'plan': cmd_plan, 'apply': cmd_apply, 'node': cmd_node}
    if not argv or argv[0] not in commands:
        if argv and not argv[0].startswith('-'):
            raise PhaseError(f'unknown command "{argv[0]}" for "kubeadm upgrade"')
        out('Upgrade your cluster smoothly to a newer version with this command\n\nUsage:\n  kubeadm upgrade [command]\n\n'
            'Available Commands:\n  apply       Upgrade your Kubernetes cluster to the specified version\n'
            '  diff        Show what differences would be applied to existing static pod manifests. See also: kubeadm upgrade apply --dry-run\n'
            '  node        Upgrade commands for a node in the cluster\n'
            '  plan        Check which versions are available to upgrade to and validate whether your current cluster is upgradeable.')
        return
    commands[argv[0]](kubeadm, argv[1:])
