import { parseArgs, type ParseArgsConfig } from 'node:util';
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { CapstanError, InputError, errorMessage } from './errors.js';
import { EXIT, exitCodeOfError } from './exit-codes.js';
import type { Reporter } from './events.js';
import type { Playbook } from './playbook.js';
import type { RunLog } from './report/run-log.js';
import type { PlanSettings, RunSettings, RunSummary } from './run.js';
import { Secret } from './secret.js';
import { askOnTerminal, confirmApply, Confirmation, hasTerminal } from './confirm.js';

const USAGE = `capstan — idempotent, parallel provisioning over SSH, with an honest --check

Usage:
  capstan run <playbook.ts> -i <inventory> [options]   apply a playbook (--check: dry run)
  capstan exec -i <inventory> <pattern> -- <command>   run a command on many hosts at once
  capstan inventory -i <inventory> --list | --graph    show the parsed inventory (ansible-inventory's format)
  capstan lab up|down|status                           local Debian test hosts (systemd-nspawn)

Run "capstan <command> --help" for the options of each command.
Exit codes: 0 ok, 1 bad input, 2 a task failed, 4 a host was unreachable, 99 interrupted (Ctrl-C).`;

const RUN_HELP = `capstan run <playbook.ts> -i <inventory> [options]
capstan run <playbook.ts> --lab [-i <inventory>] [options]

  -i, --inventory FILE       Ansible YAML or INI inventory (required without --lab)
      --lab                  run on local lab hosts shaped like the playbook's example inventory (or
                             like -i's): same groups and host counts, lab addresses; brought up (or
                             reused when already up), with Kubernetes STAND-INS (test doubles) for
                             kubeadm/kubelet/kubectl. Needs root on Linux, like "capstan lab"
  -C, --check                dry run: report what would change, change nothing
      --confirm              check first, show the changes (task × hosts), ask "apply these changes?
                             [y/N]" on the terminal, then apply them in the same run; "no" changes
                             nothing (exit 1). Needs a terminal: without one, exit 2 before any contact
  -D, --diff                 show unified diffs of file changes
  -l, --limit PATTERN        only hosts matching this pattern (also @file: one host per line)
  -f, --forks N              hosts in parallel (default 50)
  -e, --extra-vars K=V       a variable over every inventory var (repeatable; or a JSON object)
  -u, --user USER            remote user when the inventory sets no ansible_user
  -b, --become               sudo to root on every host
  -K, --ask-become-pass      prompt for the sudo password (never echoed or logged)
      --accept-new-host-keys accept and record unknown host keys (changed keys are always refused)
      --timeout SECONDS      per-command timeout (default 600); a timed-out command is stopped on
                             the host (TERM to its process group, KILL 5 s later)
      --lock-timeout SECONDS how long to wait for a host locked by another run (default 60); then
                             that host stops, naming the run that holds it. --check takes no lock
      --json                 one JSON event per line; the last line is the recap (with the run's durationMs)
  -v, --verbose              show command output of changed tasks
      --profile              add the slowest tasks and each play's wall time, per host, to the recap
      --list-hosts           print the plays and the hosts each would run on, contact no host, exit
      --list-tasks           print the plays and their tasks, contact no host, exit
  -h, --help

The playbook is type-checked before any host is contacted (cached in ~/.capstan/typecheck, or
CAPSTAN_CACHE_DIR/typecheck, until a file it reads changes); a type error stops the run with file:line:col.
Every run writes its JSON events (as --json, secrets redacted) to ~/.capstan/runs/<UTC time>-<playbook>.jsonl
(CAPSTAN_RUNS_DIR overrides the directory; the newest 50 logs are kept), ends with "finished in N s",
and prints the log's path when it failed.`;

const EXEC_HELP = `capstan exec -i <inventory> <pattern> [options] -- <command...>

Runs the command on every matched host in parallel and prints each host's output as one block
(never interleaved). One argument after -- is shell text ("ps aux | grep etcd"); several are an
argv, each quoted. Exit code 2 when any host's command failed, 4 when a host was unreachable.

  -i, --inventory FILE, -l/--limit, -f/--forks, -u/--user, -b/--become, -K, --accept-new-host-keys, --timeout`;

