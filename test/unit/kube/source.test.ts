/**
 * The generic sources every kind of API object is made of, over a fake API: the reflector-backed
 * one reports changes one by one or as whole lists, an optional resource that is not served is
 * `absent` with an empty list and looked for again at its own pace, a required one is `down`;
 * the polling one lists on an interval, retries a failure sooner, and treats an absent optional
 * resource the same way. The Node configuration logs its state changes once each, in its words.
 */
import assert from 'node:assert/strict';
import { ApiHttpError } from '../../../service/src/kube/api-http.js';
import { nodeSource } from '../../../service/src/kube/node-source.js';
import type { ReflectorApi } from '../../../service/src/kube/reflector.js';
import {
  PollingSource,
  ReflectorSource,
  type ReflectorSourceOptions,
  type SourceHandler,
  type SourceState,
} from '../../../service/src/kube/source.js';
import { memoryLogger } from '../../../service/src/log/logger.js';
import { until } from '../../support/wait.js';

interface Item {
  name: string;
  v: number;
}
type Raw = { metadata: { name: string; resourceVersion?: string }; v: number };

/** An API over a map of raw objects: lists in one page, pushes watch events, fails on demand. */
function fakeApi() {
  const objects = new Map<string, Raw>();
  let version = 1;
  let emit: ((e: { type?: string; object?: unknown }) => void) | undefined;
  const api = {
    failWith: undefined as number | undefined,
    lists: 0,
    watches: 0,
    put(name: string, v: number): void {
      const obj = { metadata: { name, resourceVersion: String((version += 1)) }, v };
      const type = objects.has(name) ? 'MODIFIED' : 'ADDED';
      objects.set(name, obj);
      emit?.({ type, object: obj });
    },
    remove(name: string): void {
      const obj = objects.get(name)!;
      objects.delete(name);
      emit?.({ type: 'DELETED', object: { ...obj, metadata: { name, resourceVersion: String((version += 1)) } } });
    },
    reflector: {
      list: async () => {
        api.lists += 1;
        if (api.failWith !== undefined) throw new ApiHttpError(api.failWith, '', 'GET /things');
        return { items: [...objects.values()], metadata: { resourceVersion: String(version) } };
      },
      watch: async (_query, onEvent) => {
        api.watches += 1;
        emit = onEvent;
        return { abort: () => (emit = undefined) };
      },
    } as ReflectorApi,
  };
  return api;
}

const translate = (raw: unknown): Item => ({ name: (raw as Raw).metadata.name, v: (raw as Raw).v });

/** Records what a source reports (and what its state log was told). */
function recorder() {
  const rec = {
    lists: [] as string[][],
    changes: [] as string[],
    states: [] as SourceState[],
    logged: [] as SourceState[],
    handler: undefined as unknown as SourceHandler<Item>,
    stateLog: { record: (s: SourceState) => void rec.logged.push(s) },
  };
  rec.handler = {
    onList: (items) => void rec.lists.push(items.map((i) => `${i.name}=${i.v}`).sort()),
    onChange: (name, item) => void rec.changes.push(item ? `${name}=${item.v}` : `-${name}`),
    onState: (s) => void rec.states.push(s),
  };
  return rec;
}

/** A reflector-backed source over `api` that reports to `rec`, with `extra` options. */
function reflectorSource(
  api: ReturnType<typeof fakeApi>,
  rec: ReturnType<typeof recorder>,
  extra: Pick<ReflectorSourceOptions<Item>, 'changes' | 'optional' | 'absentRetryMs'>,
): ReflectorSource<Item> {
  const source = new ReflectorSource<Item>({
    api: api.reflector,
    log: memoryLogger(),
    what: 'thing watch',
    translate,
    states: rec.stateLog,
    ...extra,
  });
  source.start(rec.handler);
  return source;
}

