// Sign-in rate limiting in the browser: its own server, so other tests' failures do not count.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, hydrated } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  server.addUser('locked@example.com', 'editor');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('quick repeated failures are refused with 429', async () => {
  const { page, context } = await newPage(browser);
  await page.goto(`${server.url}/login`);
  await hydrated(page);
  await page.getByLabel('Email').fill('locked@example.com');
  await page.getByLabel('Password').fill('not the password');
  for (let i = 0; i < 6; i++) {
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/api/auth/login')),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    if (i < 5) assert.equal(res.status(), 401);
    else assert.equal(res.status(), 429);
  }
  const message = await page.getByRole('alert').textContent();
  assert.match(message, /too many failed sign-ins/);
  await context.close();
});

