"""kubeadm's pre-flight checks (cmd/kubeadm/app/preflight, v1.34) for the stand-in."""
from __future__ import annotations

import gzip
import os
import re
import shutil
import socket
import subprocess
import sys

import standin_common as common

IPV4_FORWARD = '/proc/sys/net/ipv4/ip_forward'
BRIDGE_NF = '/proc/sys/net/bridge/bridge-nf-call-iptables'


class Check:
    def __init__(self, name: str, fn):
        self.name = name
        self.fn = fn


def _name_for_path(prefix: str, path: str) -> str:
    return f'{prefix}-{path.replace("/", "-")}'


def num_cpu(required: int = 2):
    count = len(os.sched_getaffinity(0))
    return [], ([f'the number of available CPUs {count} is less than the required {required}'] if count < required else [])


def mem(required: int = 1700):
    actual = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // 1024 // 1024
    return [], ([f'the system RAM ({actual} MB) is less than the minimum {required} MB'] if actual < required else [])


def port_open(port: int):
    def fn():
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(('::', port))
            sock.listen(1)
        except OSError:
            return [], [f'Port {port} is in use']
        finally:
            sock.close()
        return [], []
    return Check(f'Port-{port}', fn)


def file_available(path: str):
    return Check(_name_for_path('FileAvailable', path),
                 lambda: ([], [f'{path} already exists'] if os.path.exists(path) else []))


def dir_available(path: str):
    def fn():
        if not os.path.exists(path):
            return [], []
        return [], ([f'{path} is not empty'] if os.listdir(path) else [])
    return Check(_name_for_path('DirAvailable', path), fn)


def file_content(path: str, content: str = '1'):
    def fn():
        try:
            with open(path) as handle:
                value = handle.read(len(content))
        except OSError:
            return [], [f'{path} does not exist']
        return [], ([] if value == content else [f'{path} contents are not set to {content}'])
    return Check(_name_for_path('FileContent', path), fn)


def in_path(executable: str, mandatory: bool):
    def fn():
        if shutil.which(executable):
            return [], []
        message = f'{executable} not found in system path'
        return ([], [message]) if mandatory else ([message], [])
    return Check(f'FileExisting-{executable}', fn)


def swap():
    try:
        with open('/proc/swaps') as handle:
            lines = [line for line in handle.read().splitlines() if line.strip()]
    except OSError:
        return [], []
    if len(lines) > 1:
        return ['swap is supported for cgroup v2 only. The kubelet must be properly configured to use swap. Please refer to '
                'https://kubernetes.io/docs/concepts/architecture/nodes/#swap-memory, or disable swap on the node'], []
    return [], []


def _systemctl(*args) -> subprocess.CompletedProcess:
    return subprocess.run(['systemctl', *args], capture_output=True, text=True)


def service_kubelet():
    if _systemctl('cat', 'kubelet.service').returncode != 0:
        return ['kubelet service does not exist'], []
    if _systemctl('is-enabled', 'kubelet.service').stdout.strip() != 'enabled':
        return ["kubelet service is not enabled, please run 'systemctl enable kubelet.service'"], []
    return [], []


def firewalld(ports):
    def fn():
        if _systemctl('cat', 'firewalld.service').returncode != 0:
            return [], []
        if _systemctl('is-active', 'firewalld.service').stdout.strip() == 'active':
            return [f'firewalld is active, please ensure ports [{" ".join(str(p) for p in ports)}] are open or your cluster may not function correctly'], []
        return [], []
    return Check('Firewalld', fn)


def hostname_check(node_name: str):
    def fn():
        warnings = []
        if not re.fullmatch(r'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*', node_name):
            warnings.append(f'invalid node name format "{node_name}"')
        try:
            socket.gethostbyname(node_name)
        except OSError:
            warnings.append(f'hostname "{node_name}" could not be reached')
            warnings.append(f'hostname "{node_name}": lookup {node_name}: no such host')
        return warnings, []
    return Check('Hostname', fn)


