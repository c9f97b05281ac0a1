/**
 * Every fixture says where its structure comes from. Each top-level directory of test/fixtures has a
 * README.md with a table `| file | kind | where its structure comes from | what it keeps / checked
 * against |`; every file under the directory (README.md files aside) has a row whose first cell is
 * its path relative to that directory in backticks, whose kind is `upstream` (shaped after a real
 * tool's file or output), `constructed` (written by hand after a documented format) or `Capstan
 * input` (Capstan's own playbooks, inventories or output, not an upstream file), and whose source
 * cell is filled in. A row naming a file that is not there is stale and fails too.
 */
import { expect } from 'chai';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const KINDS = ['upstream', 'constructed', 'Capstan input'];

/** Every file below `dir`, as paths relative to `dir` with `/` separators (hidden files included). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (at: string) => {
    for (const name of readdirSync(at).sort()) {
      const path = join(at, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(dir, path).split(sep).join('/'));
    }
  };
  walk(dir);
  return out;
}

interface Row {
  file: string;
  kind: string;
  source: string;
  line: number;
}

/** The cells of a Markdown table line (`\|` is a pipe inside a cell). */
function cells(line: string): string[] {
  const parts = line.trim().replace(/^\|/, '').replace(/\|$/, '').split(/(?<!\\)\|/);
  return parts.map((cell) => cell.replace(/\\\|/g, '|').trim());
}

/** The table rows of a README whose first cell is a backticked file name. */
function provenanceRows(readme: string): Row[] {
  const rows: Row[] = [];
  readme.split('\n').forEach((text, index) => {
    if (!text.trim().startsWith('|')) return;
    const [first = '', kind = '', source = ''] = cells(text);
    const name = /^`([^`]+)`$/.exec(first);
    if (name) rows.push({ file: name[1]!, kind, source, line: index + 1 });
  });
  return rows;
}

const directories = readdirSync(FIXTURES)
  .filter((name) => statSync(join(FIXTURES, name)).isDirectory())
  .sort();

describe('fixture provenance (test/fixtures/*/README.md)', () => {
  it('has fixture directories', () => {
    expect(directories).to.include.members(['cni', 'containerd', 'inventory', 'kernel', 'system']);
  });

  for (const dir of directories) {
    describe(`test/fixtures/${dir}`, () => {
      const root = join(FIXTURES, dir);
      const readmePath = join(root, 'README.md');
      const fixtures = filesUnder(root).filter((file) => file.split('/').pop() !== 'README.md');
      const readme = existsSync(readmePath) ? readFileSync(readmePath, 'utf8') : '';
      const rows = provenanceRows(readme);
      const hint =
        `add a row to test/fixtures/${dir}/README.md: ` +
        '| `<path relative to the directory>` | upstream / constructed / Capstan input | where its structure comes from | what it keeps / checked against |';

      it('has a README.md', () => {
        expect(existsSync(readmePath), `test/fixtures/${dir} has no README.md; ${hint}`).to.equal(true);
      });

      it('names every fixture file in its provenance table', () => {
        const listed = new Set(rows.map((row) => row.file));
        const unlisted = fixtures.filter((file) => !listed.has(file));
        expect(unlisted, `fixtures without a provenance row in test/fixtures/${dir}/README.md:\n  ${unlisted.join('\n  ')}\n${hint}`).to.deep.equal([]);
      });

      it('gives each row a kind and a source', () => {
        const bad = rows
          .filter((row) => !KINDS.includes(row.kind) || row.source === '')
          .map((row) => `line ${row.line}: \`${row.file}\` (kind "${row.kind}"${row.source === '' ? ', no source' : ''})`);
        expect(bad, `rows whose kind is not one of ${KINDS.join(' / ')} or whose source cell is empty:\n  ${bad.join('\n  ')}`).to.deep.equal([]);
      });

      it('names no file twice and no file that does not exist (stale rows)', () => {
        const present = new Set(fixtures);
        const stale = rows.filter((row) => !present.has(row.file)).map((row) => `line ${row.line}: \`${row.file}\``);
        expect(stale, `rows in test/fixtures/${dir}/README.md naming no file under test/fixtures/${dir}:\n  ${stale.join('\n  ')}`).to.deep.equal([]);
        const seen = new Set<string>();
        const twice = rows.filter((row) => (seen.has(row.file) ? true : (seen.add(row.file), false))).map((row) => row.file);
        expect(twice, `files with more than one row in test/fixtures/${dir}/README.md`).to.deep.equal([]);
      });
    });
  }
});
