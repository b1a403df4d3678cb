// The report: each section prints as an aligned text table when its scenario ends, and the whole run is
// also rendered as markdown ready for docs/benchmarks.md.

export const fmt = (n, digits = 0) =>
  n === undefined || Number.isNaN(n) ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
export const mib = (bytes) => fmt(bytes / 2 ** 20);
export const ratio = (a, b) => (a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) || !b ? '–' : `${fmt(a / b, 2)}×`);
export const kilo = (n) => (Number.isNaN(n) ? '–' : n >= 10_000 ? `${fmt(n / 1000, 1)}k` : fmt(n));
/** Median req/s with the range over the runs when there was more than one. */
export const rpsCell = (s) => (s.runs > 1 ? `${kilo(s.rps)} (${kilo(s.rpsMin)}–${kilo(s.rpsMax)})` : kilo(s.rps));

export class Report {
  sections = [];
  header = [];

  /** { title, columns, rows, notes, align }; align: one 'l' or 'r' per column (default: first left, rest right). */
  add(section) {
    this.sections.push(section);
    const table = section.rows.length ? `${textTable(section.columns, section.rows, section.align)}\n` : '';
    process.stdout.write(`\n${section.title}\n${table}`);
    for (const note of section.notes ?? []) process.stdout.write(`  note: ${note}\n`);
  }

  markdown() {
    const parts = [this.header.join('  \n')];
    for (const s of this.sections) {
      parts.push(s.rows.length ? `**${s.title}**\n\n${mdTable(s.columns, s.rows, s.align)}` : `**${s.title}**`);
      if (s.notes?.length) parts.push(s.notes.map((n) => `- ${n}`).join('\n'));
    }
    return `${parts.join('\n\n')}\n`;
  }
}

const alignment = (columns, align) => align ?? `l${'r'.repeat(columns.length - 1)}`;

export function textTable(columns, rows, align) {
  const cells = [columns, ...rows].map((r) => r.map(String));
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => [...(r[i] ?? '')].length)));
  const a = alignment(columns, align);
  const line = (r) => r.map((c, i) => (a[i] === 'l' ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].map((l) => `  ${l}`).join('\n');
}

export function mdTable(columns, rows, align) {
  const a = alignment(columns, align);
  const line = (r) => `| ${r.join(' | ')} |`;
  return [line(columns), line(columns.map((_, i) => (a[i] === 'l' ? '---' : '---:'))), ...rows.map(line)].join('\n');
}
