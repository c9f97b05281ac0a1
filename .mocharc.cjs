// Mocha's settings. Under CI (`.ci/run` sets CI=true) a pending test fails the run: CI installs
// everything the suite needs, so a skipped or pending test there would be a silent pass.
module.exports = {
  'node-option': ['import=tsx'],
  // Root hooks: the secrets scan after every test of the process (test/helpers/root-hooks.ts).
  require: ['test/helpers/root-hooks.ts'],
  timeout: 20000,
  reporter: 'spec',
  color: false,
  'forbid-pending': Boolean(process.env.CI),
};
