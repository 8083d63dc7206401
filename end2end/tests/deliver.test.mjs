// An event sent with a real SDK (@segment/analytics-node) reaches a local HTTP receiver through an
// enabled webhook destination, with the mapped body and a valid Standard Webhooks signature.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHmac } from 'node:crypto';
import { Analytics } from '@segment/analytics-node';
import { startServer, sourceWithToken } from './helpers.mjs';

let server;
let receiver;
const received = [];

before(async () => {
  server = await startServer(['--allow-private-destinations']);
  receiver = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  receiver?.close();
  await server?.stop();
});

async function api(token, method, path, body) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

test('analytics-node → Switchyard → webhook receiver, mapped and signed', async () => {
  const src = await sourceWithToken(server, 'deliver-node');
  const admin = server.cli(['tokens', 'create', 'deliver-admin', '--role', 'admin']).trim();
  const url = `http://127.0.0.1:${receiver.address().port}/hooks`;
  const dest = await api(admin, 'POST', '/api/destinations', {
    name: 'orders-hook', integration: 'webhook', enabled: true, sources: [src.id], settings: { url },
    actions: { send: { mapping: { body: { order: { '@path': '$.properties.order_id' }, user: { '@path': '$.userId' }, total: { '@path': '$.properties.total' } } } } },
  });
  const analytics = new Analytics({ writeKey: src.writeKey, host: server.url, flushAt: 1 });
  analytics.track({ userId: 'sdk-user', event: 'Order Completed', properties: { order_id: 'o-77', total: 42 } });
  await analytics.closeAndFlush({ timeout: 10000 });

  const deadline = Date.now() + 15000;
  while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(received.length, 1);
  const { headers, body } = received[0];
  assert.deepEqual(JSON.parse(body.toString()), { order: 'o-77', user: 'sdk-user', total: 42 });
  assert.equal(headers['content-length'], String(body.length));
  assert.match(headers['webhook-id'], /^node-next-/, 'the SDK messageId is the webhook-id');
  const { value: secret } = await api(admin, 'POST', `/api/destinations/${dest.id}/secrets/signing_secret/reveal`);
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const signed = `${headers['webhook-id']}.${headers['webhook-timestamp']}.${body.toString()}`;
  const expected = `v1,${createHmac('sha256', key).update(signed).digest('base64')}`;
  assert.equal(headers['webhook-signature'], expected);
  const attempts = await api(admin, 'GET', `/api/destinations/${dest.id}/attempts`);
  assert.equal(attempts.items[0].outcome, 'delivered');
  assert.equal(attempts.items[0].status, 204);
});
