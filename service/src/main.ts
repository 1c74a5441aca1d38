/**
 * Command dispatch for the `wg-overlay` CLI: `run` (the daemon), `check-config`, `version`.
 */
import { parseArgs } from 'node:util';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from './config/config.js';
import { runDaemon } from './daemon/run.js';
import { VERSION } from './version.js';

const USAGE = `Usage: wg-overlay <command> [options]

Commands:
  run [--config FILE]           run the daemon (default config ${DEFAULT_CONFIG_PATH})
  check-config [--config FILE]  validate the config file and print problems
  version                       print the version
`;

/** Runs the CLI with the given arguments; resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const opts = () => parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, allowPositionals: false });
  switch (command) {
    case 'run': {
      // The daemon's handles (sockets, timers) are closed by now, but exit explicitly so a
      // straggler can never keep a stopped daemon alive. stderr is synchronous on Linux pipes.
      const code = await runDaemon(opts().values.config ?? DEFAULT_CONFIG_PATH);
      process.exit(code);
    }
    case 'check-config': {
      const file = opts().values.config ?? DEFAULT_CONFIG_PATH;
      try {
        const { warnings } = await loadConfig(file);
        for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
        process.stdout.write(`${file}: OK\n`);
        return 0;
      } catch (err) {
        if (err instanceof ConfigError) {
          for (const p of err.problems) process.stderr.write(`error: ${p}\n`);
          return 78;
        }
        throw err;
      }
    }
    case 'version':
    case '--version':
      process.stdout.write(`wg-overlay ${VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`wg-overlay: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}