const INVENTORY_HELP = `capstan inventory -i <inventory> (--list | --graph) [--host NAME]
       capstan inventory init --topology T --control-plane ADDR[,…] [--workers …] [-o FILE]   (see init --help)

  --list    JSON in the shape of ansible-inventory --list (groups, _meta.hostvars with merged vars)
  --graph   the group tree, like ansible-inventory --graph
  --host    the merged vars of one host
  --show-secrets  print credential values (passwords, tokens, keys) instead of ***`;

const INVENTORY_INIT_HELP = `capstan inventory init --topology TOPOLOGY --control-plane [NAME=]ADDRESS[,…] [options]

Writes a first inventory for a topology from its example (inventory/*.yaml, every variable documented
there), with your hosts in it; \`capstan run\` accepts it as is.

  --topology T            single-node | pi-cluster | stacked-ha | hard-way
  --control-plane LIST    control planes (hard-way: controllers), comma-separated [NAME=]ADDRESS;
                          names default to cp-1, cp-2, … (hard-way: controller-0, …)
  --workers LIST          workers, the same way (worker-1, …)
  --balancer [NAME=]ADDR  the HAProxy machine: stacked-ha's balancer variant, hard-way
  --vip ADDRESS           stacked-ha's keepalived variant: the control-plane VIP
  --user NAME             ansible_user (the example's otherwise)
  -o, --output FILE       write FILE (mode 0600; an existing file only with --force), else print`;

const LAB_HELP = `capstan lab up [--hosts N] [--kind nspawn|vm] [--inventory-out FILE] | down | status

Debian bookworm test hosts on this machine: systemd-nspawn containers with real systemd and sshd,
each in its own network namespace on a bridge (10.77.0.0/24), apt through a local apt-cacher-ng.
The first "up" builds the root filesystem with mmdebstrap (cached). Needs root on Linux.

  --kind vm   QEMU virtual machines booting Debian's kernel instead (kernel modules, swap, vm.*
              sysctls, reboots); ~1 GiB RAM each, ~40 s to boot without KVM. Needs qemu-system-x86
              and qemu-utils; the first "up" builds the VM image (cached). "down" removes either kind.`;

const connectionOptions = {
  inventory: { type: 'string', short: 'i' },
  limit: { type: 'string', short: 'l' },
  forks: { type: 'string', short: 'f' },
  user: { type: 'string', short: 'u' },
  become: { type: 'boolean', short: 'b' },
  'ask-become-pass': { type: 'boolean', short: 'K' },
  'accept-new-host-keys': { type: 'boolean' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** Parses argv and runs a command; returns the exit code. The only place that decides exit codes. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await runCommand(rest);
      case 'exec':
        return await execCommand(rest);
      case 'inventory':
        return await inventoryCommand(rest);
      case 'lab':
        return await labCommand(rest);
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(`${USAGE}\n`);
        return command === undefined ? 1 : 0;
      default:
        throw new InputError(`unknown command "${command}"\n\n${USAGE}`);
    }
  } catch (error) {
    process.stderr.write(`capstan: ${describeError(error)}\n`);
    return exitCodeOfError(error);
  }
}

function describeError(error: unknown): string {
  if (error instanceof CapstanError) {
    const where = [error.host, error.task].filter(Boolean).join(': ');
    return where && !error.message.includes(where) ? `${where}: ${error.message}` : error.message;
  }
  return errorMessage(error);
}


function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, help: string) {
  try {
    const parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
    return parsed;
  } catch (error) {
    throw new InputError(`${errorMessage(error)}\n\n${help}`);
  }
}

async function loadInventoryFile(path: string | undefined, help: string) {
  if (!path) throw new InputError(`-i/--inventory is required\n\n${help}`);
  const { loadInventory } = await import('./inventory/index.js');
  return loadInventory(path);
}

