/**
 * The one description of the `wg-overlay` command line: every command with its synopsis, options
 * and a paragraph on what it does, and what the manual says besides (files, signals, exit
 * statuses). `wg-overlay --help` is rendered from it (`renderUsage`), and at package build time
 * packaging/docs.mjs renders the manual page wg-overlay(8) and the bash completion from it
 * (service/src/cli/manual.ts), so the three cannot disagree.
 *
 * Adding a command is one entry in COMMANDS (and its `case` in main.ts's dispatch): it then
 * appears in --help, in the manual page's SYNOPSIS and COMMANDS, and in the completion, which
 * completes its options and, for options whose value is a file (`complete: 'file'`), file names.
 * test/unit/packaging/manual.test.ts checks each command's own --help text against its entry.
 */
import { DEFAULT_CONFIG_PATH, defaultConfig } from '../config/config.js';
import { EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../exit-status.js';
import { STATUS_FILE } from '../status/snapshot.js';
import { PRIVATE_KEY_FILE } from '../wireguard/keys.js';

/** One option of a command. */
export interface CliOption {
  /** The long name, without the leading "--". */
  readonly name: string;
  /** A one-letter alias, without the "-". */
  readonly short?: string;
  /** The placeholder of its value (FILE, URL, NAME, …); absent for a flag. */
  readonly value?: string;
  /** What the shell completes for the value: file names, or nothing (free text: the default). */
  readonly complete?: 'file' | 'text';
  /** The option may be given more than once. */
  readonly multiple?: boolean;
  /** One or two sentences, for the manual page. */
  readonly description: string;
}

/** One command. */
export interface CliCommand {
  readonly name: string;
  /** Other words that run it (`--version` for `version`). */
  readonly aliases?: readonly string[];
  /** Each form of the command line after "wg-overlay NAME", as --help and the manual show it. */
  readonly synopsis: readonly string[];
  /** One line (at most 64 characters) for the command list of --help. */
  readonly summary: string;
  /** One paragraph for the manual page; `code` is set in bold there. */
  readonly description: string;
  readonly options: readonly CliOption[];
  /** The words each positional argument can be, in order, for the completion ([] for free text). */
  readonly positionals?: ReadonlyArray<readonly string[]>;
  /** What its exit status says, when more than the statuses every command shares. */
  readonly exitStatus?: string;
}

/** A term and its explanation, for the manual's FILES, SIGNALS and EXIT STATUS. */
export interface ManualItem {
  readonly term: string;
  readonly text: string;
}

const defaults = defaultConfig();

/** `--config FILE`, which every command reading the config file takes. */
const CONFIG: CliOption = {
  name: 'config',
  short: 'c',
  value: 'FILE',
  complete: 'file',
  description: `The config file to read (default ${DEFAULT_CONFIG_PATH}); see wg-overlay.conf(5).`,
};
/** `--help` of the commands that parse their own options. */
const HELP: CliOption = { name: 'help', short: 'h', description: "Print the command's usage and exit." };

/** Every command, in the order --help and the manual list them. */
export const COMMANDS: readonly CliCommand[] = [
  {
    name: 'run',
    synopsis: ['[--config FILE]'],
    summary: 'run the daemon (what wg-overlay.service runs)',
    description:
      "Runs the daemon in the foreground until SIGTERM or SIGINT. It watches the cluster's Node objects, publishes " +
      "this node's WireGuard public key, endpoint and overlay addresses as annotations on its own Node, and keeps the " +
      "WireGuard interface, its peers and the routes to the other nodes' pod networks as the mesh requires, applying " +
      'only what changed. With systemd it reports readiness once the mesh is applied and reloads its config on ' +
      'SIGHUP (`systemctl reload wg-overlay`); see SIGNALS. It is normally run by wg-overlay.service as user wg-overlay.',
    options: [CONFIG],
    exitStatus: `${EXIT_CONFIG} when the config file or the kubeconfig must be fixed first (wg-overlay.service does not restart on it).`,
  },
  {
    name: 'check-config',
    synopsis: ['[--config FILE]'],
    summary: 'validate the config file and print problems',
    description:
      'Reads and validates the config file as the daemon would, prints "FILE: OK" or every problem (with file, ' +
      'section, key, value and what is allowed) on standard error, and warns about unknown keys.',
    options: [CONFIG],
    exitStatus: `${EXIT_CONFIG} when the file is invalid.`,
  },
  {
    name: 'kubeconfig',
    synopsis: [
      '--server URL (--ca FILE | --ca-data BASE64) --token-file FILE [--output FILE] [--force]',
      '--token-only --token-file FILE [--output FILE]',
    ],
    summary: "write the kubeconfig and this node's token file",
    description:
      `Writes the kubeconfig the daemon uses to reach the Kubernetes API (default ${defaults.kubernetes.kubeconfig}, ` +
      'the CA embedded) and the file holding this node\'s token that it names ("token" next to it), both mode 0600; ' +
      'the service makes them group wg-overlay, mode 0640, when it starts. It prints the Node and the expiry the ' +
      'token names. With --token-only it replaces only the token file (keeping its owner, group and mode): the ' +
      'running daemon uses the new token from its next request, without a restart.',
    options: [
      { name: 'server', value: 'URL', description: 'The API server as this node reaches it (https only).' },
      {
        name: 'ca',
        value: 'FILE',
        complete: 'file',
        description: "PEM file of the CA that signed the API server's certificate.",
      },
      {
        name: 'ca-data',
        value: 'BASE64',
        description: "The same CA base64-encoded, as in a kubeconfig's certificate-authority-data.",
      },
      {
        name: 'token-file',
        value: 'FILE',
        complete: 'file',
        description: "The file holding this node's token of wg-overlay's ServiceAccount; - reads standard input.",
      },
      {
        name: 'output',
        short: 'o',
        value: 'FILE',
        complete: 'file',
        description: 'The kubeconfig to write (the token goes next to it).',
      },
      { name: 'force', description: 'Replace an existing kubeconfig.' },
      { name: 'token-only', description: 'Replace only the token file that the existing kubeconfig names.' },
      HELP,
    ],
  },
  {
    name: 'status',
    synopsis: ['[--json] [--config FILE]'],
    summary: 'the interface, its peers and routes, and what is skipped',
    description:
      "Shows this node's WireGuard interface, address and port, and for every peer its name, overlay address, " +
      'endpoint, latest handshake, traffic and routes, and every Node or Peer the daemon leaves out, with the reason. ' +
      'It reads the status file the daemon writes and the interface itself.',
    options: [{ name: 'json', description: 'Machine-readable output.' }, CONFIG, HELP],
    exitStatus: `${EXIT_FAILURE} when the interface is missing.`,
  },
  {
    name: 'showconf',
    synopsis: [
      'peer NAME [--wg-quick] [--allowed-ips CIDR,...] [--via NODE] [--config FILE]',
      'node NAME [--wg-quick] [--config FILE]',
    ],
    summary: 'the WireGuard config of an external Peer or of a Node',
    description:
      "Prints the WireGuard configuration of an external Peer (Kilo's Peer resource) or of a Node, read from the " +
      'cluster through the kubeconfig named in the config file. For a peer: one [Peer] per node with its public key, ' +
      'endpoint, overlay address, PodCIDRs and the extra ranges of [peers] allowed_ips_extra, keepalive from the Peer. ' +
      'For a node: its [Interface] ListenPort and [Peer]s, without its private key.',
    options: [
      {
        name: 'wg-quick',
        description:
          'Print a wg-quick file ([Interface] with Address and a placeholder for the private key) instead of the form ' +
          '`wg setconf` takes.',
      },
      {
        name: 'allowed-ips',
        value: 'CIDR,...',
        multiple: true,
        description: 'More CIDRs to route into the cluster, added to allowed_ips_extra (showconf peer only).',
      },
      {
        name: 'via',
        value: 'NODE',
        description: 'The node that gets the extra ranges (default: the oldest node; showconf peer only).',
      },
      CONFIG,
      HELP,
    ],
    positionals: [['peer', 'node'], []],
  },
  {
    name: 'graph',
    synopsis: ['[--stale SECONDS] [--no-handshakes] [--config FILE]'],
    summary: 'the mesh as Graphviz DOT',
    description:
      'Prints the mesh as Graphviz DOT: nodes, external Peers, locations and their leaders, and the links between ' +
      "them. This node's links are labelled with the age of their latest handshake and drawn red when it is stale. " +
      'Render it with `wg-overlay graph | dot -Tsvg > mesh.svg`.',
    options: [
      {
        name: 'stale',
        value: 'SECONDS',
        description: "A handshake older than this is stale (default 180, WireGuard's key lifetime).",
      },
      { name: 'no-handshakes', description: "Do not read this node's WireGuard device." },
      CONFIG,
      HELP,
    ],
  },
  {
    name: 'connect',
    synopsis: [
      '[--kubeconfig FILE] [--name NAME] [--interface NAME] [--address CIDR] [--allowed-ips CIDR,...] ' +
        '[--advertise-routes CIDR,...] [--persistent-keepalive SECONDS] [--private-key FILE] [--keep] [--config FILE]',
      '--status [--json] [--interface NAME]',
    ],
    summary: 'join the mesh from a host outside the cluster',
    description:
      'Joins the mesh from a host that is not a Node of the cluster (a workstation, a CI runner, the gateway of ' +
      "another site), as root or with CAP_NET_ADMIN: it creates Kilo's Peer NAME with this host's public key and " +
      'address (or takes it over when it carries the same key), brings up a WireGuard interface (kernel WireGuard, ' +
      'else wireguard-go) with a peer per node, or per location leader with granularity = location, and routes to ' +
      "every node's pod networks and overlay addresses, decided by the same rules as on the nodes. It follows the " +
      'Nodes and Peers and applies each change live with `wg set`, printing one line per change. On SIGINT or ' +
      'SIGTERM it deletes the Peer, the interface and its routes (unless --keep) and exits 0; started again with the ' +
      'same name and key it resumes. The kubeconfig needs what /usr/share/wg-overlay/kubernetes/connect-rbac.yaml ' +
      'grants. With --status it shows a running connection; SIGUSR1 makes it print the same on standard output.',
    options: [
      {
        name: 'kubeconfig',
        value: 'FILE',
        complete: 'file',
        description: 'The kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config).',
      },
      { name: 'name', value: 'NAME', description: "The Peer's name (default: the host name in lower case)." },
      { name: 'interface', value: 'NAME', description: 'The WireGuard interface to bring up (default wgo0).' },
      {
        name: 'address',
        value: 'CIDR',
        multiple: true,
        description:
          "This host's address, one per family (default: a free one in 10.255.0.0/16 and, when the cluster has IPv6, " +
          'fd77:676f::/64, chosen from the public key, so that the host gets the same one each time).',
      },
      {
        name: 'allowed-ips',
        value: 'CIDR,...',
        multiple: true,
        description: 'More ranges to route into the cluster through one node, e.g. the service CIDR.',
      },
      {
        name: 'advertise-routes',
        value: 'CIDR,...',
        multiple: true,
        description: "Ranges behind this host (a site's LAN) that every node routes to it.",
      },
      {
        name: 'persistent-keepalive',
        value: 'SECONDS',
        description: 'Keepalive towards the nodes, and asked of them in the Peer (default 25; 0 turns it off).',
      },
      {
        name: 'private-key',
        value: 'FILE',
        complete: 'file',
        description:
          "This host's private key, created with mode 0600 when missing (default /var/lib/wg-overlay-connect/IFACE.key).",
      },
      { name: 'keep', description: 'On exit, leave the Peer, the interface and its routes in place.' },
      {
        ...CONFIG,
        description: `The cluster's settings, as the nodes have them (default ${DEFAULT_CONFIG_PATH} when it exists).`,
      },
      { name: 'status', description: 'Show the running connection on the interface and exit.' },
      { name: 'json', description: 'With --status: machine-readable output.' },
      HELP,
    ],
    exitStatus: `${EXIT_FAILURE} when the connection cannot be made or its Peer is lost (or, with --status, none runs).`,
  },
  {
    name: 'version',
    aliases: ['--version'],
    synopsis: [''],
    summary: 'print the version',
    description: 'Prints "wg-overlay VERSION".',
    options: [],
  },
  {
    name: 'help',
    aliases: ['--help', '-h'],
    synopsis: [''],
    summary: 'print this list of commands',
    description: `Prints the list of commands. Without any command, wg-overlay prints it too and exits with ${EXIT_USAGE}.`,
    options: [],
  },
];

/** The manual's one-line description of wg-overlay (its NAME). */
export const SUMMARY = 'WireGuard mesh between the nodes of a Kubernetes cluster';

/** The manual's DESCRIPTION. */
export const DESCRIPTION: readonly string[] = [
  'wg-overlay runs on every node of a Kubernetes cluster as the systemd service wg-overlay.service. It lists and ' +
    "watches the cluster's Node objects, publishes this node's WireGuard public key, overlay address and endpoint as " +
    `annotations on its own Node, and keeps the WireGuard interface ${defaults.wireguard.interface} (owned by ` +
    `wg-quick@${defaults.wireguard.interface}.service) with one peer per node and routes to every node's pod networks. ` +
    'Every node gets a stable overlay address in 100.64.0.0/10 and one in an IPv6 overlay.',
  'The other commands set the node up (`wg-overlay kubeconfig`), check its configuration (`wg-overlay check-config`) ' +
    'and show the mesh (`wg-overlay status`, `wg-overlay showconf`, `wg-overlay graph`). The install guide, ' +
    '/usr/share/doc/wg-overlay/install.md, takes a cluster admin from nothing to a running mesh.',
];

/** The manual's FILES. */
export const FILES: readonly ManualItem[] = [
  {
    term: DEFAULT_CONFIG_PATH,
    text: 'The configuration; see wg-overlay.conf(5). The package keeps your edits on upgrades.',
  },
  {
    term: `${defaults.kubernetes.kubeconfig}, /etc/wg-overlay/token`,
    text: "How the daemon reaches the API, and this node's token (written by `wg-overlay kubeconfig`; root:wg-overlay, mode 0640).",
  },
  {
    term: `${defaults.state.dir}/${PRIVATE_KEY_FILE}`,
    text: "This node's WireGuard private key (mode 0600), created at the first start.",
  },
  {
    term: `${defaults.state.dir}/wireguard/${defaults.wireguard.interface}.conf`,
    text:
      "The daemon's wg-quick file. Before each start of wg-quick@wg0.service it is checked and installed as " +
      `${defaults.wireguard.configFile} by /usr/lib/wg-overlay/wg-quick-hook.`,
  },
  {
    term: `${defaults.state.runtimeDir}/${STATUS_FILE}`,
    text: 'What the daemon applied, written after every change; `wg-overlay status` reads it.',
  },
  { term: '/lib/systemd/system/wg-overlay.service', text: 'The unit (/usr/lib/systemd/system on RPM-based systems).' },
  {
    term: '/usr/share/wg-overlay/kubernetes/',
    text: 'The cluster manifests: rbac.yaml, node-policy.yaml, crd-peer.yaml and connect-rbac.yaml.',
  },
  {
    term: '/var/lib/wg-overlay-connect/IFACE.key',
    text: "`wg-overlay connect`: this host's private key for the interface IFACE (mode 0600), created at the first start.",
  },
  {
    term: '/run/wg-overlay-connect/IFACE/status.json',
    text: 'What a running `wg-overlay connect` applied on IFACE; `wg-overlay connect --status` reads it.',
  },

  { term: '/usr/share/doc/wg-overlay/install.md', text: 'The install guide.' },
];

/** The manual's SIGNALS (of `wg-overlay run`). */
export const SIGNALS: readonly ManualItem[] = [
  {
    term: 'SIGHUP',
    text:
      'Reloads the config file (`systemctl reload wg-overlay`; edits are also noticed by themselves). A file that ' +
      'does not validate is rejected with an error and the previous settings stay; settings that cannot change at ' +
      'run time are reported with a warning and take effect at the next start.',
  },
  {
    term: 'SIGTERM, SIGINT',
    text:
      'Stops the daemon. The interface, its peers and routes stay up: the mesh keeps working until the daemon is back. ' +
      '`wg-overlay connect` deletes its Peer, interface and routes instead (unless --keep).',
  },
  { term: 'SIGUSR1', text: '`wg-overlay connect` prints the state of the connection, as --status does.' },
];

/** The manual's EXIT STATUS: the statuses of service/src/exit-status.ts, and the command's own. */
export const EXIT_STATUSES: readonly ManualItem[] = [
  { term: String(EXIT_OK), text: 'Success.' },
  {
    term: String(EXIT_FAILURE),
    text: 'A failure: the API server, the interface, or an unexpected error (the message says which).',
  },
  { term: String(EXIT_USAGE), text: 'A usage error: an unknown command or option, or a missing argument.' },
  {
    term: String(EXIT_CONFIG),
    text: 'A configuration the admin must fix (EX_CONFIG): the message names the file. wg-overlay.service does not restart on it.',
  },
  { term: '69', text: 'Node.js is not installed (EX_UNAVAILABLE, from /usr/bin/wg-overlay).' },
];

/** The manual's SEE ALSO. */
export const SEE_ALSO: readonly string[] = [
  'wg-overlay.conf(5)',
  'wg(8)',
  'wg-quick(8)',
  'systemctl(1)',
  'journalctl(1)',
  'kubectl(1)',
];

/** The widest line of --help. */
const USAGE_WIDTH = 100;

/** A form of a command, wrapped before an option group where it would pass the width (continued under its first option). */
function wrapForm(form: string): string[] {
  const indent = form.indexOf(' ') + 3;
  const groups = form.split(/ (?=\[)/);
  const lines = [`  ${groups.shift()!}`];
  for (const g of groups) {
    if (lines[lines.length - 1]!.length + 1 + g.length > USAGE_WIDTH) lines.push(`${' '.repeat(indent)}${g}`);
    else lines[lines.length - 1] += ` ${g}`;
  }
  return lines;
}

/** One line of the command list: the form, and the summary in a column (or on the next line). */
function usageLines(c: CliCommand): string[] {
  const forms = c.synopsis.map((s) => (s ? `${c.name} ${s}` : c.name));
  const lines = forms.flatMap(wrapForm);
  const last = forms[forms.length - 1]!;
  if (last.length <= 29) lines[lines.length - 1] = `  ${last.padEnd(30)}${c.summary}`;
  else lines.push(`${' '.repeat(32)}${c.summary}`);
  return lines;
}

/** "a, b and c". */
function listed(words: readonly string[]): string {
  return words.length <= 1 ? words.join('') : `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

/** The text of `wg-overlay --help`. */
export function renderUsage(commands: readonly CliCommand[] = COMMANDS): string {
  return [
    'Usage: wg-overlay <command> [options]',
    '',
    'Commands:',
    ...commands.flatMap(usageLines),
    '',
    `The config file is ${DEFAULT_CONFIG_PATH} unless --config FILE names another.`,
    `${listed(commands.filter((c) => c.options.includes(HELP)).map((c) => c.name))} print their options with --help;`,
    'the manual page (man wg-overlay) describes every command and option.',
    '',
  ].join('\n');
}
