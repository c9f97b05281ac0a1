"""kubeadm's configuration files as the stand-in reads them: API versions, kinds, strict field
checking (unknown fields are a klog warning, as in real kubeadm), defaults, and the flag forms.
Pure functions, unit tested from test/unit/standins-kubeadm-config.test.ts."""
from __future__ import annotations

import standin_common as common

S = 'scalar'
LIST = 'list'   # list of scalars
MAP = 'map'     # map of scalars


def _obj(**fields):
    return ('obj', fields)


def _list_of(schema):
    return ('listof', schema)


TAINT = _obj(key=S, value=S, effect=S, timeAdded=S)
ARG = _obj(name=S, value=S)
ENV = _obj(name=S, value=S, valueFrom=MAP)
VOLUME = _obj(name=S, hostPath=S, mountPath=S, readOnly=S, pathType=S)
ENDPOINT = _obj(advertiseAddress=S, bindPort=S)
PATCHES = _obj(directory=S)
TOKEN = _obj(token=S, description=S, ttl=S, expires=S, usages=LIST, groups=LIST)
TIMEOUTS = _obj(controlPlaneComponentHealthCheck=S, kubeletHealthCheck=S, kubernetesAPICall=S, etcdAPICall=S,
                tlsBootstrap=S, discovery=S, upgradeManifests=S)


def _node_registration(v4: bool):
    fields = dict(name=S, criSocket=S, taints=_list_of(TAINT), ignorePreflightErrors=LIST, imagePullPolicy=S)
    fields['kubeletExtraArgs'] = _list_of(ARG) if v4 else MAP
    if v4:
        fields['imagePullSerial'] = S
    return _obj(**fields)


def _component(v4: bool, api_server: bool = False):
    fields = dict(extraArgs=_list_of(ARG) if v4 else MAP, extraVolumes=_list_of(VOLUME))
    if v4:
        fields['extraEnvs'] = _list_of(ENV)
    if api_server:
        fields['certSANs'] = LIST
        if not v4:
            fields['timeoutForControlPlane'] = S
    return _obj(**fields)


def _schemas(v4: bool) -> dict:
    common_top = dict(apiVersion=S, kind=S)
    local_etcd = dict(imageRepository=S, imageTag=S, dataDir=S, extraArgs=_list_of(ARG) if v4 else MAP,
                      serverCertSANs=LIST, peerCertSANs=LIST)
    if v4:
        local_etcd['extraEnvs'] = _list_of(ENV)
    cluster = dict(common_top,
                   etcd=_obj(local=_obj(**local_etcd), external=_obj(endpoints=LIST, caFile=S, certFile=S, keyFile=S)),
                   networking=_obj(serviceSubnet=S, podSubnet=S, dnsDomain=S), kubernetesVersion=S,
                   controlPlaneEndpoint=S, apiServer=_component(v4, True), controllerManager=_component(v4),
                   scheduler=_component(v4), dns=_obj(imageRepository=S, imageTag=S, **({'disabled': S} if v4 else {})),
                   certificatesDir=S, imageRepository=S, featureGates=MAP, clusterName=S)
    if v4:
        cluster.update(proxy=_obj(disabled=S), encryptionAlgorithm=S, certificateValidityPeriod=S,
                       caCertificateValidityPeriod=S)
    init = dict(common_top, bootstrapTokens=_list_of(TOKEN), nodeRegistration=_node_registration(v4),
                localAPIEndpoint=ENDPOINT, certificateKey=S, skipPhases=LIST, patches=PATCHES)
    discovery = dict(bootstrapToken=_obj(token=S, apiServerEndpoint=S, caCertHashes=LIST, unsafeSkipCAVerification=S),
                     file=_obj(kubeConfigPath=S), tlsBootstrapToken=S)
    if not v4:
        discovery['timeout'] = S
    join = dict(common_top, nodeRegistration=_node_registration(v4), caCertPath=S, discovery=_obj(**discovery),
                controlPlane=_obj(localAPIEndpoint=ENDPOINT, certificateKey=S), skipPhases=LIST, patches=PATCHES)
    if v4:
        init.update(dryRun=S, timeouts=TIMEOUTS)
        join.update(dryRun=S, timeouts=TIMEOUTS)
    return {'InitConfiguration': _obj(**init), 'ClusterConfiguration': _obj(**cluster), 'JoinConfiguration': _obj(**join)}


def unknown_fields(doc, schema, prefix: str = '') -> list[str]:
    """Field paths in `doc` that `schema` does not know, as sigs.k8s.io/yaml strict decoding names them."""
    out = []
    if schema in (S, LIST, MAP) or doc is None:
        return out
    kind, inner = schema
    if kind == 'listof':
        for index, item in enumerate(doc if isinstance(doc, list) else []):
            out += unknown_fields(item, inner, f'{prefix}[{index}]')
        return out
    if not isinstance(doc, dict):
        return out
    for key, value in doc.items():
        path = f'{prefix}.{key}' if prefix else str(key)
        if key not in inner:
            out.append(path)
        else:
            out += unknown_fields(value, inner[key], path)
    return out


