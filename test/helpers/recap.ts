import { expect } from 'chai';
import { recapOf } from './cli.js';

/**
 * Asserts that a run's recap names exactly `hosts` and that none of them changed, failed or was
 * unreachable. A loop over the recap alone passes on a recap that lists no host at all (a run that
 * matched nothing, or output the parser did not recognise); this cannot.
 */
export function expectNothingChanged(stdout: string, hosts: readonly string[]): void {
  const recap = recapOf(stdout);
  expect(Object.keys(recap).sort(), 'the hosts in the recap').to.deep.equal([...hosts].sort());
  for (const [host, counts] of Object.entries(recap)) {
    expect({ changed: counts.changed, failed: counts.failed, unreachable: counts.unreachable }, host).to.deep.equal({ changed: 0, failed: 0, unreachable: false });
  }
}
