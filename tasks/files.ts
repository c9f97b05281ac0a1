import { defineTask, isSecret, Secret, sh, type ApplyContext, type CheckContext, type Drift, type FileStat, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { normaliseMode, requireAbsolutePath, requireAccountName, requireString } from './validate.js';

/* ------------------------------------------------------------------ ensureFile */

export interface FileParams {
  path: string;
  /** Whole content. Omit to manage only mode/owner of an existing file. A Secret is never shown. */
  content?: string | Secret;
  mode?: string;
  owner?: string;
  group?: string;
  /** Keep a timestamped copy of the file before replacing it. */
  backup?: boolean;
  state?: 'present' | 'absent';
}

/** Drift of mode/owner/group between a stat and what is wanted (pure). */
export function attributeDrift(stat: FileStat | null, wanted: { mode?: string; owner?: string; group?: string }): Drift[] {
  const drift: Drift[] = [];
  const mode = normaliseMode('mode', wanted.mode);
  if (mode && stat?.mode !== mode) drift.push({ subject: 'mode', current: stat?.mode ?? null, desired: mode });
  if (wanted.owner && stat?.owner !== wanted.owner) drift.push({ subject: 'owner', current: stat?.owner ?? null, desired: wanted.owner });
  if (wanted.group && stat?.group !== wanted.group) drift.push({ subject: 'group', current: stat?.group ?? null, desired: wanted.group });
  return drift;
}

async function fixAttributes(ctx: ApplyContext, path: string, drift: Drift[], wanted: { mode?: string; owner?: string; group?: string }): Promise<void> {
  const subjects = new Set(drift.map((d) => d.subject));
  if (subjects.has('mode') && wanted.mode) await ctx.run(sh`chmod ${normaliseMode('mode', wanted.mode)!} -- ${path}`);
  if (subjects.has('owner') && wanted.owner) await ctx.run(sh`chown ${wanted.owner} -- ${path}`);
  if (subjects.has('group') && wanted.group) await ctx.run(sh`chgrp ${wanted.group} -- ${path}`);
}

function validateAttributes(params: { mode?: string; owner?: string; group?: string }): void {
  normaliseMode('mode', params.mode);
  requireAccountName('owner', params.owner);
  requireAccountName('group', params.group);
}

const reveal = (content: string | Secret): string => (isSecret(content) ? content.reveal() : content);

/**
 * Ensures a file has exactly the given content, mode and owner — or does not exist (`state: 'absent'`).
 * Written atomically (temp file in the same directory, fsync, rename), so readers never see a torn file.
 *
 * @param params.path absolute path; its directory must exist (see {@link ensureDirectory})
 * @param params.content the whole file; a `Secret` is compared but never printed or diffed
 * @example ensureFile({ path: '/etc/modules-load.d/k8s.conf', content: 'overlay\nbr_netfilter\n', mode: '0644' })
 */
export function ensureFile(params: PerHostParams<FileParams>, options?: TaskOptions): Task<void> {
  return defineTask<FileParams>(
    {
      kind: 'file',
      id: (p) => `file:${p.path}`,
      title: (p) => (p.state === 'absent' ? `remove ${p.path}` : `file ${p.path}`),
      desired: (p) => ({ ...p, content: p.content === undefined ? undefined : isSecret(p.content) ? `secret:${p.content.reveal()}` : p.content }),
      validate: (p) => {
        requireAbsolutePath('path', p.path);
        validateAttributes(p);
        if (p.content !== undefined && typeof p.content !== 'string' && !isSecret(p.content)) throw new Error('content must be a string or a Secret');
        if (p.state !== undefined && p.state !== 'present' && p.state !== 'absent') throw new Error(`state must be present or absent, got ${JSON.stringify(p.state)}`);
      },
      probes: (p) => [{ kind: 'stat', path: p.path }, ...(p.content !== undefined && p.state !== 'absent' ? [{ kind: 'read' as const, path: p.path }] : [])],
      async check(ctx, p) {
        const stat = await ctx.stat(p.path);
        if (p.state === 'absent') return stat ? [{ subject: 'exists', current: 'present', desired: 'absent' }] : [];
        if (stat && stat.type !== 'file') return [{ subject: 'type', current: stat.type, desired: 'file' }];
        const drift: Drift[] = [];
        if (p.content !== undefined) {
          const current = stat ? ((await ctx.readText(p.path)) ?? '') : null;
          if (current !== reveal(p.content)) {
            const secret = isSecret(p.content);
            drift.push({
              subject: 'content',
              file: p.path,
              current: current === null ? null : secret ? new Secret(current) : current,
              desired: p.content,
            });
          }
        } else if (!stat) {
          drift.push({ subject: 'exists', current: 'absent', desired: 'present' });
        }
        drift.push(...attributeDrift(stat, p));
        return drift;
      },
      async apply(ctx, p, drift) {
        if (p.state === 'absent') {
          await ctx.run(sh`rm -f -- ${p.path}`);
          return;
        }
        if (drift.some((d) => d.subject === 'type')) throw new Error(`${p.path} exists and is not a regular file; not replacing it`);
        if (drift.some((d) => d.subject === 'content' || d.subject === 'exists')) {
          await ctx.writeFile(p.path, p.content ?? '', { ...pick(p), ...(p.backup ? { backup: true } : {}) });
        } else {
          await fixAttributes(ctx, p.path, drift, p);
        }
      },
    },
    params,
    options,
  );
}

function pick(p: { mode?: string; owner?: string; group?: string }): { mode?: string; owner?: string; group?: string } {
  const out: { mode?: string; owner?: string; group?: string } = {};
  const mode = normaliseMode('mode', p.mode);
  if (mode) out.mode = mode;
  if (p.owner) out.owner = p.owner;
  if (p.group) out.group = p.group;
  return out;
}

/* ------------------------------------------------------------------ ensureDirectory */

export interface DirectoryParams {
  path: string;
  mode?: string;
  owner?: string;
  group?: string;
  state?: 'present' | 'absent';
}

/**
 * Ensures a directory exists (with parents, like `mkdir -p`) with the given mode/owner, or is
 * removed with its content (`state: 'absent'`).
 *
 * @example ensureDirectory({ path: '/etc/apt/keyrings', mode: '0755' })
 */
export function ensureDirectory(params: PerHostParams<DirectoryParams>, options?: TaskOptions): Task<void> {
  return defineTask<DirectoryParams>(
    {
      kind: 'directory',
      id: (p) => `directory:${p.path}`,
      title: (p) => (p.state === 'absent' ? `remove directory ${p.path}` : `directory ${p.path}`),
      validate: (p) => {
        requireAbsolutePath('path', p.path);
        validateAttributes(p);
        if (p.state === 'absent' && ['/', '/etc', '/usr', '/var', '/home', '/root', '/boot'].includes(p.path)) throw new Error(`refusing to remove ${p.path}`);
      },
      probes: (p) => [{ kind: 'stat', path: p.path }],
      async check(ctx, p) {
        const stat = await ctx.stat(p.path);
        if (p.state === 'absent') return stat ? [{ subject: 'exists', current: stat.type, desired: 'absent' }] : [];
        if (!stat) return [{ subject: 'exists', current: 'absent', desired: 'directory' }, ...attributeDrift(null, p)];
        if (stat.type !== 'directory') return [{ subject: 'type', current: stat.type, desired: 'directory' }];
        return attributeDrift(stat, p);
      },
      async apply(ctx, p, drift) {
        if (p.state === 'absent') {
          await ctx.run(sh`rm -rf -- ${p.path}`);
          return;
        }
        if (drift.some((d) => d.subject === 'type')) throw new Error(`${p.path} exists and is not a directory; not replacing it`);
        if (drift.some((d) => d.subject === 'exists')) await ctx.run(sh`mkdir -p -- ${p.path}`);
        await fixAttributes(ctx, p.path, drift, p);
      },
    },
    params,
    options,
  );
}

/* ------------------------------------------------------------------ ensureLine */

export interface LineParams {
  path: string;
  /** The line wanted (without newline). */
  line: string;
  /** A regular expression (JavaScript syntax) for the line to replace; its last match is replaced, like Ansible's lineinfile. */
  regexp?: string;
  /** `absent`: remove every line equal to `line`, or matching `regexp` when given. */
  state?: 'present' | 'absent';
  /** Where a new line goes: after the last line matching this regexp; default: end of file. */
  insertAfter?: string;
  /** Create the file when missing (mode 0644); default true. */
  create?: boolean;
  mode?: string;
}

/**
 * Edits text so it contains `line` once where `regexp` (or the line itself) matched last, else
 * appends it; or removes matching lines. Pure: the unit tests pin its behaviour.
 */
export function editLine(text: string, p: Pick<LineParams, 'line' | 'regexp' | 'state' | 'insertAfter'>): string {
  const lines = splitLines(text);
  const matcher = p.regexp === undefined ? (l: string) => l === p.line : ((re) => (l: string) => re.test(l))(new RegExp(p.regexp));
  if (p.state === 'absent') return joinLines(lines.filter((l) => !matcher(l)));
  if (p.regexp === undefined && lines.includes(p.line)) return text;
  let last = -1;
  lines.forEach((l, i) => {
    if (matcher(l)) last = i;
  });
  if (last >= 0) {
    lines[last] = p.line;
    return joinLines(lines);
  }
  // As Ansible's lineinfile: when the regexp no longer matches because the line was already put in place, nothing to do.
  if (lines.includes(p.line)) return text;
  if (p.insertAfter !== undefined) {
    const anchor = new RegExp(p.insertAfter);
    let at = -1;
    lines.forEach((l, i) => {
      if (anchor.test(l)) at = i;
    });
    if (at >= 0) {
      lines.splice(at + 1, 0, p.line);
      return joinLines(lines);
    }
  }
  lines.push(p.line);
  return joinLines(lines);
}

function splitLines(text: string): string[] {
  if (text === '') return [];
  return (text.endsWith('\n') ? text.slice(0, -1) : text).split('\n');
}

function joinLines(lines: string[]): string {
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/**
 * Ensures one line in a file (Ansible's lineinfile), computed in TypeScript and written atomically,
 * keeping the file's mode and owner.
 *
 * @example ensureLine({ path: '/etc/hosts', regexp: '\\sk8s-api$', line: '10.0.0.10 k8s-api' })
 */
export function ensureLine(params: PerHostParams<LineParams>, options?: TaskOptions): Task<void> {
  return defineTask<LineParams>(
    {
      kind: 'line',
      id: (p) => `line:${p.path}:${p.regexp ?? p.line}`,
      title: (p) => `${p.state === 'absent' ? 'no line' : 'line'} ${JSON.stringify(p.regexp ?? p.line)} in ${p.path}`,
      validate: (p) => {
        requireAbsolutePath('path', p.path);
        if (typeof p.line !== 'string' || p.line.includes('\n')) throw new Error('line must be a single line of text');
        for (const key of ['regexp', 'insertAfter'] as const) {
          const value = p[key];
          if (value !== undefined) {
            try {
              new RegExp(value);
            } catch (error) {
              throw new Error(`${key} is not a valid regular expression: ${(error as Error).message}`);
            }
          }
        }
        normaliseMode('mode', p.mode);
      },
      probes: (p) => [{ kind: 'read', path: p.path }],
      check: (ctx, p) => textDrift(ctx, p.path, p.create ?? true, p.state === 'absent', (text) => editLine(text, p)),
      apply: (ctx, p) => writeEdited(ctx, p.path, p.mode, (text) => editLine(text, p)),
    },
    params,
    options,
  );
}

/* ------------------------------------------------------------------ ensureBlock */

export interface BlockParams {
  path: string;
  /** The block's lines (without markers). */
  block: string;
  /** Marker template; `{mark}` becomes BEGIN / END. Default `# {mark} CAPSTAN MANAGED BLOCK`. */
  marker?: string;
  state?: 'present' | 'absent';
  create?: boolean;
  mode?: string;
}

const DEFAULT_MARKER = '# {mark} CAPSTAN MANAGED BLOCK';

/** Puts `block` between BEGIN/END markers (replacing what was there), or removes it. Pure. */
export function editBlock(text: string, p: Pick<BlockParams, 'block' | 'marker' | 'state'>): string {
  const marker = p.marker ?? DEFAULT_MARKER;
  const begin = marker.replace('{mark}', 'BEGIN');
  const end = marker.replace('{mark}', 'END');
  const lines = splitLines(text);
  const start = lines.indexOf(begin);
  const stop = start >= 0 ? lines.indexOf(end, start + 1) : -1;
  const body = p.block === '' ? [] : splitLines(p.block.endsWith('\n') ? p.block : `${p.block}\n`);
  const replacement = p.state === 'absent' ? [] : [begin, ...body, end];
  if (start >= 0 && stop >= 0) lines.splice(start, stop - start + 1, ...replacement);
  else lines.push(...replacement);
  return joinLines(lines);
}

/**
 * Ensures a marked block of lines in a file (Ansible's blockinfile), edited in TypeScript and
 * written atomically.
 *
 * @example ensureBlock({ path: '/etc/hosts', block: '10.0.0.11 cp1\n10.0.0.12 cp2', marker: '# {mark} k8s nodes' })
 */
export function ensureBlock(params: PerHostParams<BlockParams>, options?: TaskOptions): Task<void> {
  return defineTask<BlockParams>(
    {
      kind: 'block',
      id: (p) => `block:${p.path}:${p.marker ?? DEFAULT_MARKER}`,
      title: (p) => `block ${JSON.stringify((p.marker ?? DEFAULT_MARKER).replace('{mark}', '').replace(/\s+/g, ' ').trim())} in ${p.path}`,
      validate: (p) => {
        requireAbsolutePath('path', p.path);
        if (typeof p.block !== 'string') throw new Error('block must be a string');
        const marker = p.marker ?? DEFAULT_MARKER;
        requireString('marker', marker);
        if (!marker.includes('{mark}') || marker.includes('\n')) throw new Error('marker must be one line containing {mark}');
        normaliseMode('mode', p.mode);
      },
      probes: (p) => [{ kind: 'read', path: p.path }],
      check: (ctx, p) => textDrift(ctx, p.path, p.create ?? true, p.state === 'absent', (text) => editBlock(text, p)),
      apply: (ctx, p) => writeEdited(ctx, p.path, p.mode, (text) => editBlock(text, p)),
    },
    params,
    options,
  );
}

/* ------------------------------------------------------------------ shared by line and block */

async function textDrift(ctx: CheckContext, path: string, create: boolean, removing: boolean, edit: (text: string) => string): Promise<Drift[]> {
  const current = await ctx.readText(path);
  if (current === null) {
    if (removing) return [];
    if (!create) throw new Error(`${path} does not exist (create: false)`);
  }
  const desired = edit(current ?? '');
  return desired === current ? [] : [{ subject: 'content', file: path, current, desired }];
}

async function writeEdited(ctx: ApplyContext, path: string, mode: string | undefined, edit: (text: string) => string): Promise<void> {
  // Re-read at apply time: the file may have changed since check, and the edit must apply to what is there now.
  const current = (await ctx.readText(path)) ?? '';
  const normalised = normaliseMode('mode', mode);
  await ctx.writeFile(path, edit(current), normalised ? { mode: normalised } : {});
}