class ConfigError(Exception):
    pass


def parse_config(text: str, version: tuple[int, int, int], where: str) -> tuple[dict, list[str]]:
    """Splits a kubeadm config file into its documents by kind. Returns ({kind: doc}, warnings);
    raises ConfigError with kubeadm's message for API versions it does not support."""
    warnings: list[str] = []
    docs: dict = {}
    try:
        documents = common.load_yaml_documents(text)
    except common.yaml.YAMLError as error:
        raise ConfigError(f'error converting YAML to JSON: {error}')
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        api_version, kind = str(doc.get('apiVersion', '')), str(doc.get('kind', ''))
        if not api_version or not kind:
            raise ConfigError(f'invalid configuration for GroupVersionKind /, Kind=: kind and apiVersion is mandatory information that must be specified')
        group = common.group_of(api_version)
        gv = api_version.split('/')[-1]
        if group != 'kubeadm.k8s.io':
            docs[kind] = doc  # KubeletConfiguration, KubeProxyConfiguration: passed through
            continue
        old = {'v1alpha1': 'v1.11', 'v1alpha2': 'v1.12', 'v1alpha3': 'v1.14', 'v1beta1': 'v1.15', 'v1beta2': 'v1.26'}
        if gv in old:
            raise ConfigError(f'your configuration file uses an old API spec: "{api_version}". Please use kubeadm {old[gv]} '
                              "instead and run 'kubeadm config migrate --old-config old-config-file --new-config "
                              "new-config-file', which will write the new, similar spec using a newer API version.")
        if gv == 'v1beta4' and version < (1, 31, 0):
            raise ConfigError(f'no kind "{kind}" is registered for version "{api_version}" in scheme '
                              '"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"')
        if gv not in ('v1beta3', 'v1beta4'):
            raise ConfigError(f'no kind "{kind}" is registered for version "{api_version}" in scheme '
                              '"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"')
        schemas = _schemas(gv == 'v1beta4')
        if kind not in schemas:
            warnings.append(f'[config] WARNING: Ignored configuration document with GroupVersionKind {api_version}, Kind={kind}')
            continue
        if gv == 'v1beta3' and version >= (1, 31, 0):
            warnings.append(f'your configuration file uses a deprecated API spec: "{api_version}" (kind: "{kind}"). '
                            "Please use 'kubeadm config migrate --old-config old-config-file --new-config new-config-file', "
                            'which will write the new, similar spec using a newer API version.')
        unknown = unknown_fields(doc, schemas[kind])
        if unknown:
            fields = ', '.join(f'unknown field "{field}"' for field in unknown)
            warnings.append(f'error unmarshaling configuration schema.GroupVersionKind{{Group:"kubeadm.k8s.io", '
                            f'Version:"{gv}", Kind:"{kind}"}}: strict decoding error: {fields}')
        docs[kind] = doc
    return docs, warnings


def extra_args(value) -> dict:
    """v1beta4 lists of {name, value} and v1beta3 maps, both to a dict."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {str(item.get('name')): str(item.get('value', '')) for item in value or [] if isinstance(item, dict)}


def split_endpoint(endpoint: str, default_port: int) -> tuple[str, int]:
    if endpoint.startswith('['):
        host, _, port = endpoint[1:].partition(']:')
        return host, int(port or default_port)
    if endpoint.count(':') == 1:
        host, port = endpoint.split(':')
        return host, int(port)
    return endpoint, default_port


def timeout_of(docs: dict, kind: str, name: str, default: float) -> float:
    doc = docs.get(kind) or {}
    value = (doc.get('timeouts') or {}).get(name)
    if value is None and name == 'discovery':
        value = (doc.get('discovery') or {}).get('timeout')
    if value is None and name == 'controlPlaneComponentHealthCheck':
        value = ((docs.get('ClusterConfiguration') or {}).get('apiServer') or {}).get('timeoutForControlPlane')
    try:
        return common.parse_duration(value) if value is not None else default
    except ValueError:
        return default


# Flags that `--config` may be combined with: kubeadm's allow-list (isAllowedFlag in
# cmd/kubeadm/app/apis/kubeadm/validation/validation.go, the same for init and join) plus every --skip-* flag.
# Everything else, --control-plane and --certificate-key included, belongs in the config file.
FLAGS_WITH_CONFIG = {'config', 'ignore-preflight-errors', 'dry-run', 'kubeconfig', 'node-name', 'kubeconfig-dir',
                     'upload-certs', 'print-join-command', 'rootfs', 'v', 'log-file'}
INIT_FLAGS_WITH_CONFIG = FLAGS_WITH_CONFIG
JOIN_FLAGS_WITH_CONFIG = FLAGS_WITH_CONFIG


def mix_error(given: set[str], allowed: set[str]) -> str | None:
    """kubeadm's ValidateMixedArguments: pflag visits flags in sorted order, printed as a Go %v list."""
    bad = sorted(name for name in given - allowed if not name.startswith('skip-'))
    if bad:
        return f"can not mix '--config' with arguments {'[' + ' '.join(bad) + ']'}"
    return None
