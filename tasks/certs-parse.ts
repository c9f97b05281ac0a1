/**
 * Certificate lifetimes as kubeadm and openssl print them: pure parsers and the table Capstan shows.
 *
 * Shapes: `kubeadm certs check-expiration` is kubeadm 1.34's cmd/kubeadm/app/cmd/certs.go
 * (text/tabwriter with padding 3; EXPIRES as Go's "Jan 02, 2006 15:04 MST"; RESIDUAL TIME as
 * apimachinery's ShortHumanDuration, `<invalid>` once expired; `!MISSING! <name>` for a missing
 * file); `openssl x509 -noout -enddate` prints `notAfter=Dec  3 07:32:00 2027 GMT` (OpenSSL's
 * ASN1_TIME_print).
 */
import type { ReportTable } from '../runner/index.js';

/** One row of a certificate table. */
export interface CertificateLifetime {
  /** kubeadm's name (`apiserver`, `admin.conf`, `ca`) or Capstan's (`kubelet-client`). */
  name: string;
  /** Absent for a missing certificate. */
  expires?: Date;
  /** Seconds left as the tool that read it counted them; negative once expired. */
  residualSeconds?: number;
  /** kubeadm's RESIDUAL TIME, or the same rendering for openssl's. */
  residual?: string;
  /** The CA that signed it (kubeadm's CERTIFICATE AUTHORITY column); absent for a CA itself. */
  authority?: string;
  externallyManaged: boolean;
  missing: boolean;
}

export interface CheckExpiration {
  certificates: CertificateLifetime[];
  authorities: CertificateLifetime[];
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAY = 86_400;

/** ShortHumanDuration's text back to seconds (its lower bound); `<invalid>` (expired) is -1. */
export function parseShortHumanDuration(text: string): number {
  if (text === '<invalid>') return -1;
  const match = /^(\d+)([smhdy])$/.exec(text);
  if (!match) throw new Error(`not a kubeadm residual time: '${text}'`);
  const unit = { s: 1, m: 60, h: 3600, d: DAY, y: 365 * DAY }[match[2] as 's' | 'm' | 'h' | 'd' | 'y'];
  return Number(match[1]) * unit;
}

/** apimachinery's duration.ShortHumanDuration (what kubeadm prints as RESIDUAL TIME). */
export function shortHumanDuration(seconds: number): string {
  const s = Math.trunc(seconds);
  if (s < -1) return '<invalid>';
  if (s < 0) return '0s';
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.trunc(s / 60)}m`;
  if (s < DAY) return `${Math.trunc(s / 3600)}h`;
  if (s < 365 * DAY) return `${Math.trunc(s / DAY)}d`;
  return `${Math.trunc(s / DAY / 365)}y`;
}

/** Go's "Jan 02, 2006 15:04 MST" in UTC, as kubeadm prints EXPIRES. */
export function formatExpiry(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${MONTHS[date.getUTCMonth()]} ${pad(date.getUTCDate())}, ${date.getUTCFullYear()} ${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())} UTC`;
}

function parseExpiry(text: string, line: string): Date {
  const match = /^([A-Z][a-z]{2}) (\d{2}), (\d{4}) (\d{2}):(\d{2}) UTC$/.exec(text);
  const month = match ? MONTHS.indexOf(match[1]!) : -1;
  if (!match || month < 0) throw new Error(`unexpected EXPIRES '${text}' in kubeadm's line '${line}'`);
  return new Date(Date.UTC(Number(match[3]), month, Number(match[2]), Number(match[4]), Number(match[5])));
}

/** One data row: tabwriter's cells are separated by at least 3 blanks (padding 3); a date has single blanks. */
function parseRow(line: string, authority: boolean): CertificateLifetime {
  const missing = /^!MISSING! (\S+)/.exec(line);
  if (missing) return { name: missing[1]!, externallyManaged: false, missing: true };
  const cells = line.trim().split(/\s{2,}/);
  const [name, expires, residual] = cells;
  const ca = authority ? undefined : cells[3];
  const external = cells[authority ? 3 : 4];
  if (!name || !expires || !residual || (!authority && !ca) || (external !== 'yes' && external !== 'no')) {
    throw new Error(`unexpected line in kubeadm certs check-expiration's output: '${line}'`);
  }
  return {
    name,
    expires: parseExpiry(expires, line),
    residual,
    residualSeconds: parseShortHumanDuration(residual),
    ...(ca ? { authority: ca } : {}),
    externallyManaged: external === 'yes',
    missing: false,
  };
}

/**
 * `kubeadm certs check-expiration`'s two tables (the lines before the first header, kubeadm's
 * `[check-expiration] …` notes, are skipped). Throws on a line it cannot read rather than guess.
 */
