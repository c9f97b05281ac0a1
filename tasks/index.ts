/** Every task family, for playbooks: `import { ensureFile, … } from '../tasks/index.js'`. */

// Files and commands (any host)
export { ensureFile, ensureDirectory, ensureLine, ensureBlock, editLine, editBlock } from './files.js';
export type { FileParams, DirectoryParams, LineParams, BlockParams } from './files.js';
export { command } from './command.js';
export type { CommandParams } from './command.js';

// Node preparation (seeds 000, 001, 002, 004)
export { ensureSwapOff } from './swap.js';
export { ensureModule, ensureSysctl, ensureKernelCmdline, ensureMemoryCgroup, reboot } from './kernel.js';
export { parseKubernetesVersion, kubernetesMinor, releasedVersion, type KubernetesVersion } from './kubernetes-version.js';
export { ensureAptKey, ensureAptRepo, ensureAptSource, ensurePackages, aptUpdate, kubernetesRepo, kubernetesRepoUrl, dockerRepo, KUBERNETES_KEY_FINGERPRINT, KUBERNETES_REPO_BASE_URL } from './apt.js';
export type { AptKeyParams, AptRepoParams, AptSource } from './apt.js';
export { ensureContainerdCgroup, ensureDockerCgroupDriver } from './containerd.js';
export { ensureService, restartService, reloadService, ensureSystemdUnit } from './systemd.js';
export { ensureAlternatives, ensureIptablesLegacy, ensureHostsEntries, ensureHostname, ensureKubeletExtraArgs } from './system.js';
export { preflight, KUBERNETES_PROCESSES } from './preflight.js';
export { ensureFirewallPorts, firewallPortsForRole, type FirewallRole, type RolePortsParams } from './firewall.js';

// API server front ends (seeds 002, 003, 004)
export { ensureHaproxy, ensureHaproxyConfig, renderHaproxyConfig, type HaproxyParams, type HaproxyServer } from './haproxy.js';
export { ensureKeepalived, ensureKeepalivedConfig, ensureCheckScript, type KeepalivedParams } from './keepalived.js';

// RHEL family (seed 004 is CentOS 9)
export { ensureSelinuxPermissive, ensureYumRepo, ensureRpmPackages, kubernetesYumRepo, dockerYumRepo, ensureDockerYumRepo, isRhelFamilyOs, rpmContainerRuntimePackages, type YumRepoParams } from './rhel.js';

// kubeadm lifecycle
export { kubeadmInit, kubeadmJoin, type Cluster, type KubeadmInitParams, type KubeadmJoinParams } from './kubeadm.js';
export { ensureKubeconfig, fetchKubeconfig } from './kubeconfig.js';
export { installCni, CNI_MANIFESTS, type CniName } from './cni.js';
export { untaintControlPlanes, waitForNodesReady, smokeTest } from './cluster.js';

// Day 2: kubeadm upgrades, one node at a time
export { upgradeFacts, parseClusterNodes, parsePackagesIndex, upstreamVersion, manifestImageTag, UPGRADE_CORDON_MARKER, type UpgradeHostFacts, type ClusterNode } from './upgrade-facts.js';
export { upgradePackages, kubeadmUpgrade } from './upgrade.js';
export { cordonForUpgrade, drainForUpgrade, restartKubeletForUpgrade, nodeReadyAtVersion, uncordonAfterUpgrade } from './upgrade-node.js';

// The hard way (seed 003): PKI made on this machine, binaries downloaded once and checked
export { ensurePki, installPkiFiles, renderKubeconfig, renderEncryptionConfig, pkiFileNames } from './pki.js';
export type { Pki, PkiParams, CertificateRequest, KubeconfigRequest, InstallPkiFilesParams } from './pki.js';
export { ensureBinary } from './binary.js';
export type { BinaryParams } from './binary.js';
export { ensureControlPlane, ensureHealthzProxy, ensureNginxSite, ensureKubeletApiRbac, ensureClusterObjects, ensureFrontEndHaproxy, httpAnswers } from './control-plane.js';
export { renderKubeApiserverUnit, renderKubeControllerManagerUnit, renderKubeSchedulerUnit, renderKubeSchedulerConfig, renderHealthzSite, renderFrontEndHaproxyConfig } from './control-plane.js';
export type { ControlPlaneParams, KubeApiserverOptions, KubeControllerManagerOptions, KubeSchedulerOptions, HttpCheckParams, NginxSiteParams, FrontEndServer } from './control-plane.js';
export { ensureEtcdMember, etcdHealthy, renderEtcdUnit } from './etcd.js';
export type { EtcdMemberParams } from './etcd.js';
export { readEtcdMembership, readEtcdMembers, parseEtcdMembership, etcdMemberTable, quorumAfterRemoval, urlHost } from './etcd-members.js';
export type { EtcdMember, EtcdMembershipParams } from './etcd-members.js';
export { drainForRemoval, deleteClusterNode, removeEtcdMember, readClusterNode } from './remove-node.js';
export type { RemovalStepParams, DrainForRemovalParams, EtcdMemberRemovalParams } from './remove-node.js';
export { etcdSnapshot, etcdMemberHealth, etcdctlCommand, snapshotFileName, ETCD_CLIENT_FILES, LOCAL_ETCD_ENDPOINT } from './etcd-snapshot.js';
export type { EtcdLayout, EtcdSnapshotParams } from './etcd-snapshot.js';

// Day 2: a node back to before kubeadm init/join
export { kubeadmReset, readKubeadmState, removeCniState, removeKubernetesNetfilter, removeCniInterfaces, removeAdminKubeconfigCopies, kubernetesNetfilter, withoutKubernetesNetfilter } from './reset.js';
export type { KubernetesNetfilter, KubeconfigCopiesParams } from './reset.js';

// Day 2: kubeadm's certificates, their lifetimes and renewal
export { readCertificates, warnExpiringCertificates, expiryWarningText, renewCertificates, READ_CERTIFICATES, parseReadCertificates, apiserverEndpoint, listeningPorts } from './certs.js';
export type { RenewCertificatesParams, ExpiryWarning } from './certs.js';
export { parseCheckExpiration, parseOpensslEndDate, parseShortHumanDuration, shortHumanDuration, formatExpiry, expiringWithin, certificateTable } from './certs-parse.js';
export type { CertificateLifetime, CheckExpiration, HostCertificates } from './certs-parse.js';
export { readNodes, readJoinTokens, readControlPlaneStatus, holdsAddress, READ_NODES, READ_JOIN_TOKENS } from './status.js';
export type { ControlPlaneStatusParams } from './status.js';
export { parseNodes, nodeTable, parseTokenList, joinTokenTable, controlPlaneTable } from './status-parse.js';
export type { NodeStatus, JoinToken, ControlPlaneStatus } from './status-parse.js';
