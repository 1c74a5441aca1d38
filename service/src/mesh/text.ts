/**
 * Untrusted text (annotation values, Peer fields, names from the API) made safe to show: cut to a
 * bounded length and quoted, with every control, line-separator and bidirectional-override
 * character escaped, so it can reach a log line, a terminal or a DOT file without doing anything.
 */

/** Characters that must never reach a terminal or a log line raw. */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** The text with every unsafe character written as `\uXXXX` (no quotes, no cut). */
export function escapeUnsafe(s: string): string {
  return s.replace(UNSAFE, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** True when `s` holds a character that must never reach a terminal or a log line raw. */
export function hasUnsafe(s: string): boolean {
  return new RegExp(UNSAFE.source).test(s);
}

/** Untrusted text for a message: at most `max` characters, quoted, unsafe characters escaped. */
export function quoted(s: string, max = 60): string {
  const cut = s.length > max ? `${s.slice(0, max - 3)}...` : s;
  return `"${escapeUnsafe(cut.replace(/\\/g, '\\\\').replace(/"/g, '\\"'))}"`;
}
