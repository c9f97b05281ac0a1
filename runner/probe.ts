/** The probe batcher: the reads that tasks declared (contract.ts's Probe), answered by one script per host. */
import { Command, sh } from './quote.js';
import type { Probe, ProbeAnswer } from './contract.js';
import { parseStat, STAT_FORMAT } from './stat.js';

export function probeKey(probe: Probe): string {
  return probe.kind === 'exec' ? `exec:${probe.command.text}` : `${probe.kind}:${probe.path}`;
}

const MARK = '@@capstan-probe';

/**
 * One sh script answering every probe. Each answer starts on its own line with a marker and the
 * probe's index; file content and command output are base64 (one line, no marker can appear in it).
 */
export function probeScript(probes: readonly Probe[]): Command {
  const parts: Command[] = [sh`t=$(mktemp -d) || exit 97; trap 'rm -rf -- "$t"' EXIT`];
  probes.forEach((probe, index) => {
    const head = sh`printf '\n%s %d ' ${MARK} ${index}`;
    if (probe.kind === 'read') {
      parts.push(sh`${head}; if [ -e ${probe.path} ]; then if base64 -w0 < ${probe.path} > "$t/o" 2>/dev/null; then printf 'ok '; cat "$t/o"; else printf 'error'; fi; else printf 'missing'; fi`);
    } else if (probe.kind === 'stat') {
      parts.push(sh`${head}; if [ -e ${probe.path} ] || [ -L ${probe.path} ]; then printf 'ok '; stat -c ${STAT_FORMAT} -- ${probe.path} | tr -d '\n'; else printf 'missing'; fi`);
    } else {
      // The probe's own text runs in a subshell, so its exit or cd cannot end or move the batch.
      parts.push(sh`${head}; ( ${probe.command} ) > "$t/o" 2> "$t/e" < /dev/null; printf 'exit %d ' $?; base64 -w0 < "$t/o"; printf ' '; base64 -w0 < "$t/e"`);
    }
  });
  parts.push(sh`printf '\n'`);
  return new Command(parts.map((p) => p.text).join('\n'), `(probe ${probes.length} reads in one batch)`, parts.flatMap((p) => [...p.secrets]));
}

/** Parses probeScript's output into answers by probe index (pure). A probe that errored is left out: its task reads it directly. */
export function parseProbeOutput(output: string, probes: readonly Probe[]): Map<number, ProbeAnswer> {
  const answers = new Map<number, ProbeAnswer>();
  for (const line of output.split('\n')) {
    if (!line.startsWith(`${MARK} `)) continue;
    const rest = line.slice(MARK.length + 1);
    const space = rest.indexOf(' ');
    const index = Number(rest.slice(0, space));
    const body = rest.slice(space + 1);
    const probe = probes[index];
    if (!probe) continue;
    if (probe.kind === 'read') {
      if (body === 'missing') answers.set(index, { kind: 'read', content: null });
      else if (body.startsWith('ok ')) answers.set(index, { kind: 'read', content: Buffer.from(body.slice(3), 'base64') });
    } else if (probe.kind === 'stat') {
      if (body === 'missing') answers.set(index, { kind: 'stat', stat: null });
      else if (body.startsWith('ok ')) answers.set(index, { kind: 'stat', stat: parseStat(body.slice(3)) });
    } else {
      const match = /^exit (\d+) (\S*) (\S*)$/.exec(body);
      if (!match) continue;
      const bytes = Buffer.from(match[2]!, 'base64');
      answers.set(index, { kind: 'exec', result: { code: Number(match[1]), stdout: bytes.toString('utf8'), stderr: Buffer.from(match[3]!, 'base64').toString('utf8'), bytes } });
    }
  }
  return answers;
}