def _proxy_for(host: str) -> str | None:
    proxy = os.environ.get('HTTPS_PROXY') or os.environ.get('https_proxy')
    if not proxy:
        return None
    no_proxy = os.environ.get('NO_PROXY') or os.environ.get('no_proxy') or ''
    for entry in [e.strip() for e in no_proxy.split(',') if e.strip()]:
        if entry == '*' or host == entry or host.endswith('.' + entry.lstrip('.')):
            return None
        try:
            import ipaddress
            if '/' in entry and ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                return None
        except ValueError:
            pass
    return proxy


def http_proxy(host: str):
    def fn():
        proxy = _proxy_for(host)
        return ([f'Connection to "https://{host}" uses proxy "{proxy}". If that is not intended, adjust your proxy settings'] if proxy else []), []
    return Check('HTTPProxy', fn)


def http_proxy_cidr(cidr: str):
    def fn():
        if not cidr:
            return [], []
        import ipaddress
        try:
            first = str(next(ipaddress.ip_network(cidr, strict=False).hosts()))
        except ValueError:
            return [], [f'error parsing CIDR "{cidr}"']
        proxy = _proxy_for(first)
        if proxy:
            return [f'connection to "{cidr}" uses proxy "{proxy}". This may lead to malfunctional cluster setup. Make sure '
                    'that Pod and Services IP ranges specified correctly as exceptions in proxy configuration'], []
        return [], []
    return Check('HTTPProxyCIDR', fn)


def kubelet_version(k8s_version: str | None):
    def fn():
        try:
            out = subprocess.run(['kubelet', '--version'], capture_output=True, text=True, timeout=10).stdout
        except OSError as error:
            return [], [f"couldn't get kubelet version: {error}"]
        match = re.search(r'v(\d+)\.(\d+)\.(\d+)', out)
        if not match:
            return [], [f'couldn\'t get kubelet version: cannot parse "{out.strip()}"']
        kubelet = tuple(int(x) for x in match.groups())
        kubeadm = common.version_tuple()
        minimum = (kubeadm[0], kubeadm[1] - 1, 0)
        if kubelet < minimum:
            return [], [f'Kubelet version "{out.split()[-1]}" is lower than kubeadm can support. Please upgrade kubelet']
        if k8s_version:
            cp = common.version_tuple(k8s_version)
            if kubelet[0] > cp[0] or kubelet[1] > cp[1]:
                return [], [f'the kubelet version is higher than the control plane version. This is not a supported version skew '
                            f'and may lead to a malfunctional cluster. Kubelet version: "{".".join(map(str, kubelet))}" '
                            f'Control plane version: "{k8s_version.lstrip("v")}"']
        return [], []
    return Check('KubeletVersion', fn)


def kubernetes_version(k8s_version: str):
    def fn():
        kubeadm = common.version_tuple()
        k8s = common.version_tuple(k8s_version)
        if k8s >= (kubeadm[0], kubeadm[1] + 1, 0):
            return [f'Kubernetes version is greater than kubeadm version. Please consider to upgrade kubeadm. Kubernetes '
                    f'version: {k8s_version.lstrip("v")}. Kubeadm version: {kubeadm[0]}.{kubeadm[1]}.x'], []
        return [], []
    return Check('KubernetesVersion', fn)


def cri(endpoint: str):
    def fn():
        error = common.cri_error(endpoint)
        return [], ([f'container runtime is not running: {error}'] if error else [])
    return Check('CRI', fn)


# ------------------------------------------------------------------ SystemVerification

KERNEL_CONFIGS = [
    ('NAMESPACES', True, ''), ('NET_NS', True, ''), ('PID_NS', True, ''), ('IPC_NS', True, ''), ('UTS_NS', True, ''),
    ('CGROUPS', True, ''), ('CPUSETS', True, ''), ('MEMCG', True, ''), ('INET', True, ''), ('EXT4_FS', True, ''),
    ('PROC_FS', True, ''), ('NETFILTER_XT_TARGET_REDIRECT', True, ''), ('NETFILTER_XT_MATCH_COMMENT', True, ''),
    ('FAIR_GROUP_SCHED', True, ''), ('OVERLAY_FS', False, 'Required for overlayfs.'), ('AUFS_FS', False, 'Required for aufs.'),
    ('BLK_DEV_DM', False, 'Required for devicemapper.'), ('CFS_BANDWIDTH', False, 'Required for CPU quota.'),
    ('SECCOMP', False, 'Required for seccomp.'), ('SECCOMP_FILTER', False, 'Required for seccomp mode 2.'),
]
ALIASES = {'NETFILTER_XT_TARGET_REDIRECT': ['IP_NF_TARGET_REDIRECT']}


