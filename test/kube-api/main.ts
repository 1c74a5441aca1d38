/*
 * Command line entry of the test Kubernetes API server, for demos and end-to-end tests that
 * need a cluster API outside the test process:
 *
 *   node dist/test/kube-api/main.js --host 127.0.0.1 --port 6443 --tls --token T \
 *     --kubeconfig /tmp/kubeconfig [--nodes-file nodes.json] [--kilo] [--admission] [--service-accounts] \
 *     [--history-limit N] [--san NAME]
 *
 * Prints one JSON line `{"url":...,"caFile":...,"kubeconfig":...}` on stdout once listening and
 * runs until SIGTERM or SIGINT. `--nodes-file` holds a JSON array of Node objects or a NodeList;
 * `--kilo` also serves Kilo's Peer custom resource, `--admission` ValidatingAdmissionPolicies (enforced)
 * and `--service-accounts` ServiceAccounts with their TokenRequest subresource.
 */
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { KILO_PEER_RESOURCE, KubeApiServer, type KubeApiServerOptions } from './server.js';
import type { KubeObject } from './registry.js';

/** Parsed command line of the server CLI. */
export interface CliArgs {
  server: KubeApiServerOptions;
  kubeconfig?: string;
  nodesFile?: string;
  kilo: boolean;
}

/** Parses the CLI arguments (throws on unknown or incomplete ones). */
export function parseArgs(argv: string[]): CliArgs {
  const out: CliArgs = { server: { tls: false }, kilo: false };
  const sans: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '--host':
        out.server.host = value();
        break;
      case '--port':
        out.server.port = Number(value());
        break;
      case '--tls':
        out.server.tls = true;
        break;
      case '--token':
        out.server.token = value();
        break;
      case '--kubeconfig':
        out.kubeconfig = value();
        break;
      case '--nodes-file':
        out.nodesFile = value();
        break;
      case '--history-limit':
        out.server.historyLimit = Number(value());
        break;
      case '--san':
        sans.push(value());
        break;
      case '--kilo':
        out.kilo = true;
        break;
      case '--admission':
        out.server.admission = true;
        break;
      case '--service-accounts':
        out.server.serviceAccounts = true;
        break;
      default:
        throw new Error(`unknown argument ${a}`);
    }
  }
  if (sans.length) out.server.sans = sans;
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const server = new KubeApiServer(args.server);
  if (args.kilo) server.registerResource(KILO_PEER_RESOURCE);
  if (args.nodesFile) {
    const parsed = JSON.parse(await readFile(args.nodesFile, 'utf8')) as unknown;
    const items = Array.isArray(parsed) ? parsed : (parsed as { items?: unknown[] }).items;
    if (!Array.isArray(items)) throw new Error(`${args.nodesFile}: expected a JSON array of Nodes or a NodeList`);
    for (const n of items) server.createNode(n as KubeObject);
  }
  const { url } = await server.start();
  if (args.kubeconfig) await server.writeKubeconfig(args.kubeconfig);
  process.stdout.write(
    JSON.stringify({ url, caFile: server.caFile ?? null, kubeconfig: args.kubeconfig ?? null }) + '\n',
  );
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`kube-api: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  });
}