export function parseCheckExpiration(output: string): CheckExpiration {
  const result: CheckExpiration = { certificates: [], authorities: [] };
  let table: CertificateLifetime[] | undefined;
  let authority = false;
  for (const line of output.split('\n')) {
    if (/^CERTIFICATE\s{2,}EXPIRES\s/.test(line)) {
      [table, authority] = [result.certificates, false];
    } else if (/^CERTIFICATE AUTHORITY\s{2,}EXPIRES\s/.test(line)) {
      [table, authority] = [result.authorities, true];
    } else if (line.trim() === '') {
      table = undefined;
    } else if (table) {
      table.push(parseRow(line, authority));
    }
  }
  if (result.certificates.length === 0 && result.authorities.length === 0) {
    throw new Error(`no certificate table in kubeadm certs check-expiration's output: '${output.trim().split('\n')[0] ?? ''}'`);
  }
  return result;
}

/** `openssl x509 -noout -enddate`: `notAfter=Dec  3 07:32:00 2027 GMT`. */
export function parseOpensslEndDate(output: string): Date {
  const match = /^notAfter=([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4}) GMT$/m.exec(output);
  const month = match ? MONTHS.indexOf(match[1]!) : -1;
  if (!match || month < 0) throw new Error(`unexpected openssl -enddate output: '${output.trim()}'`);
  return new Date(Date.UTC(Number(match[6]), month, Number(match[2]), Number(match[3]), Number(match[4]), Number(match[5])));
}

/** A certificate read with openssl, its residual time counted from `now` (the host's clock). */
export function lifetimeFromEndDate(name: string, expires: Date, now: Date): CertificateLifetime {
  const residualSeconds = Math.trunc((expires.getTime() - now.getTime()) / 1000);
  return { name, expires, residualSeconds, residual: shortHumanDuration(residualSeconds), externallyManaged: false, missing: false };
}

/** Certificates kubeadm would renew that expire within `days` (CAs, external and missing ones never). */
export function expiringWithin(certificates: readonly CertificateLifetime[], days: number): CertificateLifetime[] {
  return certificates.filter((c) => !c.missing && !c.externallyManaged && c.authority !== undefined && (c.residualSeconds ?? 0) < days * DAY);
}

/** What one host holds: kubeadm's tables (control planes), the kubelet's client certificate, certificate files read with openssl (the hard way's). */
export interface HostCertificates {
  host: string;
  kubeadm?: CheckExpiration;
  kubeletClient?: CertificateLifetime;
  /** Named by path; `authority` is the issuer's CN, absent for a self-issued CA. */
  files?: CertificateLifetime[];
}

/**
 * One table of every host's certificates: kubeadm's (CAs included) on control planes, the kubelet
 * client certificate on every node, the certificate files read (the hard way's) (for ctx.report);
 * NOTE says what expires within `withinDays` and who renews it.
 */
export function certificateTable(hosts: readonly HostCertificates[], withinDays: number): ReportTable {
  const rows: string[][] = [];
  const soon = (c: CertificateLifetime) => (c.residualSeconds ?? 0) < withinDays * DAY;
  for (const { host, kubeadm, kubeletClient, files } of hosts) {
    for (const c of kubeadm?.certificates ?? []) {
      const note = c.missing ? 'missing' : c.externallyManaged ? 'externally managed' : soon(c) ? `expires within ${withinDays} days: kubeadm certs renew` : '';
      rows.push([host, c.name, c.expires ? formatExpiry(c.expires) : '', c.residual ?? '', c.authority ?? '', note]);
    }
    for (const c of kubeadm?.authorities ?? []) {
      const note = c.missing ? 'missing' : soon(c) ? `CA expires within ${withinDays} days: kubeadm does not renew CAs` : '';
      rows.push([host, c.name, c.expires ? formatExpiry(c.expires) : '', c.residual ?? '', '', note]);
    }
    if (kubeletClient) {
      const note = kubeletClient.missing ? 'missing' : soon(kubeletClient) ? `expires within ${withinDays} days: the kubelet rotates it; is rotation failing?` : '';
      rows.push([host, kubeletClient.name, kubeletClient.expires ? formatExpiry(kubeletClient.expires) : '', kubeletClient.residual ?? '', 'ca', note]);
    }
    // The hard way's: hard-way.ts's PKI step re-issues a certificate (and a CA with all it signed) in its last 30 days.
    for (const c of files ?? []) {
      const what = c.authority === undefined ? 'CA expires' : 'expires';
      const note = c.missing ? 'missing' : soon(c) ? `${what} within ${withinDays} days: hard-way.ts re-issues it in its last 30 days` : '';
      rows.push([host, c.name, c.expires ? formatExpiry(c.expires) : '', c.residual ?? '', c.authority ?? '', note]);
    }
  }
  return { title: 'Certificates', columns: ['HOST', 'CERTIFICATE', 'EXPIRES', 'RESIDUAL TIME', 'CERTIFICATE AUTHORITY', 'NOTE'], rows };
}