async function connectionSettings(
  values: { user?: string; become?: boolean; 'ask-become-pass'?: boolean; 'accept-new-host-keys'?: boolean; timeout?: string },
  hosts: readonly import('./inventory/index.js').InventoryHost[] = [],
) {
  const timeout = values.timeout === undefined ? 600 : Number(values.timeout);
  if (!(timeout > 0)) throw new InputError(`--timeout must be a positive number of seconds, not ${values.timeout}`);
  const { hostFactory, checkConnectionInputs } = await import('./connect.js');
  const base = {
    acceptNewHostKeys: values['accept-new-host-keys'] === true,
    commandTimeoutMs: timeout * 1000,
    ...(values.user ? { user: values.user } : {}),
    ...(values.become ? { become: true } : {}),
  };
  // Key files, known_hosts, connection vars: exit 1 before any contact. Warnings are printed once per run.
  for (const warning of checkConnectionInputs(hosts, base)) process.stderr.write(`capstan: warning: ${warning}\n`);
  const password = values['ask-become-pass'] ? await promptSecret('BECOME password: ') : undefined;
  return hostFactory({ ...base, ...(password ? { becomePassword: password } : {}) });
}

function forksOf(value: string | undefined): number {
  const forks = value === undefined ? 50 : Number(value);
  if (!Number.isInteger(forks) || forks < 1) throw new InputError(`--forks must be a positive integer, not ${value}`);
  return forks;
}

/** --limit PATTERN, or @file with one host per line (Ansible's retry files). */
async function limitOf(value: string | undefined): Promise<string | undefined> {
  if (value === undefined || !value.startsWith('@')) return value;
  const { readFile } = await import('node:fs/promises');
  const path = value.slice(1);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InputError(`--limit ${value}: cannot read ${path}: ${errorMessage(error)}`);
  }
  const hosts = text.split('\n').map((l) => l.trim()).filter(Boolean);
  if (!hosts.length) throw new InputError(`--limit ${value}: ${path} lists no hosts`);
  return hosts.join(':');
}