def _kernel_config() -> dict | None:
    release = os.uname().release
    for path in ['/proc/config.gz', f'/boot/config-{release}', f'/usr/src/linux-{release}/.config', '/usr/src/linux/.config',
                 f'/usr/lib/modules/{release}/config', f'/lib/modules/{release}/build/.config']:
        try:
            raw = gzip.open(path).read() if path.endswith('.gz') else open(path, 'rb').read()
        except OSError:
            continue
        config = {}
        for line in raw.decode(errors='replace').splitlines():
            match = re.match(r'CONFIG_(\w+)=(\S+)', line)
            if match:
                config[match.group(1)] = match.group(2)
        return config
    return None


def cgroup_controllers() -> tuple[list[str], bool]:
    """(enabled controllers, cgroup v2?) — from the test-only override, cgroup.controllers (v2) or /proc/cgroups (v1)."""
    override = common._knob('cgroup-controllers', 'STANDIN_CGROUP_CONTROLLERS')
    if override:
        text = common.read_text(override) or ''
        return text.split(), True
    v2 = common.read_text('/sys/fs/cgroup/cgroup.controllers')
    if v2 is not None:
        return v2.split() + ['devices', 'freezer'], True
    controllers = []
    for line in (common.read_text('/proc/cgroups') or '').splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4 and fields[3] == '1':
            controllers.append(fields[0])
    return controllers, False


