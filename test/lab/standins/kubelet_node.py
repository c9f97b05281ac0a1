"""What the kubelet stand-in reads about its node, as pure functions (no I/O; unit-tested from
test/unit/standins-kubelet.test.ts): swap in /proc/swaps, the container runtime's cgroup driver and
CNI directories from `containerd config dump`, whether a CNI config and the plugins it names are
there, and which pods install one.
"""
from __future__ import annotations

import json
import re

try:
    import tomllib  # Python 3.11 (Debian bookworm)
except ImportError:  # pragma: no cover - older Pythons have no TOML parser in the standard library
    tomllib = None

SWAP_MESSAGE = 'running with swap on is not supported, please disable swap! or set --fail-swap-on flag to false. /proc/swaps contained: '
CNI_NOT_READY = ('container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady '
                 'message:Network plugin returns error: cni plugin not initialized')
DEFAULT_CNI_BIN_DIR = '/opt/cni/bin'
DEFAULT_CNI_CONF_DIR = '/etc/cni/net.d'
CNI_CONFIG_SUFFIXES = ('.conf', '.conflist', '.json')


def swap_error(proc_swaps: str | None, fail_swap_on: bool) -> str | None:
    """kubelet's validateSwapConfiguration (pkg/kubelet/cm/container_manager_linux.go): with
    failSwapOn, more than the header line in /proc/swaps (after TrimSpace) is an error listing the
    lines as Go's %v prints a []string. A missing /proc/swaps (None) means no swap."""
    if not fail_swap_on or proc_swaps is None:
        return None
    lines = proc_swaps.strip().split('\n')
    if len(lines) <= 1:
        return None
    return f'{SWAP_MESSAGE}[{" ".join(lines)}]'


def go_quote(text: str) -> str:
    """A string as klog prints a structured value (`err="..."`): Go's strconv.Quote escapes."""
    out = text.replace('\\', '\\\\').replace('"', '\\"').replace('\t', '\\t').replace('\n', '\\n').replace('\r', '\\r')
    return f'"{out}"'


def _table(doc, *path):
    for key in path:
        if not isinstance(doc, dict):
            return {}
        doc = doc.get(key)
    return doc if isinstance(doc, dict) else {}


def runtime_settings(dump_text: str) -> dict:
    """From `containerd config dump` (TOML): the default CRI runtime's name, whether runc uses the
    systemd cgroup driver (`SystemdCgroup` in its options; false when absent, as in containerd 2.x's
    default), and the CNI directories. Config version 2 (containerd 1.x,
    plugins."io.containerd.grpc.v1.cri") and 3 (2.x, plugins."io.containerd.cri.v1.runtime");
    `bin_dirs` (2.1+) before `bin_dir`. Raises ValueError for text that is not TOML."""
    if tomllib is None:
        raise ValueError('no TOML parser (Python 3.11 or later is needed)')
    try:
        doc = tomllib.loads(dump_text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f'containerd config dump is not TOML: {error}') from None
    plugins = _table(doc, 'plugins')
    cri = _table(plugins, 'io.containerd.cri.v1.runtime') or _table(plugins, 'io.containerd.grpc.v1.cri') or _table(plugins, 'cri')
    runtimes = _table(cri, 'containerd', 'runtimes')
    name = _table(cri, 'containerd').get('default_runtime_name') or 'runc'
    options = _table(runtimes, name, 'options')
    cni = _table(cri, 'cni')
    bin_dirs = cni.get('bin_dirs') or ([cni['bin_dir']] if cni.get('bin_dir') else [DEFAULT_CNI_BIN_DIR])
    return {
        'runtime': name,
        'systemd_cgroup': options.get('SystemdCgroup') is True,
        'cni_bin_dirs': list(bin_dirs),
        'cni_conf_dir': cni.get('conf_dir') or DEFAULT_CNI_CONF_DIR,
    }


