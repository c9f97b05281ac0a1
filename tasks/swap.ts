import { defineTask, sh, type ApplyContext, type CheckContext, type Command, type Drift, type PerHostParams, type Task, type TaskOptions } from '../runner/index.js';
import { requireAbsolutePath } from './validate.js';

/*
 * Swap off, now and after every reboot. Kubernetes' kubelet refuses to start with swap on (by
 * default), and a node that comes back from a reboot with swap on drops out of the cluster, so the
 * check verifies the effect — /proc/swaps empty — and every way swap comes back at boot:
 *
 *   - /etc/fstab swap lines (systemd-fstab-generator turns them into .swap units),
 *   - .swap units (any source: generators, vendor or local unit files) and swap.target,
 *   - Raspberry Pi OS up to bookworm: dphys-swapfile (a service that creates /var/swap and swaps on it),
 *   - Raspberry Pi OS trixie: rpi-swap (a generator configured by /etc/rpi/swap.conf, with the units
 *     rpi-setup-loop@var-swap.service, rpi-resize-swap-file.service, rpi-zram-writeback.*),
 *   - zram: systemd-zram-generator's config ([zramN] sections) and its dev-zramN.swap units;
 *     Debian's zram-tools (zramswap.service).
 *
 * Everything is probed in one round trip by SWAP_PROBE and turned into drift by pure functions.
 */

/** The fstab every Linux host has. */
export const FSTAB = '/etc/fstab';

/** Where swap comes back from on Raspberry Pi OS trixie: rpi-swap's drop-in directory. */
export const RPI_SWAP_DROP_IN = '/etc/rpi/swap.conf.d/99-capstan-no-swap.conf';
export const RPI_SWAP_DROP_IN_CONTENT = '# Managed by Capstan: Kubernetes nodes run without swap.\n[Main]\nMechanism=none\n';

/** Content of an /etc file that overrides a vendor zram-generator config with no devices. */
export const ZRAM_OVERRIDE_CONTENT = '# Managed by Capstan: Kubernetes nodes run without swap, so no zram swap devices.\n';

/** Services that create swap and are switched off with `systemctl disable` (their own packages stay). */
const SWAP_SERVICES = ['dphys-swapfile.service', 'zramswap.service'] as const;

/** Raspberry Pi OS trixie's rpi-swap units, masked where present. */
const RPI_SWAP_UNITS = ['rpi-setup-loop@var-swap.service', 'rpi-resize-swap-file.service', 'rpi-zram-writeback.service', 'rpi-zram-writeback.timer'] as const;

const ZRAM_MAIN_CONFIGS = [
  '/etc/systemd/zram-generator.conf',
  '/run/systemd/zram-generator.conf',
  '/usr/local/lib/systemd/zram-generator.conf',
  '/usr/lib/systemd/zram-generator.conf',
] as const;
const ZRAM_DROP_IN_DIRS = [
  '/etc/systemd/zram-generator.conf.d',
  '/run/systemd/zram-generator.conf.d',
  '/usr/local/lib/systemd/zram-generator.conf.d',
  '/usr/lib/systemd/zram-generator.conf.d',
] as const;

/** Where systemd looks for unit files (systemd.unit(5)), generator output included. */
const UNIT_DIRS = [
  '/etc/systemd/system.control', '/run/systemd/system.control', '/run/systemd/transient', '/run/systemd/generator.early',
  '/etc/systemd/system', '/run/systemd/system', '/run/systemd/generator', '/usr/local/lib/systemd/system',
  '/usr/lib/systemd/system', '/lib/systemd/system', '/run/systemd/generator.late',
] as const;

/**
 * One read-only round trip: /proc/swaps, the files that configure swap (base64, so their bytes
 * come back exactly), dphys-swapfile's swap file, and the state of every swap-related systemd unit.
 * Output lines: `swap <file>`, `file <path> <base64>`, `exists <path>`, `dphys-file <path> present|absent`,
 * `systemd yes|no`, `is-enabled <unit> <state>`, then `@@show` and `systemctl show` blocks.
 */