describe('unit: kube: the generic sources', function () {
  this.timeout(10_000);

  it('reflector source, changes one by one: the list, then each event on its own', async () => {
    const api = fakeApi();
    api.put('a', 1);
    const rec = recorder();
    const source = reflectorSource(api, rec, { changes: 'each' });
    try {
      await until(() => api.watches === 1, 'the watch');
      assert.deepEqual(rec.lists, [['a=1']]);
      assert.deepEqual([rec.states, rec.logged], [['up'], ['up']]);
      api.put('b', 2);
      api.put('a', 3);
      api.remove('b');
      assert.deepEqual(rec.changes, ['b=2', 'a=3', '-b']);
      assert.equal(rec.lists.length, 1, 'no whole lists for single changes');
      assert.deepEqual(source.requests, { list: 1, watch: 1 });
    } finally {
      await source.stop();
    }
  });

  it('reflector source, whole lists: every change reports the whole list', async () => {
    const api = fakeApi();
    api.put('a', 1);
    const rec = recorder();
    const source = reflectorSource(api, rec, { changes: 'list' });
    try {
      await until(() => api.watches === 1, 'the watch');
      api.put('b', 2);
      api.remove('a');
      assert.deepEqual(rec.lists, [['a=1'], ['a=1', 'b=2'], ['b=2']]);
      assert.deepEqual(rec.changes, []);
    } finally {
      await source.stop();
    }
  });

  it('reflector source: an optional resource not served is absent with an empty list, looked for again at its pace', async () => {
    const api = fakeApi();
    api.failWith = 404;
    const rec = recorder();
    const source = reflectorSource(api, rec, { changes: 'list', optional: true, absentRetryMs: 20 });
    try {
      await until(() => api.lists >= 3, 'a few looks');
      assert.deepEqual(rec.states.slice(0, 3), ['absent', 'absent', 'absent']);
      assert.deepEqual(rec.lists[0], []);
      api.failWith = undefined;
      api.put('a', 1);
      await until(() => rec.states.at(-1) === 'up', 'up once the resource is served');
      assert.deepEqual(rec.lists.at(-1), ['a=1']);
    } finally {
      await source.stop();
    }
  });

  it('reflector source: a required resource that answers 404 is down, not absent', async () => {
    const api = fakeApi();
    api.failWith = 404;
    const rec = recorder();
    const source = reflectorSource(api, rec, { changes: 'each' });
    try {
      await until(() => rec.states.length === 1, 'the first report');
      assert.deepEqual([rec.states, rec.logged, rec.lists], [['down'], ['down'], []]);
    } finally {
      await source.stop();
    }
  });

  it('polling source: lists on the interval, retries a failure, and an absent optional resource is an empty list', async () => {
    const api = fakeApi();
    api.put('a', 1);
    const rec = recorder();
    const source = new PollingSource<Item>({
      api: api.reflector,
      log: memoryLogger(),
      what: 'thing list',
      translate,
      states: rec.stateLog,
      optional: true,
      intervalMs: 20,
    });
    source.start(rec.handler);
    try {
      await until(() => rec.lists.length === 2, 'two lists');
      api.put('b', 2);
      await until(() => rec.lists.at(-1)?.length === 2, 'the new object in a later list');
      api.failWith = 500;
      await until(() => rec.states.at(-1) === 'down', 'down');
      api.failWith = 404;
      await until(() => rec.states.at(-1) === 'absent', 'absent');
      assert.deepEqual(rec.lists.at(-1), []);
      assert.equal(api.watches, 0, 'never watches');
      assert.deepEqual(rec.logged, rec.states, 'every report reaches the state log');
    } finally {
      await source.stop();
    }
  });

  it('the Node configuration logs going down once, retries at debug, and coming back up', async () => {
    const api = fakeApi();
    api.failWith = 503;
    const log = memoryLogger();
    const states: SourceState[] = [];
    const source = nodeSource(api.reflector, log, { mode: 'list', intervalMs: 20 });
    source.start({ onList: () => undefined, onState: (s) => void states.push(s) });
    try {
      await until(() => states.length >= 3, 'a few failures');
      api.failWith = undefined;
      await until(() => states.at(-1) === 'up', 'up');
      api.failWith = 503;
      await until(() => states.at(-1) === 'down', 'down again');
      api.failWith = undefined;
      await until(() => states.at(-1) === 'up', 'up again');
    } finally {
      await source.stop();
    }
    const info = log.lines.filter((l) => !l.startsWith('<7>'));
    assert.deepEqual(info, [
      '<4>node list: API server unreachable or failing (HTTP 503); retrying with backoff, the mesh stays as it is',
      '<6>node list: connected to the API server',
      '<4>node list: API server unreachable or failing (HTTP 503); retrying with backoff, the mesh stays as it is',
      '<6>node list: connected to the API server again',
    ]);
    assert.ok(log.lines.includes('<7>node list: still failing (HTTP 503)'));
  });
});
