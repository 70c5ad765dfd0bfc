// Email templates: files in templates/email/, three per email —
//   <name>.subject.txt   the Subject line (one line)
//   <name>.text.txt      the plain-text body
//   <name>.html          the HTML body
// with `{{variable}}` placeholders, filled from the job's data plus `app_url` (APP_URL).
// `{{variable|url}}` percent-encodes the value for use inside a link.
//
// The renderer is deliberately tiny and strict:
//   * a placeholder whose variable is missing (or null) is an error, never a blank;
//   * values must be strings, numbers or booleans;
//   * in the HTML part every value is HTML-escaped (so data can never inject markup);
//   * in the subject, line breaks in a value become spaces (a header is one line);
//   * anything that looks like a placeholder but is not one (`{{ two words }}`) is an error,
//     so a typo in a template fails loudly instead of reaching a customer.
// Templates are read from disk on each render: editing one needs no restart.
import fs from 'node:fs/promises';
import path from 'node:path';
import { EMAIL_TEMPLATES_DIR } from '../paths.ts';

export type TemplateData = Record<string, unknown>;

export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

export type TemplatePart = 'subject' | 'text' | 'html';

/** A template that does not exist, does not parse, or lacks data: retrying will not help. */
export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateError';
  }
}

const NAME = /^[a-z][a-z0-9_]{0,62}$/;
const FILES: Record<TemplatePart, string> = { subject: 'subject.txt', text: 'text.txt', html: 'html' };
// Every `{{ ... }}`; a well-formed one is `{{ variable }}` or `{{ variable|url }}`.
const ANY_PLACEHOLDER = /\{\{([\s\S]*?)\}\}/g;
const PLACEHOLDER = /^\s*([a-z_][a-z0-9_]*)\s*(?:\|\s*(url)\s*)?$/;

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const escapeHtml = (value: string): string => value.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

/** The template names in `dir`: those with all three parts. */
export async function templateNames(dir = EMAIL_TEMPLATES_DIR): Promise<string[]> {
  const files = new Set(await fs.readdir(dir));
  return [...files]
    .filter((f) => f.endsWith(`.${FILES.subject}`))
    .map((f) => f.slice(0, -`.${FILES.subject}`.length))
    .filter((name) => NAME.test(name) && Object.values(FILES).every((ext) => files.has(`${name}.${ext}`)))
    .sort();
}

/** Fills one part of template `name` (used in messages) from `data`. */
export function fill(source: string, part: TemplatePart, data: TemplateData, name = 'template'): string {
  return source.replace(ANY_PLACEHOLDER, (whole, inner: string) => {
    const match = PLACEHOLDER.exec(inner);
    if (!match) throw new TemplateError(`${name}.${FILES[part]}: "${whole}" is not a placeholder (write {{variable}} or {{variable|url}})`);
    const [, variable, filter] = match;
    const value = Object.hasOwn(data, variable) ? data[variable] : undefined;
    if (value === undefined || value === null) {
      throw new TemplateError(`${name}.${FILES[part]}: no value for {{${variable}}} (the job's data must provide it)`);
    }
    if (!['string', 'number', 'boolean'].includes(typeof value)) {
      throw new TemplateError(`${name}.${FILES[part]}: {{${variable}}} must be a string, number or boolean, got ${Array.isArray(value) ? 'an array' : typeof value}`);
    }
    let text = String(value);
    if (filter === 'url') text = encodeURIComponent(text);
    if (part === 'html') return escapeHtml(text);
    if (part === 'subject') return text.replace(/\s*[\r\n]+\s*/g, ' ');
    return text;
  });
}

/** Renders template `name` from `dir` with `data`. Unknown name, bad template or missing data: TemplateError. */
export async function renderTemplate(name: string, data: TemplateData, dir = EMAIL_TEMPLATES_DIR): Promise<RenderedEmail> {
  if (!NAME.test(name)) throw new TemplateError(`"${name}" is not a template name (lower case letters, digits and _)`);
  const read = async (part: TemplatePart): Promise<string> => {
    try {
      return await fs.readFile(path.join(dir, `${name}.${FILES[part]}`), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new TemplateError(`unknown email template "${name}" (no ${name}.${FILES[part]} in ${dir})`);
      throw error;
    }
  };
  const [subject, text, html] = await Promise.all([read('subject'), read('text'), read('html')]);
  const filledSubject = fill(subject, 'subject', data, name).trim();
  if (/[\r\n]/.test(filledSubject)) throw new TemplateError(`${name}.${FILES.subject}: the subject must be one line`);
  return {
    subject: filledSubject,
    text: fill(text, 'text', data, name),
    html: fill(html, 'html', data, name),
  };
}
