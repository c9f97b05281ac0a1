/**
 * Which version `kubernetes_version` means for an upgrade: `1.35` is the newest 1.35 patch the
 * target minor's repository carries, `1.35.1` exactly that one. Pure.
 */
import semver from 'semver';
import { kubernetesMinor, upstreamVersion } from '../../tasks/index.js';

/** The version to reach, from `kubernetes_version` and what the repository carries (pure). */
export function resolveTarget(requested: string, debianVersions: readonly string[]): { target: string; debian?: string } {
  const wanted = requested.trim().replace(/^v/, '');
  const minor = kubernetesMinor(wanted);
  const carried = debianVersions.filter((version) => semver.valid(upstreamVersion(version)) && kubernetesMinor(upstreamVersion(version)) === minor);
  const exact = /^\d+\.\d+\.\d+$/.test(wanted);
  const matching = carried.filter((version) => !exact || upstreamVersion(version) === wanted);
  const newest = matching.sort((a, b) => semver.compare(upstreamVersion(a), upstreamVersion(b)) || a.localeCompare(b)).pop();
  if (newest) return { target: `v${upstreamVersion(newest)}`, debian: newest };
  return { target: exact ? `v${wanted}` : `${minor}.0` };
}
