/**
 * Kubernetes versions, one rule for every task and playbook: `v1.34.1`, `1.34.1`, `1.34` (a minor, as
 * `kubernetes_version` and pkgs.k8s.io's repositories name it) and pre-releases (`1.35.0-rc.1`), the
 * leading `v` optional as in k8s.io/apimachinery's version.ParseGeneric. Anything else — `1`,
 * `latest`, `stable-1.34`, `1.34.x` — is refused rather than guessed (semver.coerce would read
 * `foo1.34bar` as 1.34.0).
 */
import semver from 'semver';

export interface KubernetesVersion {
  major: number;
  minor: number;
  /** 0 when the version names only a minor. */
  patch: number;
  /** Whether the text had a patch (`1.34.1`), not only a minor (`1.34`). */
  hasPatch: boolean;
  /** Pre-release identifiers (`rc.1` → ['rc', 1]); empty for a release. */
  prerelease: readonly (string | number)[];
  /** The same version as a semver (a minor-only version as x.y.0), for comparisons. */
  semver: semver.SemVer;
}

const VERSION = /^v?(\d+)\.(\d+)(?:\.(\d+))?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;

/** Parses a Kubernetes version, or throws `not a Kubernetes version: "…" (expected like 1.34.1)`. Pure. */
export function parseKubernetesVersion(text: string): KubernetesVersion {
  const match = typeof text === 'string' ? VERSION.exec(text.trim()) : null;
  const parsed = match ? semver.parse(`${match[1]}.${match[2]}.${match[3] ?? 0}${match[4] ?? ''}${match[5] ?? ''}`) : null;
  if (!match || !parsed) throw new Error(`not a Kubernetes version: ${JSON.stringify(text)} (expected like 1.34.1)`);
  return { major: parsed.major, minor: parsed.minor, patch: parsed.patch, hasPatch: match[3] !== undefined, prerelease: parsed.prerelease, semver: parsed };
}

/** `1.34.2`, `v1.34`, `1.34.0-rc.1` → `v1.34`: pkgs.k8s.io's repository name (pure). */
export function kubernetesMinor(text: string): string {
  const version = parseKubernetesVersion(text);
  return `v${version.major}.${version.minor}`;
}

/** A released version with its patch (`1.35.1`, `v1.35.1`) as a semver; null for a minor, a pre-release or anything else (pure). */
export function releasedVersion(text: string): semver.SemVer | null {
  try {
    const version = parseKubernetesVersion(text);
    return version.hasPatch && version.prerelease.length === 0 ? version.semver : null;
  } catch {
    return null;
  }
}