export const SWAP_PROBE = `set -f
fstab=$1
echo "fstab-path $fstab"
if [ -r /proc/swaps ]; then tail -n +2 /proc/swaps | while read -r name rest; do echo "swap $name"; done; fi
file() { if [ -f "$1" ]; then printf 'file %s ' "$1"; base64 -w0 < "$1"; echo; fi; }
file "$fstab"
for p in /sbin/dphys-swapfile /usr/sbin/dphys-swapfile /etc/rpi/swap.conf /usr/lib/systemd/system-generators/rpi-swap-generator /lib/systemd/system-generators/rpi-swap-generator /usr/lib/systemd/system-generators/zram-generator /lib/systemd/system-generators/zram-generator; do
  if [ -e "$p" ]; then echo "exists $p"; fi
done
if [ -e /sbin/dphys-swapfile ] || [ -e /usr/sbin/dphys-swapfile ]; then
  f=$(sed -n 's/^[[:space:]]*CONF_SWAPFILE=//p' /etc/dphys-swapfile 2>/dev/null | tail -n 1 | tr -d "\\"'")
  [ -n "$f" ] || f=/var/swap
  if [ -e "$f" ]; then echo "dphys-file $f present"; else echo "dphys-file $f absent"; fi
fi
file ${RPI_SWAP_DROP_IN}
for p in ${ZRAM_MAIN_CONFIGS.join(' ')}; do file "$p"; done
set +f
for d in ${ZRAM_DROP_IN_DIRS.join(' ')}; do for p in "$d"/*.conf; do file "$p"; done; done
set -f
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  echo "systemd yes"
  for u in ${SWAP_SERVICES.join(' ')}; do echo "is-enabled $u $(systemctl is-enabled "$u" 2>/dev/null)"; done
  # Swap unit files on disk (globbed: \`systemctl list-unit-files\` takes most of a second), and every swap unit loaded.
  units=$( { set +f; for p in ${UNIT_DIRS.map((d) => `${d}/*.swap`).join(' ')}; do [ -e "$p" ] && echo "\${p##*/}"; done; set -f; systemctl list-units --type=swap --all --no-legend --no-pager --plain 2>/dev/null; } | awk '{print $1}' | sort -u)
  zram=
  for u in $units; do case $u in dev-zram*.swap) n=\${u#dev-}; zram="$zram systemd-zram-setup@\${n%.swap}.service";; esac; done
  echo "@@show"
  systemctl show --no-pager -p Id -p LoadState -p UnitFileState -p FragmentPath -p ActiveState -- swap.target ${RPI_SWAP_UNITS.join(' ')} $units $zram
else
  echo "systemd no"
fi
`;

/** A systemd unit as `systemctl show` describes it. */
export interface UnitInfo {
  id: string;
  loadState: string;
  unitFileState: string;
  fragmentPath: string;
  activeState: string;
}

/** What SWAP_PROBE found (pure data; fixtures in test/fixtures/swap are real probe outputs). */
export interface SwapProbe {
  fstabPath: string;
  /** Active swap areas, as /proc/swaps names them. */
  swaps: string[];
  /** Files that exist, with their content (latin1, byte for byte). */
  files: Map<string, string>;
  exists: Set<string>;
  /** dphys-swapfile's configured swap file, when dphys-swapfile is installed. */
  dphysFile?: { path: string; present: boolean };
  systemd: boolean;
  /** `systemctl is-enabled` of the swap services. */
  enabled: Map<string, string>;
  units: UnitInfo[];
}

/** Parses SWAP_PROBE's output (pure). */
export function parseSwapProbe(output: string): SwapProbe {
  const probe: SwapProbe = { fstabPath: FSTAB, swaps: [], files: new Map(), exists: new Set(), systemd: false, enabled: new Map(), units: [] };
  const [head = '', show] = splitOnce(output, '\n@@show\n');
  for (const line of head.split('\n')) {
    const [word = '', rest = ''] = splitOnce(line, ' ');
    if (word === 'fstab-path') probe.fstabPath = rest;
    else if (word === 'swap' && rest) probe.swaps.push(rest);
    else if (word === 'exists') probe.exists.add(rest);
    else if (word === 'systemd') probe.systemd = rest === 'yes';
    else if (word === 'file') {
      const [path = '', data = ''] = splitOnce(rest, ' ');
      probe.files.set(path, Buffer.from(data, 'base64').toString('latin1'));
    } else if (word === 'dphys-file') {
      const at = rest.lastIndexOf(' ');
      probe.dphysFile = { path: rest.slice(0, at), present: rest.slice(at + 1) === 'present' };
    } else if (word === 'is-enabled') {
      const [unit = '', state = ''] = splitOnce(rest, ' ');
      probe.enabled.set(unit, state.trim());
    }
  }
  if (show !== undefined) probe.units = parseSystemctlShow(show);
  return probe;
}

/** Parses `systemctl show -p Id -p LoadState …` output for several units (blank-line separated blocks). */
export function parseSystemctlShow(text: string): UnitInfo[] {
  const units: UnitInfo[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const values = new Map<string, string>();
    for (const line of block.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1));
    }
    const id = values.get('Id');
    if (!id) continue;
    units.push({
      id,
      loadState: values.get('LoadState') ?? '',
      unitFileState: values.get('UnitFileState') ?? '',
      fragmentPath: values.get('FragmentPath') ?? '',
      activeState: values.get('ActiveState') ?? '',
    });
  }
  return units;
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + separator.length)];
}

/* ------------------------------------------------------------------ fstab (pure) */

/** One active (uncommented) swap entry of an fstab. */
export interface FstabSwapEntry {
  /** 0-based line index. */
  index: number;
  /** The first field as written: `UUID=…`, `/swapfile`, `/dev/mapper/vg-swap`. */
  spec: string;
  line: string;
}

/** The uncommented lines whose third field (the type) is `swap`, whatever their options (`sw`, `defaults`, …). */
export function fstabSwapEntries(text: string): FstabSwapEntry[] {
  const entries: FstabSwapEntry[] = [];
  text.split('\n').forEach((line, index) => {
    const body = line.endsWith('\r') ? line.slice(0, -1) : line;
    const trimmed = body.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const fields = trimmed.split(/[ \t]+/);
    if (fields[2] === 'swap') entries.push({ index, spec: fields[0]!, line: body });
  });
  return entries;
}

/**
 * Comments out every active swap line of an fstab with a leading `#` (as the tutorials' `sed`
 * does, but only real swap entries: type field `swap`, not any line mentioning "swap"). Every other
 * byte — comments, tabs, blank lines, the final newline or its absence — is kept.
 */
