import { InputError, errorMessage } from './errors.js';
import type { Playbook } from './playbook.js';

/** Imports a playbook module and checks it default-exports a playbook(...). */
export async function playbookFrom(path: string, url: string): Promise<Playbook> {
  let module: { default?: unknown };
  try {
    module = (await import(url)) as { default?: unknown };
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && errorMessage(error).includes(path)) throw new InputError(`playbook ${path} does not exist`);
    throw new InputError(`cannot load playbook ${path}: ${errorMessage(error)}`, { cause: error });
  }
  const candidate = module.default as Partial<Playbook> | undefined;
  if (!candidate || typeof candidate.name !== 'string' || typeof candidate.body !== 'function') {
    throw new InputError(`playbook ${path} must \`export default playbook('name', async ({ play }) => …)\``);
  }
  return candidate as Playbook;
}
