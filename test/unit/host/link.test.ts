/**
 * How the daemon starts wireguard-go when it creates the interface itself (no systemd): as root
 * with the package's wrapper installed, through the wrapper, so wireguard-go runs as its own user
 * and not as root or the daemon's user; otherwise wireguard-go itself.
 */
import assert from 'node:assert/strict';
import { RecordingRunner } from '../../../service/src/exec/runner.js';
import {
  createLink,
  PACKAGED_WIREGUARD_GO,
  wireguardGoCommand,
  type WireguardGoArgv,
} from '../../../service/src/host/link.js';
import { createLogger } from '../../../service/src/log/logger.js';

const log = createLogger({ level: 'error', sink: () => undefined });

describe('unit: host: starting wireguard-go without systemd', () => {
  it('as root with the wrapper installed: the wrapper with --managed; otherwise wireguard-go itself', () => {
    assert.deepEqual(wireguardGoCommand('wg0', { root: true, wrapper: true }), [
      PACKAGED_WIREGUARD_GO,
      '--managed',
      'wg0',
    ]);
    assert.deepEqual(wireguardGoCommand('wg0', { root: true, wrapper: false }), ['wireguard-go', 'wg0']);
    // Not root: the wrapper could not switch users; wireguard-go runs as the daemon's own user.
    assert.deepEqual(wireguardGoCommand('wg0', { root: false, wrapper: true }), ['wireguard-go', 'wg0']);
  });

  it('createLink runs the command it is given when the kernel has no WireGuard', async () => {
    const runner = new RecordingRunner((cmd, args) =>
      cmd === 'ip' && args[1] === 'add' ? { exitCode: 2, stderr: 'Error: Unknown device type.' } : {},
    );
    const argv: WireguardGoArgv = (name) => Promise.resolve(wireguardGoCommand(name, { root: true, wrapper: true }));
    const created = await createLink(runner, 'wg0', { implementation: 'auto', log, wireguardGoArgv: argv });
    assert.deepEqual(created, { impl: 'userspace', kernelError: 'Error: Unknown device type.' });
    assert.deepEqual(runner.calls, ['ip link add dev wg0 type wireguard', `${PACKAGED_WIREGUARD_GO} --managed wg0`]);
  });
});
