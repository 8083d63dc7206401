// Server-side SDKs, unmodified, pointed at Switchyard: @segment/analytics-node and rudder-sdk-python.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Analytics } from '@segment/analytics-node';
import { startServer, sourceWithToken, storedEvents, rejections, byType } from './helpers.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

test('@segment/analytics-node sends all six calls in a batch', async () => {
  const src = await sourceWithToken(server, 'node-server');
  const analytics = new Analytics({ writeKey: src.writeKey, host: server.url, flushAt: 20, flushInterval: 10000 });
  const errors = [];
  analytics.on('error', (e) => errors.push(e));
  analytics.identify({ userId: 'node-user', traits: { name: 'Ann', plan: 'pro' } });
  analytics.track({ userId: 'node-user', event: 'Order Completed', properties: { total: 42, currency: 'EUR' } });
  analytics.page({ userId: 'node-user', category: 'Docs', name: 'Home', properties: { url: 'https://example.com/docs' } });
  analytics.screen({ userId: 'node-user', name: 'Catalog', properties: { items: 3 } });
  analytics.group({ userId: 'node-user', groupId: 'node-group', traits: { employees: 12 } });
  analytics.alias({ userId: 'node-user', previousId: 'node-anon' });
  await analytics.closeAndFlush({ timeout: 10000 });
  assert.deepEqual(errors, []);
  const t = byType(await storedEvents(server, src, 6));
  assert.deepEqual(Object.keys(t).sort(), ['alias', 'group', 'identify', 'page', 'screen', 'track']);
  assert.equal(t.identify[0].userId, 'node-user');
  assert.equal(t.identify[0].traits.plan, 'pro');
  assert.equal(t.track[0].event, 'Order Completed');
  assert.equal(t.track[0].properties.total, 42);
  assert.equal(t.page[0].name, 'Home');
  assert.equal(t.screen[0].name, 'Catalog');
  assert.equal(t.group[0].groupId, 'node-group');
  assert.equal(t.group[0].traits.employees, 12);
  assert.equal(t.alias[0].previousId, 'node-anon');
  for (const list of Object.values(t)) {
    const e = list[0];
    assert.equal(e.context.library.name, '@segment/analytics-node');
    assert.match(e.messageId, /^node-next-/);
    assert.ok(e.receivedAt && e.timestamp && e.sentAt);
    assert.equal(e.writeKey, undefined, 'the write key is not stored');
  }
  assert.deepEqual(await rejections(server, src), []);
});

test('rudder-sdk-python sends all six calls, gzipped, in a batch', async () => {
  const python = process.env.SDK_PYTHON;
  assert.ok(python, 'SDK_PYTHON names a Python with rudder-sdk-python (cargo xtask test sets it up)');
  const src = await sourceWithToken(server, 'python-server');
  const out = spawnSync(python, ['sdk/rudder_python.py', server.url, src.writeKey], { encoding: 'utf8', timeout: 60000 });
  assert.equal(out.status, 0, `${out.stdout}\n${out.stderr}`);
  const t = byType(await storedEvents(server, src, 6));
  assert.deepEqual(Object.keys(t).sort(), ['alias', 'group', 'identify', 'page', 'screen', 'track']);
  assert.equal(t.identify[0].context.traits.plan, 'pro');
  assert.equal(t.track[0].event, 'Order Completed');
  assert.equal(t.track[0].properties.currency, 'EUR');
  assert.equal(t.page[0].name, 'Home');
  assert.equal(t.page[0].category, 'Docs');
  assert.equal(t.screen[0].name, 'Main');
  assert.equal(t.group[0].groupId, 'py-group');
  assert.equal(t.alias[0].previousId, 'py-anon');
  assert.equal(t.alias[0].userId, 'py-user');
  for (const list of Object.values(t)) {
    assert.equal(list[0].context.library.name, 'analytics-python');
    assert.equal(list[0].anonymousId, undefined, 'a null anonymousId counts as absent');
  }
  assert.deepEqual(await rejections(server, src), []);
});
