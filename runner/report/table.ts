import type { ReportTable } from '../events.js';
import { escapeControl } from './format.js';

/**
 * A playbook's table as text lines: the title, then the columns padded to their widest cell, a
 * header row first. Cells are escaped (a host's output may hold terminal control sequences) and
 * kept on one line.
 */
export function tableLines(table: ReportTable): string[] {
  // One line per row: a newline or tab inside a cell would break the columns.
  const cells = [table.columns, ...table.rows].map((row) => row.map((cell) => escapeControl(cell.replace(/[\n\t]+/g, ' '))));
  const widths = table.columns.map((_, column) => Math.max(...cells.map((row) => row[column]!.length)));
  const lines = cells.map((row) =>
    row
      .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd(),
  );
  return [table.title.toUpperCase(), ...(table.rows.length ? lines : [...lines.slice(0, 1), '(none)'])];
}
