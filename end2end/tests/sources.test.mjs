// Sources in the browser: an editor creates one, reads its snippets, and sees the events it sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, signIn, hydrated } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  server.addUser('editor@example.com', 'editor');
  server.addUser('viewer@example.com', 'viewer');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('an editor creates a source, copies its snippet and sees its events', async () => {
  const { page, errors, context } = await newPage(browser);
  await signIn(page, server.url, 'editor@example.com');
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  await page.goto(`${server.url}/sources`);
  await hydrated(page);
  await page.getByLabel('Name').fill('web-shop');
  await page.getByLabel('Type').selectOption('web');
  await page.getByRole('button', { name: 'Create source' }).click();
  await page.getByRole('link', { name: 'web-shop' }).click();
  await page.getByRole('heading', { name: 'web-shop' }).waitFor();
  const key = (await page.locator('td code').first().textContent()).trim();
  assert.match(key, /^wk_[0-9a-f]{32}$/);
  const snippet = await page.locator('pre code').first().textContent();
  assert.ok(snippet.includes(key) && snippet.includes(server.url), snippet);
  assert.ok(snippet.includes('analytics-next'), 'a web source shows the browser snippet first');

  const res = await fetch(`${server.url}/v1/track`, {
    method: 'POST',
    headers: { Authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}`, 'Content-Type': 'text/plain' },
    body: JSON.stringify({ userId: 'u1', event: 'Order Completed', messageId: 'e2e-1' }),
  });
  assert.equal(res.status, 200);
  await page.reload();
  await hydrated(page);
  await page.getByRole('cell', { name: 'e2e-1' }).waitFor();

  await page.getByRole('button', { name: 'Rotate (old keys stop in 24 h)' }).click();
  await page.locator('td code').nth(1).waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});

test('a viewer sees sources but no controls to change them', async () => {
  const { page, errors, context } = await newPage(browser);
  await signIn(page, server.url, 'viewer@example.com');
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  await page.goto(`${server.url}/sources`);
  await hydrated(page);
  await page.getByRole('link', { name: 'web-shop' }).click();
  await page.getByRole('heading', { name: 'web-shop' }).waitFor();
  assert.equal(await page.getByRole('button', { name: /Rotate|Revoke|Add a write key/ }).count(), 0);
  await page.goto(`${server.url}/sources`);
  await hydrated(page);
  await page.getByRole('link', { name: 'web-shop' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Create source' }).count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});