function parseExtraVars(values: string[] | undefined): Record<string, unknown> {
  const vars: Record<string, unknown> = {};
  for (const value of values ?? []) {
    if (value.trim().startsWith('{')) {
      try {
        Object.assign(vars, JSON.parse(value));
      } catch (error) {
        throw new InputError(`-e ${value}: not valid JSON: ${errorMessage(error)}`);
      }
      continue;
    }
    for (const pair of value.split(/\s+/).filter(Boolean)) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new InputError(`-e ${pair}: expected key=value`);
      vars[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return vars;
}

async function runCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      ...connectionOptions,
      check: { type: 'boolean', short: 'C' },
      confirm: { type: 'boolean' },
      diff: { type: 'boolean', short: 'D' },
      json: { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' },
      'extra-vars': { type: 'string', short: 'e', multiple: true },
      'lock-timeout': { type: 'string' },
      lab: { type: 'boolean' },
      profile: { type: 'boolean' },
      'list-hosts': { type: 'boolean' },
      'list-tasks': { type: 'boolean' },
    },
    RUN_HELP,
  );
  if (values.help) {
    process.stdout.write(`${RUN_HELP}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new InputError(`run takes one playbook file\n\n${RUN_HELP}`);
  const playbookPath = positionals[0]!;
  const listing = { hosts: values['list-hosts'] === true, tasks: values['list-tasks'] === true };
  if ((listing.hosts || listing.tasks) && values.json) throw new InputError(`--list-hosts and --list-tasks print text: drop --json\n\n${RUN_HELP}`);
  if (values.confirm) {
    if (values.check) throw new InputError(`--confirm applies after asking, --check never applies: use one of them\n\n${RUN_HELP}`);
    if (values.json) throw new InputError(`--confirm asks a person at a terminal, --json is for programs: drop one of them\n\n${RUN_HELP}`);
    if (listing.hosts || listing.tasks) throw new InputError(`--list-hosts and --list-tasks apply nothing: drop --confirm\n\n${RUN_HELP}`);
    if (!hasTerminal()) {
      process.stderr.write('capstan: --confirm asks "apply these changes? [y/N]" on a terminal, and stdin or stderr is not one: nothing was contacted or changed. Without a terminal, run --check, then the run itself.\n');
      return EXIT.failed;
    }
  }
  const lockTimeoutMs = lockTimeoutOf(values['lock-timeout']);
  if (values.lab) return runOnLab(playbookPath, { ...values, lockTimeoutMs }, listing);
  const inventory = await loadInventoryFile(values.inventory, RUN_HELP);
  const playbook = await loadPlaybook(playbookPath);
  const limit = await limitOf(values.limit);
  const extraVars = parseExtraVars(values['extra-vars']);
  const forks = forksOf(values.forks);
  const { planPlaybook } = await import('./run.js');
  const checkMode = values.check === true;
  const { withExtraVars } = await import('./inventory/index.js');
  const settings = { inventory: withExtraVars(inventory, extraVars), checkMode, extraVars, ...(limit ? { limit } : {}) };
  // A listing changes nothing, so it asks for no confirmation.
  if (listing.hosts || listing.tasks) return listPlan(playbook, { ...settings, confirmation: new Confirmation({ checkMode: true, extraVars }) }, listing);
  const confirmation = new Confirmation({ checkMode, extraVars }, askOnTerminal);
  const selected = await planPlaybook(playbook, { ...settings, confirmation }); // before the -K prompt and any connection: bad input costs nothing
  const connect = await connectionSettings(values, selected);
  return executeRun(playbookPath, playbook, { ...settings, confirmation, forks, connect }, { ...values, lockTimeoutMs });
}

/** --list-hosts / --list-tasks: the plan, validated as for a run, printed; no host is contacted. */
async function listPlan(playbook: Playbook, settings: PlanSettings, show: { hosts: boolean; tasks: boolean }): Promise<number> {
  const { planPlays } = await import('./run.js');
  const { planListing } = await import('./report/plan.js');
  process.stdout.write(planListing(playbook.name, await planPlays(playbook, settings), show, settings.extraVars));
  return 0;
}

/**
 * Runs a planned playbook with its reporters: the display (--json, TTY or plain), the run log
 * (runner/report/run-log.ts) and, with --profile, the profile added to the recap. Afterwards, on
 * stderr: with --json the "finished in" line (stdout stays JSON); on failure the log's path and the retry file.
 */
async function executeRun(
  playbookPath: string,
  playbook: Playbook,
  settings: Omit<RunSettings, 'reporter' | 'signal'>,
  flags: { json?: boolean; diff?: boolean; verbose?: boolean; profile?: boolean; confirm?: boolean; lockTimeoutMs: number },
): Promise<number> {
  const { runPlaybook, runConfirmed } = await import('./run.js');
  const { openRunLog, runsDirectory, teeReporter } = await import('./report/run-log.js');
  const warn = (message: string) => void process.stderr.write(`capstan: warning: ${message}\n`);
  const display = await makeReporter({ json: flags.json === true, diff: flags.diff === true, verbose: flags.verbose === true });
  let log: RunLog | undefined;
  try {
    log = openRunLog({ dir: runsDirectory(), playbookPath, diff: flags.diff === true, warn });
  } catch (error) {
    // The hosts matter more than the log: say so, and run.
    warn(`this run is not logged: ${errorMessage(error)}`);
  }
  let reporter = log ? teeReporter(log.reporter, display) : display;
  if (flags.profile) reporter = (await import('./report/profile.js')).withProfile(reporter);
  const interrupt = interruptOnSigint();
  const lock = await lockSettings(playbook.name, flags.lockTimeoutMs);
  let summary: RunSummary;
  let declined = false;
  try {
    const runSettings = { ...settings, reporter, lock, signal: interrupt.signal };
    if (flags.confirm) {
      const confirmed = await runConfirmed(playbook, runSettings, async (changes) => {
        process.stderr.write(`\n${(await import('./report/changes.js')).changeTable(changes, [...settings.inventory.hosts.keys()])}`);
        return confirmApply();
      }).finally(interrupt.dispose);
      summary = confirmed.summary;
      declined = confirmed.outcome === 'declined';
      if (confirmed.outcome !== 'applied') process.stderr.write(`capstan: ${CONFIRM_STOPPED[confirmed.outcome]}\n`);
    } else {
      summary = await runPlaybook(playbook, runSettings).finally(interrupt.dispose);
    }
  } finally {
    await reporter.close();
  }
  if (declined) return EXIT.badInput;
  if (flags.json) process.stderr.write(`${(await import('./report/format.js')).finishedLine(summary.durationMs)}\n`);
  if (summary.exitCode !== 0 && log) process.stderr.write(`run log: ${log.path}\n`);
  if (summary.failedHosts.length) await writeRetryFile(playbookPath, summary.failedHosts);
  return summary.exitCode;
}

/** What `run --confirm` says when it applies nothing. */
const CONFIRM_STOPPED = {
  'check-failed': 'the check did not pass, so nothing was applied',
  'nothing-to-change': 'nothing to change: every host is in sync, nothing was applied',
  declined: 'not applied: nothing was changed',
} as const;

/** --lock-timeout SECONDS (default 60; 0: do not wait). */
function lockTimeoutOf(value: string | undefined): number {
  const seconds = value === undefined ? 60 : Number(value);
  if (!(seconds >= 0) || value?.trim() === '') throw new InputError(`--lock-timeout must be a number of seconds (0 or more), not ${value}`);
  return seconds * 1000;
}

/** The lock settings of one run: one run id for all its hosts (runner/lock.ts). */
async function lockSettings(playbook: string, timeoutMs: number) {
  const { lockHolderForRun } = await import('./lock.js');
  return { holder: lockHolderForRun(playbook), timeoutMs };
}

/**
 * `run --lab` (runner/lab-run.ts): lab hosts shaped like the playbook's example inventory (or -i's),
 * brought up or reused, stand-ins installed; the playbook runs against the lab's inventory; then how
 * to reach the hosts. Lab messages go to stderr, so --json output stays one event per line.
 */
async function runOnLab(
  playbookPath: string,
  values: { inventory?: string; limit?: string; forks?: string; check?: boolean; confirm?: boolean; diff?: boolean; json?: boolean; verbose?: boolean; profile?: boolean; 'extra-vars'?: string[]; lockTimeoutMs: number } & Parameters<typeof connectionSettings>[0],
  listing: { hosts: boolean; tasks: boolean },
): Promise<number> {
  const playbook = await loadPlaybook(playbookPath);
  const limit = await limitOf(values.limit);
  const userVars = parseExtraVars(values['extra-vars']);
  const forks = forksOf(values.forks);
  const { planPlaybook } = await import('./run.js');
  const { exampleInventoryOf, prepareLabRun } = await import('./lab-run.js');
  // Plan against the inventory whose shape the lab takes first: bad input costs no lab.
  const shape = await loadInventoryFile(values.inventory ?? (await exampleInventoryOf(playbookPath)), RUN_HELP);
  const checkMode = values.check === true;
  const shapeSettings = { inventory: shape, checkMode, extraVars: userVars, ...(limit ? { limit } : {}) };
  // The lab's hosts have the shape's names and groups: its plan is the lab's, with no lab brought up.
  if (listing.hosts || listing.tasks) return listPlan(playbook, { ...shapeSettings, confirmation: new Confirmation({ checkMode: true, extraVars: userVars }) }, listing);
  const confirmation = new Confirmation({ checkMode, extraVars: userVars }, askOnTerminal);
  await planPlaybook(playbook, { ...shapeSettings, confirmation });
  const log = (line: string) => void process.stderr.write(`${line}\n`);
  const lab = await prepareLabRun({ playbookPath, ...(values.inventory ? { inventoryPath: values.inventory } : {}), log });
  try {
    const inventory = await loadInventoryFile(lab.inventoryPath, RUN_HELP);
    const extraVars = { ...lab.extraVars, ...userVars };
    const { withExtraVars } = await import('./inventory/index.js');
    const settings = { inventory: withExtraVars(inventory, extraVars), checkMode, extraVars, confirmation, ...(limit ? { limit } : {}) };
    await planPlaybook(playbook, settings);
    const connect = await connectionSettings(values);
    const exitCode = await executeRun(playbookPath, playbook, { ...settings, forks, connect }, values);
    const firstVars = { ...([...inventory.hosts.values()][0]?.vars ?? {}), ...extraVars };
    const context = typeof firstVars.kubeconfig_context === 'string' ? firstVars.kubeconfig_context : playbook.name;
    const kubeconfigPath = typeof firstVars.kubeconfig_path === 'string' ? firstVars.kubeconfig_path : '~/.kube/config';
    log(lab.summary(playbookPath, { kubeconfigPath, context }));
    return exitCode;
  } finally {
    await lab.close();
  }
}

/**
 * First Ctrl-C: hosts finish the task in flight (a file write completes or is discarded — never
 * torn), start nothing else, and the recap says what was done. Second Ctrl-C, or SIGTERM: stop at
 * once — the commands still running on the hosts are stopped (TERM to their process groups, KILL
 * after a grace period) before the controller exits.
 */
function interruptOnSigint(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) {
      void stopAndExit('aborted at once (second Ctrl-C); a file being written is left as it was', EXIT.sigint);
      return;
    }
    process.stderr.write('\ncapstan: interrupting: finishing the tasks in flight, starting no others (Ctrl-C again to abort at once)\n');
    controller.abort();
  };
  const onSigterm = () => void stopAndExit('terminated (SIGTERM)', EXIT.sigterm);
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
    },
  };
}

/** Ctrl-C or SIGTERM during `capstan exec`: stop the commands on the hosts, then exit. */
function stopOnSignals(): () => void {
  const onSigint = () => void stopAndExit('interrupted (Ctrl-C)', EXIT.sigint);
  const onSigterm = () => void stopAndExit('terminated (SIGTERM)', EXIT.sigterm);
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  return () => {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
  };
}

let stopping = false;

/**
 * Stops every command still running on the hosts (without this, a root login's command runs on after
 * the controller exits: sshd does not signal it), releases the host locks of the run, then exits.
 */
async function stopAndExit(why: string, code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    process.stderr.write(`\ncapstan: ${why}: stopping the commands still running on the hosts\n`);
    const { stopRemoteCommands } = await import('./transport/ssh.js');
    const { releaseHeldLocks } = await import('./lock.js');
    await stopRemoteCommands().catch(() => undefined);
    await releaseHeldLocks().catch(() => undefined);
  }
  process.exit(code);
}

/** Like Ansible's .retry file: the hosts that failed, for `--limit @<file>`. */
async function writeRetryFile(playbookPath: string, hosts: string[]): Promise<void> {
  const { writeFile, mkdir } = await import('node:fs/promises');
  const { homedir } = await import('node:os');
  const { basename, join } = await import('node:path');
  const dir = join(process.env.CAPSTAN_RETRY_DIR ?? join(homedir(), '.capstan', 'retry'));
  const file = join(dir, `${basename(playbookPath).replace(/\.[cm]?[jt]s$/, '')}.retry`);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(file, `${hosts.join('\n')}\n`);
    process.stderr.write(`failed hosts written to ${file}: re-run them with --limit @${file}\n`);
  } catch {
    // A retry file is a convenience: failing to write one must not hide the run's own result.
  }
}

async function loadPlaybook(path: string) {
  const { playbookFrom } = await import('./load.js');
  if (existsSync(path)) await (await import('./typecheck.js')).typecheckPlaybook(path);
  return playbookFrom(resolve(path), pathToFileURL(resolve(path)).href);
}

/** Columns below which the live (TTY) reporter is not used. */
const MIN_LIVE_WIDTH = 20;

async function makeReporter(options: { json: boolean; diff: boolean; verbose: boolean }): Promise<Reporter> {
  const write = (text: string) => void process.stdout.write(text);
  if (options.json) return new (await import('./report/json.js')).JsonReporter(write, { diff: options.diff });
  // A terminal that reports no width (a pseudo-terminal nobody sized: `script` without a terminal of
  // its own, some serial consoles) gets the plain reporter: the live one wraps every character there.
  const width = process.stdout.columns ?? 0;
  if (process.stdout.isTTY && !process.env.CI && width >= MIN_LIVE_WIDTH) return new (await import('./report/tty.js')).TtyReporter(write, options);
  return new (await import('./report/plain.js')).PlainReporter(write, options);
}

async function execCommand(args: string[]): Promise<number> {
  const separator = args.indexOf('--');
  const ours = separator >= 0 ? args.slice(0, separator) : args;
  const remote = separator >= 0 ? args.slice(separator + 1) : [];
  const { values, positionals } = parse(ours, { ...connectionOptions, json: { type: 'boolean' } }, EXEC_HELP);
  if (values.help) {
    process.stdout.write(`${EXEC_HELP}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new InputError(`exec takes one host pattern before --\n\n${EXEC_HELP}`);
  if (remote.length === 0) throw new InputError(`exec needs a command after --\n\n${EXEC_HELP}`);
  const inventory = await loadInventoryFile(values.inventory, EXEC_HELP);
  const limit = await limitOf(values.limit);
  const pattern = limit ? `${positionals[0]!}:&${limit}` : positionals[0]!;
  const hosts = inventory.select(pattern);
  const connect = await connectionSettings(values, hosts);
  const { execOnHosts } = await import('./exec.js');
  const dispose = stopOnSignals();
  try {
    return await execOnHosts(hosts, remote, { connect, forks: forksOf(values.forks), json: values.json === true, write: (t) => void process.stdout.write(t) });
  } finally {
    dispose();
  }
}

async function inventoryCommand(args: string[]): Promise<number> {
  if (args[0] === 'init') return inventoryInitCommand(args.slice(1));
  const { values } = parse(
    args,
    {
      inventory: { type: 'string', short: 'i' },
      list: { type: 'boolean' },
      graph: { type: 'boolean' },
      host: { type: 'string' },
      'show-secrets': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    INVENTORY_HELP,
  );
  if (values.help) {
    process.stdout.write(`${INVENTORY_HELP}\n`);
    return 0;
  }
  const inventory = await loadInventoryFile(values.inventory, INVENTORY_HELP);
  const { toAnsibleList, toGraph } = await import('./inventory/index.js');
  const shown = (vars: unknown) => (values['show-secrets'] ? vars : redactSecretVars(vars));
  if (values.host !== undefined) {
    const host = inventory.hosts.get(values.host);
    if (!host) throw new InputError(`no host ${values.host} in ${inventory.source}`);
    process.stdout.write(`${JSON.stringify(shown(host.vars), null, 4)}\n`);
  } else if (values.graph) {
    process.stdout.write(`${toGraph(inventory)}\n`);
  } else if (values.list) {
    process.stdout.write(`${JSON.stringify(shown(toAnsibleList(inventory)), null, 4)}\n`);
  } else {
    throw new InputError(`inventory needs --list, --graph or --host\n\n${INVENTORY_HELP}`);
  }
  return 0;
}

/** `capstan inventory init`: a first inventory for a topology, from its documented example. */
async function inventoryInitCommand(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    {
      topology: { type: 'string' },
      'control-plane': { type: 'string', multiple: true },
      workers: { type: 'string', multiple: true },
      balancer: { type: 'string' },
      vip: { type: 'string' },
      user: { type: 'string' },
      output: { type: 'string', short: 'o' },
      force: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    INVENTORY_INIT_HELP,
  );
  if (values.help) {
    process.stdout.write(`${INVENTORY_INIT_HELP}\n`);
    return 0;
  }
  if (values.topology === undefined) throw new InputError(`inventory init needs --topology\n\n${INVENTORY_INIT_HELP}`);
  const list = (items: string[] | undefined) => (items ?? []).flatMap((item) => item.split(',')).map((item) => item.trim()).filter(Boolean);
  const output = values.output;
  if (output !== undefined && !values.force && existsSync(output)) throw new InputError(`${output} exists: inventory init does not overwrite a file without --force`);
  const { initInventory } = await import('./inventory/init.js');
  const text = initInventory({
    topology: values.topology,
    controlPlanes: list(values['control-plane']),
    workers: list(values.workers),
    ...(values.balancer !== undefined ? { balancer: values.balancer } : {}),
    ...(values.vip !== undefined ? { vip: values.vip } : {}),
    ...(values.user !== undefined ? { user: values.user } : {}),
    ...(output !== undefined ? { output } : {}),
    commandLine: ['capstan', 'inventory', 'init', ...args].map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)).join(' '),
  });
  if (output === undefined) {
    process.stdout.write(text);
    return 0;
  }
  const { writeLocalFileAtomic } = await import('./local-file.js');
  writeLocalFileAtomic(output, text, 0o600);
  process.stderr.write(`wrote ${output}; next: capstan run playbooks/${values.topology}.ts -i ${output} --check\n`);
  return 0;
}

/** Variable names whose values are credentials (ansible_password, ansible_become_pass, k8s_join_token, …). */
const SECRET_VAR = /pass(word|wd)?$|passphrase|token|secret|certificate_key/i;

/** The same structure with every credential-named variable's value shown as `***`, at any depth (--host and --list alike). */
function redactSecretVars(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecretVars);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, SECRET_VAR.test(key) && item !== null && item !== '' ? '***' : redactSecretVars(item)]));
}

