/*
 * apt: signing keys, repositories and packages, as in the seeds (000/001/002):
 *
 *   curl -fsSL https://pkgs.k8s.io/core:/stable:/v1.34/deb/Release.key | gpg --dearmor -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
 *   echo 'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /' > /etc/apt/sources.list.d/kubernetes.list
 *   apt-get update && apt-get install -y kubelet kubeadm kubectl && apt-mark hold kubelet kubeadm kubectl
 *
 * The key is downloaded ON THE HOST (curl), not on the controller: the host is the machine that
 * must reach the repository anyway (apt fetches from it over the same network path, proxy and
 * DNS), the controller may sit outside the hosts' network (a laptop behind a ProxyJump), and the
 * seeds do the same. Dearmoring and fingerprint listing use the host's gpg in a throw-away
 * GNUPGHOME, so neither check nor apply touches root's ~/.gnupg.
 *
 * `apt-get update` after a repository or key change: the play's handler mechanism runs handlers
 * only at the END of the play, which is too late when the same play then installs packages from
 * the new repository. So every changed key/repo marks the host's package lists stale (state kept
 * per host for the run), and the update runs exactly once per host, at the first of:
 *   - the next ensurePackages on that host (it updates before installing), or
 *   - the aptUpdate() handler, which ensureAptKey/ensureAptRepo notify by default (a single
 *     shared handler, so the play runs it once per host however many repos changed); it finds the
 *     lists fresh, and reports ok, when ensurePackages already updated them.
 * In --check the same bookkeeping runs on predicted changes, so check and apply report the same.
 *
 * One file per topic: apt-update.ts (the stale-lists state and apt-get update), apt-keys.ts,
 * apt-repos.ts (sources and the seeds' repositories), apt-packages.ts. This module gathers them.
 */
export * from './apt-update.js';
export * from './apt-keys.js';
export * from './apt-repos.js';
export * from './apt-packages.js';
