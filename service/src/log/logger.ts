/**
 * Logging for journald: one line per event, prefixed with the sd-daemon(3) priority (`<3>` …
 * `<7>`) when stderr is connected to the journal, so `journalctl -p warning` shows only problems.
 * On a terminal the line gets a time and level word instead. Never pass secrets to it.
 */
import type { LogLevel } from '../config/config.js';
import { escapeUnsafe } from '../mesh/text.js';

/** syslog priorities of the levels (sd-daemon(3)). */
const PRIORITY: Record<LogLevel, number> = { debug: 7, info: 6, notice: 5, warning: 4, error: 3 };
const ORDER: LogLevel[] = ['debug', 'info', 'notice', 'warning', 'error'];

/** A sink for log lines; the default writes to stderr. */
export type LogSink = (line: string) => void;

/** A logger with a level threshold. */
export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  notice(msg: string): void;
  warning(msg: string): void;
  error(msg: string): void;
  /** Changes the threshold (config reload). */
  setLevel(level: LogLevel): void;
  /** True when messages at `level` are written. */
  enabled(level: LogLevel): boolean;
}

/** Makes one line of a message: newlines and control characters never split an entry. */
export function oneLine(msg: string): string {
  return escapeUnsafe(msg.replace(/\r?\n\s*/g, ' | ').replace(/\t/g, ' '));
}

/** Describes an error and its `cause` chain on one line. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 6; depth += 1) {
    if (e instanceof Error) {
      parts.push(e.message);
      e = (e as Error & { cause?: unknown }).cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.filter((p, i) => p && parts.indexOf(p) === i).join(': ');
}

/** Creates a logger; `journal` forces the priority-prefix format (default: when JOURNAL_STREAM is set). */
export function createLogger(opts: { level?: LogLevel; journal?: boolean; sink?: LogSink } = {}): Logger {
  let threshold = ORDER.indexOf(opts.level ?? 'info');
  const journal = opts.journal ?? Boolean(process.env.JOURNAL_STREAM);
  const sink: LogSink = opts.sink ?? ((line) => process.stderr.write(`${line}\n`));
  const write = (level: LogLevel, msg: string): void => {
    if (ORDER.indexOf(level) < threshold) return;
    const text = oneLine(msg);
    sink(journal ? `<${PRIORITY[level]}>${text}` : `${new Date().toISOString()} ${level.padEnd(7)} ${text}`);
  };
  return {
    debug: (m) => write('debug', m),
    info: (m) => write('info', m),
    notice: (m) => write('notice', m),
    warning: (m) => write('warning', m),
    error: (m) => write('error', m),
    setLevel: (level) => {
      threshold = ORDER.indexOf(level);
    },
    enabled: (level) => ORDER.indexOf(level) >= threshold,
  };
}

/** A logger that keeps lines in memory, for tests. */
export function memoryLogger(level: LogLevel = 'debug'): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ level, journal: true, sink: (l) => lines.push(l) });
  return Object.assign(logger, { lines });
}
