#!/usr/bin/env node
// Entry point: registers tsx so the CLI and user playbooks load as TypeScript (no type-check at run time;
// `npm run typecheck` does that), then hands over to the CLI.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./cli.ts');
process.exitCode = await main(process.argv.slice(2));