def system_verification():
    def fn():
        report, warnings, errors = [], [], []
        release = os.uname().release
        report.append(f'KERNEL_VERSION: {release}')
        match = re.match(r'(\d+)\.(\d+)', release)
        if match and (int(match.group(1)), int(match.group(2))) < (4, 19):
            errors.append(f'kernel release {release} is unsupported. Recommended LTS version from the 4.x series is 4.19. '
                          'Any 5.x or 6.x versions are also supported. For cgroups v2 support, the minimal version is 4.15 and '
                          'the recommended version is 5.8+')
        config = _kernel_config()
        if config is None:
            errors.append('failed to parse kernel config: unable to load kernel module: "configs", output: "", err: exit status 1')
        else:
            for name, required, description in KERNEL_CONFIGS:
                value = next((config[n] for n in [name] + ALIASES.get(name, []) if n in config), None)
                if value == 'y':
                    report.append(f'CONFIG_{name}: enabled')
                elif value == 'm':
                    report.append(f'CONFIG_{name}: enabled (as module)')
                elif required:
                    report.append(f'CONFIG_{name}: missing')
                    errors.append(f'unexpected kernel config: CONFIG_{name}')
                else:
                    report.append(f'CONFIG_{name}: not set - {description}')
        report.append('OS: Linux')
        controllers, v2 = cgroup_controllers()
        if v2:
            required, optional = ['cpu', 'cpuset', 'devices', 'freezer', 'memory', 'pids'], ['hugetlb', 'io']
        else:
            required, optional = ['cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'memory', 'pids'], ['hugetlb', 'blkio']
            warnings.append('cgroups v1 support is in maintenance mode, please migrate to cgroups v2')
        missing_required = [c for c in required if c not in controllers]
        missing_optional = [c for c in optional if c not in controllers]
        for name in required + optional:
            report.append(f'CGROUPS_{name.upper()}: {"enabled" if name in controllers else "missing"}')
        if missing_optional:
            warnings.append(f'missing optional cgroups: {" ".join(missing_optional)}')
        if missing_required:
            errors.append(f'missing required cgroups: {" ".join(missing_required)}')
        if errors:
            sys.stdout.write('[preflight] The system verification failed. Printing the output from the verification:\n')
            sys.stdout.write(''.join(line + '\n' for line in report))
            sys.stdout.flush()
        return warnings, errors
    return Check('SystemVerification', fn)


# ------------------------------------------------------------------ lists and the runner

def common_checks(k8s_version: str | None, node_name: str, cri_socket: str, cri_connect_error: str | None) -> list[Check]:
    checks = []
    if cri_connect_error is None:
        checks.append(cri(cri_socket))
    checks.append(Check('Swap', swap))
    if k8s_version and common.version_tuple(k8s_version) < (1, 32, 0):
        checks.append(in_path('conntrack', True))
    checks += [in_path('ip', True), in_path('iptables', True), in_path('mount', True), in_path('nsenter', True),
               in_path('ebtables', False), in_path('ethtool', False), in_path('socat', False), in_path('tc', False),
               in_path('touch', False)]
    checks += [system_verification(), hostname_check(node_name), kubelet_version(k8s_version),
               Check('Service-Kubelet', service_kubelet), port_open(10250)]
    return checks


def ipv4_checks() -> list[Check]:
    checks = []
    if common.version_tuple() < (1, 30, 0):  # removed in v1.30 (kubernetes/kubernetes#123464)
        checks.append(file_content(BRIDGE_NF))
    checks.append(file_content(IPV4_FORWARD))
    return checks


def init_checks(cfg: dict, secondary: bool, cri_connect_error: str | None) -> list[Check]:
    manifests = common.MANIFESTS_DIR
    checks = [Check('NumCPU', num_cpu), Check('Mem', mem), kubernetes_version(cfg['kubernetesVersion']),
              firewalld([cfg['bindPort'], 10250]), port_open(cfg['bindPort']), port_open(10259), port_open(10257)]
    checks += [file_available(f'{manifests}/{name}.yaml') for name in
               ('kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'etcd')]
    checks.append(http_proxy(cfg['advertiseAddress']))
    for cidr in [c for c in cfg['serviceSubnet'].split(',')] + [c for c in cfg['podSubnet'].split(',')]:
        checks.append(http_proxy_cidr(cidr))
    if not secondary:
        checks += common_checks(cfg['kubernetesVersion'], cfg['nodeName'], cfg['criSocket'], cri_connect_error)
        checks += ipv4_checks()
    checks += [port_open(2379), port_open(2380), dir_available(cfg['etcdDataDir'])]
    return checks


def join_checks(node_name: str, cri_socket: str, api_host: str, control_plane: bool, cri_connect_error) -> list[Check]:
    checks = [file_available('/etc/kubernetes/kubelet.conf'), file_available('/etc/kubernetes/bootstrap-kubelet.conf')]
    checks += common_checks(None, node_name, cri_socket, cri_connect_error)
    if not control_plane:
        checks.append(file_available('/etc/kubernetes/pki/ca.crt'))
    checks.append(http_proxy(api_host))
    checks += ipv4_checks()
    return checks


class PreflightFailed(Exception):
    pass


def run_checks(checks: list[Check], ignore: set[str]) -> None:
    """RunChecks: warnings as they come, errors collected; both on stderr; raises on errors."""
    errors = []
    for check in checks:
        warnings, errs = check.fn()
        if 'all' in ignore or check.name.lower() in ignore:
            warnings, errs = warnings + errs, []
        for warning in warnings:
            sys.stderr.write(f'\t[WARNING {check.name}]: {warning}\n')
        errors += [f'\t[ERROR {check.name}]: {e}\n' for e in errs]
        sys.stderr.flush()
    if errors:
        fatal(''.join(errors))


def fatal(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f'[preflight] Some fatal errors occurred:\n{message}'
                     '[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\n')
    sys.stderr.flush()
    raise PreflightFailed()


def cri_connect(cri_socket: str) -> str | None:
    """addCommonChecks: when the CRI cannot be reached, kubeadm logs a warning and skips the CRI check."""
    error = common.cri_error(cri_socket)
    if error:
        message = f'failed to create new CRI runtime service: validate service connection: {error}'
        common.klog('W', 'checks.go:1049', "[preflight] WARNING: Couldn't create the interface used for talking to the "
                    f'container runtime: {message}')
        return message
    return None


def pull_images(cri_socket: str, cri_connect_error: str | None) -> None:
    print('[preflight] Pulling images required for setting up a Kubernetes cluster')
    print('[preflight] This might take a minute or two, depending on the speed of your internet connection')
    print("[preflight] You can also perform this action beforehand using 'kubeadm config images pull'")
    sys.stdout.flush()
    if cri_connect_error:
        fatal(cri_connect_error)
    # The stand-in pulls nothing: the lab has no registry, and no container ever runs.
