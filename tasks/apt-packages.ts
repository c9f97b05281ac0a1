/**
 * Packages: installed at a version, held, or removed, as dpkg sees them.
 */
import { defineTask, sh, type CheckContext, type Command, type Drift, type PerHost, type Task, type TaskOptions } from '../runner/index.js';
import { APT_ENV, clearStale, LOCK_TIMEOUT, runAptUpdate, staleReasons, tail } from './apt-update.js';

/* ------------------------------------------------------------------ packages */

export interface PackagesParams {
  /** Package names, optionally pinned: `kubelet=1.34.1-1.1`. */
  names: readonly string[];
  /** true: `apt-mark hold` them; false: unhold them; default: leave holds alone. */
  hold?: boolean;
  /** present (default) or absent (`apt-get remove`). */
  state?: 'present' | 'absent';
}

export interface PackageSpec {
  name: string;
  version?: string;
}

/** `kubelet=1.34.1-1.1` → { name: 'kubelet', version: '1.34.1-1.1' } (pure; throws on a malformed spec). */
export function parsePackageSpec(spec: string): PackageSpec {
  const match = typeof spec === 'string' ? /^([a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?)(?:=([0-9][A-Za-z0-9.+~:-]*))?$/.exec(spec) : null;
  if (!match) throw new Error(`not a package name or name=version: ${JSON.stringify(spec)}`);
  return match[2] === undefined ? { name: match[1]! } : { name: match[1]!, version: match[2] };
}

/** One package as dpkg knows it. */
export interface InstalledPackage {
  version: string;
  /** Fully installed (dpkg status `i`): not half-configured, not only config files left. */
  installed: boolean;
  held: boolean;
}

/** The dpkg-query probe: one line per known package, `name<TAB>version<TAB>status abbreviation`. */
export function dpkgQueryCommand(names: readonly string[]): Command {
  return sh`dpkg-query -W -f=${'${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'} ${names.map((n) => n.replace(/:.*$/, ''))}`;
}

/** Parses dpkgQueryCommand's output: `ii `, `hi `, `rc `… (want, status, error flag). Pure. */
export function parseDpkgQuery(output: string): Map<string, InstalledPackage> {
  const packages = new Map<string, InstalledPackage>();
  for (const line of output.split('\n')) {
    const [name, version, status] = line.split('\t');
    if (!name || version === undefined || status === undefined) continue;
    const entry = { version, installed: status[1] === 'i', held: status[0] === 'h' };
    const known = packages.get(name);
    // Multiarch: a package may be listed once per architecture; an installed instance wins.
    if (!known || (!known.installed && entry.installed)) packages.set(name, entry);
  }
  return packages;
}

/** What ensurePackages would change (pure): which to install or upgrade, which to hold or unhold, which to remove. */
export function packagesPlan(specs: readonly PackageSpec[], dpkg: Map<string, InstalledPackage>, p: Pick<PackagesParams, 'hold' | 'state'>) {
  const baseName = (name: string) => name.replace(/:.*$/, '');
  const state = (spec: PackageSpec) => dpkg.get(baseName(spec.name));
  if (p.state === 'absent') {
    return { install: [] as PackageSpec[], hold: [] as string[], unhold: [] as string[], remove: specs.filter((s) => state(s)?.installed).map((s) => s.name) };
  }
  const install = specs.filter((s) => {
    const now = state(s);
    return !now?.installed || (s.version !== undefined && now.version !== s.version);
  });
  const hold = p.hold === true ? specs.filter((s) => !state(s)?.held).map((s) => s.name) : [];
  const unhold = p.hold === false ? specs.filter((s) => state(s)?.held).map((s) => s.name) : [];
  return { install, hold, unhold, remove: [] as string[] };
}

/** The drift for a plan: one entry for what is missing, one for holds, one for removals. Pure. */
export function packagesDrift(specs: readonly PackageSpec[], dpkg: Map<string, InstalledPackage>, p: Pick<PackagesParams, 'hold' | 'state'>): Drift[] {
  const plan = packagesPlan(specs, dpkg, p);
  const now = (name: string) => {
    const found = dpkg.get(name.replace(/:.*$/, ''));
    return found?.installed ? found.version : 'absent';
  };
  const drift: Drift[] = [];
  if (plan.install.length) {
    drift.push({
      subject: 'missing',
      current: plan.install.map((s) => `${s.name} ${now(s.name)}`).join(', '),
      desired: plan.install.map(specText).join(', '),
    });
  }
  if (plan.hold.length) drift.push({ subject: 'not held', current: plan.hold.join(', '), desired: 'held' });
  if (plan.unhold.length) drift.push({ subject: 'held', current: plan.unhold.join(', '), desired: 'not held' });
  if (plan.remove.length) drift.push({ subject: 'installed', current: plan.remove.map((name) => `${name} ${now(name)}`).join(', '), desired: 'absent' });
  return drift;
}

const specText = (spec: PackageSpec): string => (spec.version === undefined ? spec.name : `${spec.name}=${spec.version}`);

/** apt's messages for a package or version it does not know (yet): the lists need an update. */
const UNKNOWN_TO_APT = /Unable to locate package|has no installation candidate|Version '[^']*' for '[^']*' was not found|Couldn't find any package/;

async function queryPackages(ctx: CheckContext, specs: readonly PackageSpec[]): Promise<Map<string, InstalledPackage>> {
  // Exit 1 = some package is unknown to dpkg, i.e. not installed: that is drift, not an error.
  const result = await ctx.probe(dpkgQueryCommand(specs.map((s) => s.name)));
  if (result.code !== 0 && result.code !== 1) throw new Error(`dpkg-query failed (exit ${result.code}): ${tail(result.stderr, 5)}`);
  return parseDpkgQuery(result.stdout);
}

/**
 * Ensures packages are installed (apt-get install, non-interactive, keeping changed config files
 * with `--force-confold`), at the pinned version when given (`kubelet=1.34.1-1.1`), and held or
 * unheld with `apt-mark`; or removed (`state: 'absent'`). Check reads dpkg's database with
 * dpkg-query, never apt, so a package apt does not know yet (its repository is still pending in
 * --check) is simply reported missing. Apply runs `apt-get update` first when a key or repository
 * changed earlier in the run, and once more when apt does not know a package (a fresh host, or a
 * repository added by an earlier run that stopped before its update).
 *
 * @example ensurePackages(['kubelet=1.34.1-1.1', 'kubeadm=1.34.1-1.1', 'kubectl=1.34.1-1.1'], { hold: true })
 */
export function ensurePackages(names: PerHost<readonly string[]>, params: Omit<PackagesParams, 'names'> = {}, options?: TaskOptions): Task<void> {
  const specsOf = (p: PackagesParams) => p.names.map(parsePackageSpec);
  return defineTask<PackagesParams>(
    {
      kind: 'packages',
      id: (p) => `packages:${specsOf(p).map((s) => s.name).sort().join(',')}`,
      title: (p) => `${p.state === 'absent' ? 'remove packages' : 'packages'} ${p.names.join(', ')}${p.hold === true ? ' (held)' : ''}`,
      validate: (p) => {
        if (!Array.isArray(p.names) || p.names.length === 0) throw new Error('names must be a non-empty list of package names');
        const specs = specsOf(p);
        const seen = new Set<string>();
        for (const spec of specs) {
          if (seen.has(spec.name)) throw new Error(`package ${spec.name} is listed twice`);
          seen.add(spec.name);
        }
        if (p.state !== undefined && p.state !== 'present' && p.state !== 'absent') throw new Error(`state must be present or absent, got ${JSON.stringify(p.state)}`);
        if (p.hold !== undefined && typeof p.hold !== 'boolean') throw new Error('hold must be true or false');
        if (p.state === 'absent' && (p.hold === true || specs.some((s) => s.version !== undefined))) throw new Error('state absent takes neither hold nor versions');
      },
      provides: (p) => (p.state === 'absent' ? [] : specsOf(p).map((s) => ({ package: s.name }))),
      probes: (p) => [{ kind: 'exec', command: dpkgQueryCommand(specsOf(p).map((s) => s.name)) }],
      async check(ctx, p) {
        const specs = specsOf(p);
        const drift = packagesDrift(specs, await queryPackages(ctx, specs), p);
        // In --check, an install here is where apply would refresh stale lists: later handlers find them fresh.
        if (ctx.checkMode && drift.some((d) => d.subject === 'missing')) clearStale(ctx.host);
        return drift;
      },
      async apply(ctx, p) {
        const specs = specsOf(p);
        const plan = packagesPlan(specs, await queryPackages(ctx, specs), p);
        if (plan.remove.length) {
          await ctx.run(sh`${APT_ENV} apt-get remove -y -q ${LOCK_TIMEOUT} --allow-change-held-packages ${plan.remove}`);
          return;
        }
        if (plan.install.length) {
          if (staleReasons(ctx.host).length) await runAptUpdate(ctx);
          const flags = [
            '-o', 'Dpkg::Options::=--force-confold',
            ...LOCK_TIMEOUT,
            // An explicit pin is the wanted state even when it is a downgrade or the package is held.
            ...(plan.install.some((s) => s.version !== undefined) ? ['--allow-downgrades', '--allow-change-held-packages'] : []),
          ];
          const install = sh`${APT_ENV} apt-get install -y -q ${flags} ${plan.install.map(specText)}`;
          let result = await ctx.exec(install);
          if (result.code !== 0 && UNKNOWN_TO_APT.test(`${result.stdout}\n${result.stderr}`)) {
            ctx.log('apt does not know a package yet: apt-get update, then install again');
            await runAptUpdate(ctx);
            result = await ctx.exec(install);
          }
          if (result.code !== 0) throw new Error(`apt-get install ${plan.install.map(specText).join(' ')} failed (exit ${result.code}):\n${tail(`${result.stdout}\n${result.stderr}`)}`);
          for (const line of result.stdout.split('\n').filter((l) => /^(Setting up|Unpacking) /.test(l))) ctx.log(line);
        }
        // Holds from dpkg's state after the install: installing a held package at another version drops its hold.
        const holds = plan.install.length ? packagesPlan(specs, await queryPackages(ctx, specs), p) : plan;
        if (holds.hold.length) await ctx.run(sh`apt-mark hold ${holds.hold}`);
        if (holds.unhold.length) await ctx.run(sh`apt-mark unhold ${holds.unhold}`);
      },
    },
    { ...params, names },
    options,
  );
}
