/** Every task family, for playbooks: `import { ensureFile, … } from '../tasks/index.js'`. */
export { ensureFile, ensureDirectory, ensureLine, ensureBlock, editLine, editBlock } from './files.js';
export type { FileParams, DirectoryParams, LineParams, BlockParams } from './files.js';
export { command } from './command.js';
export type { CommandParams } from './command.js';
