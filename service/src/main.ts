/**
 * Command dispatch for the `wg-overlay` CLI: `run` (the daemon), `check-config`, `status`,
 * `showconf`, `graph`, `kubeconfig`, `connect`, `version`.
 */
import { parseArgs } from 'node:util';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from './config/config.js';
import { renderUsage } from './cli/commands.js';
import { connectCommand } from './cli/connect.js';
import { kubeconfigCommand } from './cli/kubeconfig.js';
import { graphCommand } from './cli/graph.js';
import { showconfCommand } from './cli/showconf.js';
import { statusCommand } from './cli/status.js';
import { runDaemon } from './daemon/run.js';
import { EXIT_CONFIG, EXIT_OK, EXIT_USAGE } from './exit-status.js';
import { VERSION } from './version.js';

/** The text of `wg-overlay --help`, from the one description of the commands (cli/commands.ts). */
const USAGE = renderUsage();

/** Runs the CLI with the given arguments; resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const opts = () =>
    parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, allowPositionals: false });
  switch (command) {
    case 'run': {
      // The daemon's handles (sockets, timers) are closed by now, but exit explicitly so a
      // straggler can never keep a stopped daemon alive. stderr is synchronous on Linux pipes.
      const code = await runDaemon(opts().values.config ?? DEFAULT_CONFIG_PATH);
      return process.exit(code);
    }
    case 'check-config': {
      const file = opts().values.config ?? DEFAULT_CONFIG_PATH;
      try {
        const { warnings } = await loadConfig(file);
        for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
        process.stdout.write(`${file}: OK\n`);
        return EXIT_OK;
      } catch (err) {
        if (err instanceof ConfigError) {
          for (const p of err.problems) process.stderr.write(`error: ${p}\n`);
          return EXIT_CONFIG;
        }
        throw err;
      }
    }
    case 'kubeconfig':
      return kubeconfigCommand(rest);
    case 'status':
      return statusCommand(rest);
    case 'showconf':
      return showconfCommand(rest);
    case 'graph':
      return graphCommand(rest);
    case 'connect':
      return connectCommand(rest);
    case 'version':
    case '--version':
      process.stdout.write(`wg-overlay ${VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? EXIT_USAGE : EXIT_OK;
    default:
      process.stderr.write(`wg-overlay: unknown command "${command}"\n${USAGE}`);
      return EXIT_USAGE;
  }
}