async function labCommand(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  const { values } = parse(rest, { hosts: { type: 'string' }, kind: { type: 'string' }, 'inventory-out': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, LAB_HELP);
  if (values.help || action === undefined || action === '--help' || action === '-h') {
    process.stdout.write(`${LAB_HELP}\n`);
    return action === undefined ? 1 : 0;
  }
  const lab = await import('./lab/index.js');
  const log = (line: string) => void process.stderr.write(`${line}\n`);
  switch (action) {
    case 'up': {
      const count = values.hosts === undefined ? 3 : Number(values.hosts);
      if (!Number.isInteger(count) || count < 1 || count > 200) throw new InputError(`--hosts must be 1..200, not ${values.hosts}`);
      const kind = values.kind ?? 'nspawn';
      if (kind !== 'nspawn' && kind !== 'vm') throw new InputError(`--kind must be nspawn or vm, not ${kind}\n\n${LAB_HELP}`);
      await lab.installLabPrerequisites(log, kind === 'vm' ? lab.VM_LAB_PROGRAMS : undefined);
      if (kind === 'vm') lab.assertVmLabSupported();
      else lab.assertLabSupported();
      const state = await lab.labUp({ hosts: count, log, kind, ...(values['inventory-out'] ? { inventoryOut: resolve(values['inventory-out']) } : {}) });
      for (const host of state.hosts) process.stdout.write(`${host.name}\t${host.address}\n`);
      process.stdout.write(`inventory: ${state.inventoryPath}\ntry: capstan exec -i ${state.inventoryPath} all -- hostname\nremove: capstan lab down\n`);
      return 0;
    }
    case 'down':
      await lab.labDown({ log });
      return 0;
    case 'status': {
      const state = await lab.labStatus();
      if (!state) {
        process.stdout.write('no lab is up\n');
        return 0;
      }
      for (const host of state.hosts) process.stdout.write(`${host.name}\t${host.address}\n`);
      process.stdout.write(`inventory: ${state.inventoryPath}\n`);
      return 0;
    }
    default:
      throw new InputError(`unknown lab action "${action}"\n\n${LAB_HELP}`);
  }
}

/** Reads a password without echo: from the terminal when there is one, else one line of stdin. */
async function promptSecret(prompt: string): Promise<Secret> {
  const { createInterface } = await import('node:readline');
  const input = process.stdin;
  process.stderr.write(prompt);
  if (input.isTTY) input.setRawMode(true);
  const value = await new Promise<string>((resolveLine) => {
    if (input.isTTY) {
      let typed = '';
      const onData = (chunk: Buffer) => {
        for (const char of chunk.toString('utf8')) {
          if (char === '\r' || char === '\n') {
            input.off('data', onData);
            input.setRawMode(false);
            input.pause();
            resolveLine(typed);
            return;
          }
          if (char === '\u0003') process.exit(EXIT.sigint);
          typed = char === '\u007f' ? typed.slice(0, -1) : typed + char;
        }
      };
      input.on('data', onData);
      input.resume();
    } else {
      const rl = createInterface({ input });
      rl.once('line', (line) => {
        resolveLine(line); // before close(): close emits 'close' synchronously, which resolves with ''
        rl.close();
      });
      rl.once('close', () => resolveLine(''));
    }
  });
  process.stderr.write('\n');
  return new Secret(value);
}
