/** How Capstan asks a host about one path, and reads the answer: one `stat` format for every caller. */
import type { FileStat } from './contract.js';

/** `stat -c` format whose line parseStat reads: type, octal mode, owner, group, size. */
export const STAT_FORMAT = '%F|%a|%U|%G|%s';

/** Parses a `stat -c STAT_FORMAT` line (pure). */
export function parseStat(line: string): FileStat {
  const [kind = '', mode = '', owner = '', group = '', size = '0'] = line.trim().split('|');
  const type: FileStat['type'] =
    kind === 'regular file' || kind === 'regular empty file' ? 'file' : kind === 'directory' ? 'directory' : kind === 'symbolic link' ? 'symlink' : 'other';
  return { type, mode: mode.padStart(4, '0'), owner, group, size: Number(size) };
}
