/**
 * Kernel modules: loaded now (modprobe) and at every boot (a line in /etc/modules-load.d/k8s.conf).
 */
import { defineTask, sh, type CheckContext, type Command, type Drift, type PerHost, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { decodeBase64, MANAGED_HEADER } from './kernel-files.js';

export const MODULES_FILE = '/etc/modules-load.d/k8s.conf';

/** modprobe treats `-` and `_` in module names alike; so do we. */
function moduleKey(name: string): string {
  return name.replace(/-/g, '_');
}

/** The modules a modules-load.d file loads: non-empty lines that are not comments (`#` or `;`). */
export function listedModules(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith(';'));
}

/**
 * The modules-load.d file with `name` in it (pure). A new file is the header and the module; an
 * existing file that lists the module is returned unchanged, byte for byte; otherwise the module
 * is appended (and the header put first if missing). So several ensureModule tasks sharing the
 * file each add their own line, in first-added order, and never undo each other.
 */
export function withModule(text: string | null, name: string): string {
  if (text === null || text.trim() === '') return `${MANAGED_HEADER}\n${name}\n`;
  if (listedModules(text).some((listed) => moduleKey(listed) === moduleKey(name))) return text;
  const body = text.endsWith('\n') ? text : `${text}\n`;
  const headed = body.split('\n')[0] === MANAGED_HEADER ? body : `${MANAGED_HEADER}\n${body}`;
  return `${headed}${name}\n`;
}

/**
 * Probe for one module: the running kernel, whether the module is active (loaded, listed in
 * /proc/modules; built in, listed in modules.builtin — br_netfilter built in has no /sys/module
 * entry — or present under /sys/module), else whether modprobe can find it; and the boot file.
 */
export const MODULE_PROBE = `m=$1 f=$2
k=$(uname -r)
echo "kernel $k"
n=$(printf '%s' "$m" | tr - _)
if [ -r /proc/modules ] && awk -v n="$n" '$1 == n { found = 1 } END { exit !found }' /proc/modules; then echo "state loaded"
elif [ -r "/lib/modules/$k/modules.builtin" ] && tr - _ < "/lib/modules/$k/modules.builtin" | grep -Eq "(^|/)$n[.]ko([.](gz|xz|zst))?\$"; then echo "state builtin"
elif [ -d "/sys/module/$n" ]; then echo "state sysfs"
elif modprobe -n -q -- "$m" 2>/dev/null; then echo "state available"
else echo "state missing"; fi
if [ -f "$f" ]; then printf 'file '; base64 -w0 < "$f"; echo; fi
`;

export interface ModuleProbe {
  kernel: string;
  state: 'loaded' | 'builtin' | 'sysfs' | 'available' | 'missing';
  file: string | null;
}

/** Parses MODULE_PROBE's output (pure). */
export function parseModuleProbe(output: string): ModuleProbe {
  const probe: ModuleProbe = { kernel: '', state: 'missing', file: null };
  for (const line of output.split('\n')) {
    const space = line.indexOf(' ');
    const word = space < 0 ? line : line.slice(0, space);
    const rest = space < 0 ? '' : line.slice(space + 1);
    if (word === 'kernel') probe.kernel = rest;
    else if (word === 'state') probe.state = rest as ModuleProbe['state'];
    else if (word === 'file') probe.file = decodeBase64(rest);
  }
  return probe;
}

export interface ModuleParams {
  name: string;
  /** The modules-load.d file shared by every ensureModule task; default /etc/modules-load.d/k8s.conf. */
  file?: string;
}

function missingModule(name: string, kernel: string, detail = ''): Error {
  return new Error(
    `kernel module ${name} is not available for kernel ${kernel}: not loaded, not built in, and modprobe cannot find it in /lib/modules/${kernel}` +
      `${detail ? ` (${detail})` : ''}; install the kernel's modules package or check the name`,
  );
}

/** The module's read: what check makes and `probes` declares (one function, so the two cannot differ). */
function moduleRead(p: ModuleParams): Command {
  return sh`sh -c ${MODULE_PROBE} capstan-module ${p.name} ${p.file ?? MODULES_FILE}`;
}

async function probeModule(ctx: CheckContext, p: ModuleParams): Promise<ModuleProbe> {
  const result = await ctx.probe(moduleRead(p));
  if (result.code !== 0) throw new Error(`cannot probe kernel module ${p.name}: ${result.stderr.trim() || `exit ${result.code}`}`);
  return parseModuleProbe(result.stdout);
}

/**
 * Ensures a kernel module is loaded now (listed in /proc/modules or built into the kernel; else
 * `modprobe`) and at boot: a line in the modules-load.d file that every ensureModule task shares
 * (`# Managed by Capstan`, then the modules in first-added order). A module the running kernel
 * does not have fails, naming the kernel version.
 *
 * @param name the module (`overlay`, `br_netfilter`)
 * @param params.file the modules-load.d file (default /etc/modules-load.d/k8s.conf)
 * @example [ensureModule('overlay'), ensureModule('br_netfilter')]
 */
export function ensureModule(name: PerHost<string>, params: { file?: PerHost<string> } = {}, options?: TaskOptions): Task<void> {
  return defineTask<ModuleParams>(
    {
      kind: 'module',
      id: (p) => `module:${p.name}`,
      title: (p) => `kernel module ${p.name}`,
      desired: (p) => ({ name: p.name, file: p.file ?? MODULES_FILE }),
      probes: (p) => [{ kind: 'exec', command: moduleRead(p) }],
      validate: (p) => {
        if (typeof p.name !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(p.name)) throw new Error(`module name must be letters, digits, _ or -, got ${JSON.stringify(p.name)}`);
        if (p.file !== undefined && !/^\/etc\/modules-load\.d\/[^/\s]+\.conf$/.test(p.file)) {
          throw new Error(`file must be /etc/modules-load.d/<name>.conf (only those are read at boot), got ${JSON.stringify(p.file)}`);
        }
      },
      async check(ctx, p) {
        const probe = await probeModule(ctx, p);
        if (probe.state === 'missing') throw missingModule(p.name, probe.kernel);
        const drift: Drift[] = [];
        if (probe.state === 'available') drift.push({ subject: `module ${p.name}`, current: 'not loaded', desired: 'loaded' });
        const file = p.file ?? MODULES_FILE;
        const desired = withModule(probe.file, p.name);
        if (desired !== probe.file) drift.push({ subject: file, file, current: probe.file, desired });
        return drift;
      },
      async apply(ctx, p) {
        const probe = await probeModule(ctx, p);
        if (probe.state === 'available') {
          const result = await ctx.exec(sh`modprobe -- ${p.name}`);
          if (result.code !== 0) throw missingModule(p.name, probe.kernel, result.stderr.trim() || `modprobe exit ${result.code}`);
        }
        const file = p.file ?? MODULES_FILE;
        const desired = withModule(probe.file, p.name);
        if (desired !== probe.file) {
          await ctx.run(sh`mkdir -p -- ${file.slice(0, file.lastIndexOf('/')) || '/'}`);
          await ctx.writeFile(file, Buffer.from(desired, 'latin1'), { mode: '0644' });
        }
      },
    },
    { name, ...params } as PerHostParams<ModuleParams>,
    options,
  );
}