export function commentFstabSwap(text: string): string {
  const lines = text.split('\n');
  for (const entry of fstabSwapEntries(text)) lines[entry.index] = `#${lines[entry.index]!}`;
  return lines.join('\n');
}

/* ------------------------------------------------------------------ zram-generator config (pure) */

const SECTION = /^\s*\[([^\]]*)\]/;

/** True when the text has an active (uncommented) `[zramN]` section. */
export function hasZramDevices(text: string): boolean {
  return text.split('\n').some((line) => {
    const match = SECTION.exec(line);
    return match !== null && /^zram\d+$/.test(match[1]!.trim());
  });
}

/**
 * Comments out every `[zramN]` section of a zram-generator config — its header and its settings —
 * so the generator creates no device ("disabled by removing the section header", as Debian's file
 * says). Comments, blank lines and other sections are kept byte for byte.
 */
export function commentZramSections(text: string): string {
  let inZram = false;
  return text
    .split('\n')
    .map((line) => {
      const match = SECTION.exec(line);
      if (match) inZram = /^zram\d+$/.test(match[1]!.trim());
      const trimmed = line.trim();
      if (!inZram || trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';')) return line;
      return `#${line}`;
    })
    .join('\n');
}

/** A file edit that turns zram swap off: `current` null when the file is created. */
export interface ConfigEdit {
  path: string;
  current: string | null;
  desired: string;
}

/**
 * The edits that leave zram-generator with no device, from the config files that exist (pure).
 * zram-generator reads the first main config found (/etc, /run, /usr/local/lib, /usr/lib) and
 * drop-ins by name, a name in /etc hiding the same name in the others. Files under /etc are edited
 * (sections commented); a vendor file with devices is hidden by an /etc file of the same name.
 */
export function zramConfigEdits(files: ReadonlyMap<string, string>): ConfigEdit[] {
  const edits: ConfigEdit[] = [];
  const fix = (path: string, text: string, etcPath: string) => {
    if (!hasZramDevices(text)) return;
    if (path.startsWith('/etc/')) edits.push({ path, current: text, desired: commentZramSections(text) });
    else edits.push({ path: etcPath, current: null, desired: ZRAM_OVERRIDE_CONTENT });
  };
  const main = ZRAM_MAIN_CONFIGS.find((path) => files.has(path));
  if (main) fix(main, files.get(main)!, ZRAM_MAIN_CONFIGS[0]);
  const dropIns = new Map<string, string>(); // name → the path that wins
  for (const dir of ZRAM_DROP_IN_DIRS) {
    for (const path of files.keys()) {
      if (!path.startsWith(`${dir}/`)) continue;
      const name = path.slice(dir.length + 1);
      if (!dropIns.has(name)) dropIns.set(name, path);
    }
  }
  for (const [name, path] of [...dropIns].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    fix(path, files.get(path)!, `${ZRAM_DROP_IN_DIRS[0]}/${name}`);
  }
  return edits;
}

/* ------------------------------------------------------------------ the plan (pure) */