def containerd_reports_cgroup_driver(version: str) -> bool:
    """True for containerd 2.0 and later, which answer the CRI RuntimeConfig call
    (KubeletCgroupDriverFromCRI, GA in 1.34: the kubelet then takes the runtime's driver and ignores
    its own cgroupDriver). containerd 1.x does not: the kubelet falls back to its config."""
    match = re.search(r'(\d+)\.(\d+)', version or '')
    return bool(match) and int(match.group(1)) >= 2


def cni_plugin_types(text: str) -> list[str] | None:
    """The plugin types a CNI config names: a .conflist's `plugins[].type`, a .conf's `type`. None
    when it is not a CNI network configuration (not JSON, no type, a list without plugins)."""
    try:
        config = json.loads(text)
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    if 'plugins' in config:
        plugins = config['plugins']
        if not isinstance(plugins, list) or not plugins:
            return None
        types = [p.get('type') for p in plugins if isinstance(p, dict)]
    else:
        types = [config.get('type')]
    if not types or not all(isinstance(t, str) and t for t in types):
        return None
    return types


def cni_not_ready(configs: dict[str, str], missing_plugins) -> str | None:
    """None when the node's network is ready, else the NotReady message. `configs`: the config
    directory's files (name → text). Like containerd's CNI loader, the first file in name order with
    a CNI suffix that parses is the network; it is ready only when every plugin it names exists
    (`missing_plugins(types)` → the ones not in the CNI bin directories)."""
    for name in sorted(configs):
        if not name.endswith(CNI_CONFIG_SUFFIXES):
            continue
        types = cni_plugin_types(configs[name])
        if types is None:
            continue
        return None if not missing_plugins(types) else CNI_NOT_READY
    return CNI_NOT_READY


def installs_cni_config(pod_spec: dict, cni_dir: str = DEFAULT_CNI_CONF_DIR) -> bool:
    """Whether a pod installs a CNI config on its node: one of its containers or init containers
    mounts, writable, a hostPath volume that is the host's CNI config directory (/etc/cni/net.d, where
    the CNIs write theirs) or a directory above it. That is the install step of each CNI's DaemonSet,
    an init container in the current manifests: weave's weave-init mounts the host's /etc at /host/etc
    (init.sh writes /host/etc/cni/net.d/10-weave.conflist), calico's install-cni mounts /etc/cni/net.d
    at /host/etc/cni/net.d, flannel's install-cni mounts it where its `cp` writes 10-flannel.conflist.
    A volume no container mounts gives the pod no access."""
    def normal(path: str) -> str:
        return '/' + '/'.join(part for part in path.split('/') if part)
    target = normal(cni_dir)
    reaching = set()
    for volume in pod_spec.get('volumes') or []:
        path = (volume.get('hostPath') or {}).get('path')
        if isinstance(path, str) and path.startswith('/'):
            path = normal(path)
            if target == path or target.startswith(path.rstrip('/') + '/'):
                reaching.add(volume.get('name'))
    for container in (pod_spec.get('initContainers') or []) + (pod_spec.get('containers') or []):
        for mount in container.get('volumeMounts') or []:
            if mount.get('name') in reaching and not mount.get('readOnly'):
                return True
    return False


def cgroup_driver_mismatch(kubelet_driver: str, systemd_cgroup: bool) -> str | None:
    """The runtime's side of a cgroup driver mismatch, as the kubelet's journal shows it when its
    pods' sandboxes are created (None when the drivers agree). A kubelet on cgroupfs hands runc a
    path where runc on systemd wants `slice:prefix:name`: sandbox creation fails (the error below,
    containerd 1.6/runc 1.1 wording). A kubelet on systemd with runc on cgroupfs: the sandboxes start
    outside the kubelet's slices and are killed and re-created over and over."""
    if (kubelet_driver == 'systemd') == systemd_cgroup:
        return None
    if systemd_cgroup:
        return ('"RunPodSandbox from runtime service failed" err="rpc error: code = Unknown desc = failed to create containerd task: '
                'failed to create shim task: OCI runtime create failed: runc create failed: expected cgroupsPath to be of format '
                '\\"slice:prefix:name\\" for systemd cgroups, got \\"/kubepods/burstable/pod<uid>/<sandbox id>\\" instead: unknown"')
    return '"Pod sandbox changed, it will be killed and re-created."'
