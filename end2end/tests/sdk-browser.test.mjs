// Browser SDKs in Chromium, unmodified, on a page of another origin: analytics.js
// (@segment/analytics-next) and @rudderstack/analytics-js. The SDK bundles come from their npm
// packages (served here by a tiny static server); everything they load at run time (settings,
// source configuration) comes from Switchyard.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { startServer, launchBrowser, newPage, sourceWithToken, storedEvents, rejections, byType } from './helpers.mjs';

let server;
let browser;
let site;
let siteUrl;

const BUNDLES = {
  '/analytics-next.js': 'node_modules/@segment/analytics-next/dist/umd/index.js',
  '/rudder-analytics.js': 'node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js',
};

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  site = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (BUNDLES[path]) {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      res.end(await readFile(BUNDLES[path]));
    } else {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<!doctype html><html><head><link rel="icon" href="data:,"><title>shop</title></head><body><h1>shop</h1></body></html>');
    }
  });
  await new Promise((r) => site.listen(0, '127.0.0.1', r));
  siteUrl = `http://127.0.0.1:${site.address().port}`;
});

after(async () => {
  await browser?.close();
  await server?.stop();
  site?.close();
});

async function shopPage() {
  const { page, errors, context } = await newPage(browser);
  // The machine has no internet: anything not on loopback would fail loudly here.
  await context.route(/^https?:\/\/(?!127\.0\.0\.1)/, (route) => {
    errors.push(`blocked outside request: ${route.request().url()}`);
    route.abort();
  });
  await page.goto(siteUrl);
  return { page, errors, context };
}

function checkSix(t, prefix, types) {
  assert.deepEqual(Object.keys(t).sort(), [...types].sort());
  assert.equal(t.identify[0].userId, `${prefix}-user`);
  assert.equal(t.track[0].event, 'Order Completed');
  assert.equal(t.track[0].properties.total, 42);
  assert.equal(t.page[0].name, 'Home');
  assert.equal(t.group[0].groupId, `${prefix}-group`);
  assert.equal(t.alias[0].previousId, `${prefix}-anon`);
  for (const list of Object.values(t)) {
    for (const e of list) {
      assert.ok(e.anonymousId, 'browser SDKs send an anonymousId');
      assert.equal(e.context.ip, '127.0.0.1');
      assert.ok(e.context.page?.url?.startsWith(siteUrl), JSON.stringify(e.context.page));
    }
  }
}

test('analytics.js loads its settings from Switchyard and sends all six calls, one by one and batched', async () => {
  const src = await sourceWithToken(server, 'ajs-web', 'web');
  const { page, errors, context } = await shopPage();
  await page.addScriptTag({ url: `${siteUrl}/analytics-next.js` });
  await page.evaluate(
    async ({ writeKey, cdnURL }) => {
      const [analytics] = await window.AnalyticsNext.AnalyticsBrowser.load({ writeKey, cdnURL });
      await analytics.identify('ajs-user', { name: 'Ann', plan: 'pro' });
      await analytics.track('Order Completed', { total: 42 });
      await analytics.page('Docs', 'Home', { section: 'intro' });
      await analytics.screen('Catalog', 'Main');
      await analytics.group('ajs-group', { employees: 12 });
      await analytics.alias('ajs-user', 'ajs-anon');
    },
    { writeKey: src.writeKey, cdnURL: server.url },
  );
  const t = byType(await storedEvents(server, src, 6));
  checkSix(t, 'ajs', ['identify', 'track', 'page', 'screen', 'group', 'alias']);
  assert.equal(t.identify[0].traits.plan, 'pro');
  assert.match(t.track[0].context.library.name, /analytics\.js/);

  // Batching delivery: one POST /v1/b with the six messages.
  const fresh = await newPage(browser);
  await fresh.page.goto(siteUrl);
  await fresh.page.addScriptTag({ url: `${siteUrl}/analytics-next.js` });
  // Waited for rather than collected from 'request' events: Chromium reports the request to
  // Playwright on its own channel, which can lag behind the server storing the events.
  const batchRequest = fresh.page.waitForRequest((r) => r.url().endsWith('/v1/b') && r.method() === 'POST', { timeout: 15000 });
  await fresh.page.evaluate(
    async ({ writeKey, cdnURL }) => {
      const options = { integrations: { 'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 6, timeout: 1000 } } } } };
      const [analytics] = await window.AnalyticsNext.AnalyticsBrowser.load({ writeKey, cdnURL }, options);
      analytics.identify('ajsb-user', { plan: 'team' });
      analytics.track('Order Completed', { total: 42 });
      analytics.page('Docs', 'Home');
      analytics.screen('Catalog', 'Main');
      analytics.group('ajsb-group', { employees: 3 });
      analytics.alias('ajsb-user', 'ajsb-anon');
    },
    { writeKey: src.writeKey, cdnURL: server.url },
  );
  const all = await storedEvents(server, src, 12);
  const batched = byType(all.slice(6));
  checkSix(batched, 'ajsb', ['identify', 'track', 'page', 'screen', 'group', 'alias']);
  const posted = await batchRequest.catch(() => null);
  assert.ok(posted, 'the batching strategy posted to /v1/b');
  assert.ok(JSON.parse(posted.postData()).batch.length >= 1, 'the POST /v1/b carried a batch of messages');
  assert.deepEqual(await rejections(server, src), []);
  assert.deepEqual(errors, []);
  assert.deepEqual(fresh.errors, []);
  await fresh.context.close();
  await context.close();
});

test('the RudderStack browser SDK loads its source configuration from Switchyard and sends every call, one by one and batched', async () => {
  const src = await sourceWithToken(server, 'rudder-web', 'web');
  const run = async (prefix, batch) => {
    const { page, errors, context } = await shopPage();
    await page.addScriptTag({ url: `${siteUrl}/rudder-analytics.js` });
    await page.evaluate(
      ({ writeKey, url, prefix, batch }) =>
        new Promise((resolve) => {
          const ra = new window.rudderanalytics.RudderAnalytics();
          const options = { configUrl: url, polyfillIfRequired: false, onLoaded: () => resolve() };
          if (batch) options.queueOptions = { batch: { enabled: true, maxItems: 5, flushInterval: 1000 } };
          ra.load(writeKey, url, options);
          ra.identify(`${prefix}-user`, { name: 'Ann', plan: 'pro' });
          ra.track('Order Completed', { total: 42 });
          ra.page('Docs', 'Home', { section: 'intro' });
          ra.group(`${prefix}-group`, { employees: 12 });
          ra.alias(`${prefix}-user`, `${prefix}-anon`);
        }),
      { writeKey: src.writeKey, url: server.url, prefix, batch },
    );
    return { page, errors, context };
  };
  const one = await run('rs', false);
  const t = byType(await storedEvents(server, src, 5));
  // The browser SDK has no screen call.
  checkSix(t, 'rs', ['identify', 'track', 'page', 'group', 'alias']);
  assert.equal(t.identify[0].context.traits.plan, 'pro');
  assert.equal(t.track[0].context.library.name, 'RudderLabs JavaScript SDK');
  assert.ok(t.track[0].originalTimestamp && t.track[0].timestamp, 'the client time is kept and a corrected timestamp added');
  assert.deepEqual(one.errors, []);
  await one.context.close();

  const two = await run('rsb', true);
  const all = await storedEvents(server, src, 10);
  checkSix(byType(all.slice(5)), 'rsb', ['identify', 'track', 'page', 'group', 'alias']);
  assert.deepEqual(await rejections(server, src), []);
  assert.deepEqual(two.errors, []);
  await two.context.close();
});
