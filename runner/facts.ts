import { sh } from './quote.js';

/** What Capstan knows about a host, gathered once per run in a single round trip. */
export interface Facts {
  hostname: string;
  kernel: string;
  /** `uname -m`: x86_64, aarch64, armv7l */
  machine: string;
  /** `dpkg --print-architecture` (amd64, arm64, armhf); empty on hosts without dpkg */
  arch: string;
  /** /etc/os-release ID (debian, ubuntu, raspbian, rhel, centos, rocky) */
  osId: string;
  osVersionId: string;
  /** VERSION_CODENAME (bookworm, jammy); empty where the OS has none */
  codename: string;
  cpus: number;
  memoryMiB: number;
}

/** One command printing key=value lines; every probe tolerates its tool being absent. */
export const FACTS_COMMAND = sh`
echo "hostname=$(hostname 2>/dev/null || cat /etc/hostname)"
echo "kernel=$(uname -r)"
echo "machine=$(uname -m)"
echo "arch=$(dpkg --print-architecture 2>/dev/null)"
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "osId=\${ID:-}"
echo "osVersionId=\${VERSION_ID:-}"
echo "codename=\${VERSION_CODENAME:-}"
echo "cpus=$(nproc 2>/dev/null || echo 0)"
echo "memKiB=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null)"
`;

/** Parses FACTS_COMMAND's output (pure, unit-tested). */
export function parseFacts(output: string): Facts {
  const values = new Map<string, string>();
  for (const line of output.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1).trim());
  }
  const get = (key: string) => values.get(key) ?? '';
  return {
    hostname: get('hostname'),
    kernel: get('kernel'),
    machine: get('machine'),
    arch: get('arch'),
    osId: get('osId'),
    osVersionId: get('osVersionId'),
    codename: get('codename'),
    cpus: Number(get('cpus')) || 0,
    memoryMiB: Math.floor((Number(get('memKiB')) || 0) / 1024),
  };
}