/** How one drift item is fixed. */
export type SwapAction =
  | { kind: 'swapoff' }
  | { kind: 'fstab'; path: string }
  | { kind: 'dphys-uninstall' }
  | { kind: 'disable'; unit: string }
  | { kind: 'mask'; unit: string; stop: boolean; moveAside?: string }
  | { kind: 'write'; path: string; content: string; backup: boolean };

export interface SwapItem {
  drift: Drift;
  action: SwapAction;
}

/** `systemctl is-enabled` answers that mean "starts at boot". */
const ENABLED = new Set(['enabled', 'enabled-runtime', 'linked', 'linked-runtime', 'alias']);

/**
 * Everything that keeps swap on now or brings it back at boot, one item per thing, each with the
 * drift to report and the action that fixes it (pure: unit-tested against real probe outputs).
 */
export function swapOffItems(probe: SwapProbe): SwapItem[] {
  const items: SwapItem[] = [];
  for (const name of probe.swaps) {
    items.push({ drift: { subject: `active swap ${name}`, current: 'on', desired: 'off' }, action: { kind: 'swapoff' } });
  }
  const fstab = probe.files.get(probe.fstabPath);
  if (fstab !== undefined) {
    for (const entry of fstabSwapEntries(fstab)) {
      items.push({
        drift: { subject: `fstab swap line ${entry.spec}`, current: entry.line, desired: `#${entry.line}` },
        action: { kind: 'fstab', path: probe.fstabPath },
      });
    }
  }
  if (probe.dphysFile?.present) {
    items.push({
      drift: { subject: `swap file ${probe.dphysFile.path} (dphys-swapfile)`, current: 'present', desired: 'absent' },
      action: { kind: 'dphys-uninstall' },
    });
  }
  for (const unit of SWAP_SERVICES) {
    const state = probe.enabled.get(unit) ?? '';
    if (ENABLED.has(state)) items.push({ drift: { subject: `service ${unit}`, current: state, desired: 'disabled' }, action: { kind: 'disable', unit } });
  }
  const rpiSwap = probe.exists.has('/etc/rpi/swap.conf') || [...probe.exists].some((p) => p.endsWith('/rpi-swap-generator'));
  if (rpiSwap) {
    const current = probe.files.get(RPI_SWAP_DROP_IN) ?? null;
    if (current !== RPI_SWAP_DROP_IN_CONTENT) {
      items.push({
        drift: { subject: `rpi-swap config ${RPI_SWAP_DROP_IN}`, file: RPI_SWAP_DROP_IN, current, desired: RPI_SWAP_DROP_IN_CONTENT },
        action: { kind: 'write', path: RPI_SWAP_DROP_IN, content: RPI_SWAP_DROP_IN_CONTENT, backup: false },
      });
    }
  }
  for (const edit of zramConfigEdits(probe.files)) {
    items.push({
      drift: { subject: `zram-generator config ${edit.path}`, file: edit.path, current: edit.current, desired: edit.desired },
      action: { kind: 'write', path: edit.path, content: edit.desired, backup: edit.current !== null },
    });
  }
  if (probe.systemd) {
    const seen = new Set<string>();
    for (const unit of probe.units) {
      if (seen.has(unit.id)) continue;
      seen.add(unit.id);
      const isSwapUnit = unit.id.endsWith('.swap');
      // Named units (swap.target, rpi-swap's, zram setup) only where installed; .swap units always (even transient ones).
      if (!isSwapUnit && unit.loadState === 'not-found') continue;
      if (unit.unitFileState === 'masked') continue;
      const state = unit.unitFileState || unit.loadState || 'unknown';
      // `systemctl mask` refuses when a unit file of that name is in /etc/systemd/system: it is moved aside first.
      const local = unit.fragmentPath.startsWith('/etc/systemd/system/') ? { moveAside: unit.fragmentPath } : {};
      items.push({
        drift: { subject: `unit ${unit.id}`, current: state, desired: 'masked' },
        action: { kind: 'mask', unit: unit.id, stop: unit.id !== 'swap.target' && !['inactive', 'failed', ''].includes(unit.activeState), ...local },
      });
    }
  }
  return items;
}

/* ------------------------------------------------------------------ the task */

export interface SwapOffParams {
  /** The fstab to edit; default /etc/fstab. */
  fstab?: string;
}

/** The swap read: what check makes and `probes` declares. */
function swapRead(fstab: string): Command {
  return sh`sh -c ${SWAP_PROBE} capstan-swap-probe ${fstab}`;
}

async function probeSwap(ctx: CheckContext, fstab: string): Promise<SwapProbe> {
  const result = await ctx.probe(swapRead(fstab));
  if (result.code !== 0) throw new Error(`cannot probe swap: ${result.stderr.trim() || `exit ${result.code}`}`);
  return parseSwapProbe(result.stdout);
}

