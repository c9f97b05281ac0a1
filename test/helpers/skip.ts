/**
 * Skips that CI does not accept. On a developer's machine a suite whose prerequisite is missing
 * (not root, no sshd, a lone test file) is skipped; with `CI` set it fails instead, naming what is
 * missing, because `.ci/run` installs everything and a skipped suite there would be a silent pass.
 * Mocha's `forbidPending` (set under CI in .mocharc.cjs) catches any other pending test.
 */
export function skipOutsideCi(context: Mocha.Context, reason: string): never {
  if (process.env.CI) throw new Error(`${reason}: CI installs what this suite needs, so it must run here, not skip`);
  context.skip();
}