async function applySwapOff(ctx: ApplyContext, fstabPath: string): Promise<void> {
  // Act on the state as it is now (it may have changed since check), in an order where nothing
  // turns swap back on behind us: services, configs, units, fstab, then swapoff.
  const probe = await probeSwap(ctx, fstabPath);
  const actions = swapOffItems(probe).map((item) => item.action);
  const has = (kind: SwapAction['kind']) => actions.some((a) => a.kind === kind);
  if (has('dphys-uninstall')) {
    await ctx.run(sh`dphys-swapfile swapoff`);
    await ctx.run(sh`dphys-swapfile uninstall`);
  }
  for (const action of actions) if (action.kind === 'disable') await ctx.run(sh`systemctl disable -- ${action.unit}`);
  for (const action of actions) {
    if (action.kind !== 'write') continue;
    await ctx.run(sh`mkdir -p -- ${action.path.slice(0, action.path.lastIndexOf('/'))}`);
    await ctx.writeFile(action.path, Buffer.from(action.content, 'latin1'), action.backup ? { backup: true } : {});
  }
  for (const action of actions) {
    if (action.kind !== 'mask') continue;
    if (action.moveAside) {
      await ctx.run(sh`systemctl disable -- ${action.unit}`);
      await ctx.run(sh`mv -f -- ${action.moveAside} ${`${action.moveAside}.capstan-backup`}`);
      ctx.log(`moved ${action.moveAside} to ${action.moveAside}.capstan-backup to mask ${action.unit}`);
    }
    // Stop before masking: `mask` reloads systemd, and a masked .swap unit has no What= left, so
    // `mask --now` runs a bare `swapoff` that fails ("bad usage"), leaving the swap on. A unit that
    // is gone by now (var-swap.swap after `dphys-swapfile swapoff`) fails to stop with "not loaded":
    // fine, the `swapoff -a` below and the verify pass catch any swap still on.
    if (action.stop) await ctx.exec(sh`systemctl stop -- ${action.unit}`);
    await ctx.run(sh`systemctl mask -- ${action.unit}`);
  }
  if (has('fstab')) {
    // Read fstab again: `dphys-swapfile uninstall` above edits it too (it removes its own comment lines).
    const text = (await ctx.readFile(fstabPath))?.toString('latin1') ?? '';
    const edited = commentFstabSwap(text);
    if (edited !== text) await ctx.writeFile(fstabPath, Buffer.from(edited, 'latin1'), { backup: true });
  }
  if (probe.systemd && (has('fstab') || has('mask') || has('write'))) await ctx.run(sh`systemctl daemon-reload`);
  if ((await probeSwap(ctx, fstabPath)).swaps.length > 0) await ctx.run(sh`swapoff -a`);
}

/**
 * Ensures swap is off now and stays off after a reboot: no active swap (`swapoff -a`), every swap
 * line of /etc/fstab commented out (a backup of fstab is kept; every other byte is kept), every
 * systemd `.swap` unit and `swap.target` masked, and Raspberry Pi OS's swap services off where
 * installed — dphys-swapfile (swapoff, uninstall, disable), rpi-swap (`Mechanism=none` drop-in,
 * rpi-setup-loop@var-swap and friends masked) — and zram (systemd-zram-generator's `[zramN]`
 * sections commented out, dev-zramN.swap masked; zram-tools' zramswap disabled).
 *
 * Check reports each of these separately ("fstab swap line /swapfile", "unit dev-zram0.swap:
 * enabled → masked", "service dphys-swapfile.service: enabled → disabled").
 *
 * @param params.fstab the fstab to edit (default /etc/fstab)
 * @example ensureSwapOff()
 */
export function ensureSwapOff(params: PerHostParams<SwapOffParams> = {}, options?: TaskOptions): Task<void> {
  return defineTask<SwapOffParams>(
    {
      kind: 'swap',
      id: () => 'swap:off',
      title: () => 'swap off, now and after reboot',
      desired: (p) => ({ state: 'off', fstab: p.fstab ?? FSTAB }),
      validate: (p) => {
        if (p.fstab !== undefined) requireAbsolutePath('fstab', p.fstab);
      },
      probes: (p) => [{ kind: 'exec', command: swapRead(p.fstab ?? FSTAB) }],
      check: async (ctx, p) => swapOffItems(await probeSwap(ctx, p.fstab ?? FSTAB)).map((item) => item.drift),
      apply: (ctx, p) => applySwapOff(ctx, p.fstab ?? FSTAB),
    },
    params,
    options,
  );
}
