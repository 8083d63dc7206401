// The admin app in real Chromium: sign-in, navigation, roles, user management.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, newPage, signIn, hydrated, PASSWORD } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  server.addUser('owner@example.com', 'owner');
  server.addUser('viewer@example.com', 'viewer');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the sign-in form has labelled controls and shows an error for a wrong password', async () => {
  const { page, errors, context } = await newPage(browser);
  await page.goto(`${server.url}/`);
  assert.equal(new URL(page.url()).pathname, '/login', 'signed-out visitors land on the sign-in page');
  await hydrated(page);
  await page.getByLabel('Email').fill('owner@example.com');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.match(await alert.textContent(), /wrong email or password/);
  assert.equal(new URL(page.url()).pathname, '/login');
  // A 401 from the API is reported by Chromium as a failed resource; nothing else may be.
  assert.deepEqual(errors.filter((e) => !e.includes('401')), []);
  await context.close();
});

test('an owner signs in, visits every page and manages users', async () => {
  const { page, errors, context } = await newPage(browser);
  await signIn(page, server.url, 'owner@example.com');
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  assert.equal(new URL(page.url()).pathname, '/');
  await page.getByText('owner@example.com').waitFor();

  for (const name of ['Sources', 'Destinations', 'Catalog', 'Debugger', 'Runs', 'Settings', 'Overview']) {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click();
    await page.getByRole('heading', { name, level: 1 }).waitFor();
    assert.equal(await page.title(), `${name} · Switchyard`);
  }

  await page.goto(`${server.url}/settings`);
  await hydrated(page);
  await page.getByLabel('Email').fill('new.editor@example.com');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByLabel('Role', { exact: true }).selectOption('editor');
  await page.getByRole('button', { name: 'Add user' }).click();
  await page.getByRole('status').filter({ hasText: 'Added new.editor@example.com as editor.' }).waitFor();
  const roleOf = page.getByLabel('Role of new.editor@example.com');
  await roleOf.waitFor();
  assert.equal(await roleOf.inputValue(), 'editor');
  await roleOf.selectOption('admin');
  await page.waitForResponse((r) => r.url().includes('/api/users') && r.request().method() === 'GET');
  await page.reload();
  await hydrated(page);
  assert.equal(await page.getByLabel('Role of new.editor@example.com').inputValue(), 'admin');
  await page.getByRole('button', { name: 'Remove new.editor@example.com' }).click();
  await page.getByLabel('Role of new.editor@example.com').waitFor({ state: 'detached' });

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${server.url}/login`);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a viewer sees no user controls and the API refuses them', async () => {
  const { page, errors, context } = await newPage(browser);
  await signIn(page, server.url, 'viewer@example.com');
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  await page.goto(`${server.url}/settings`);
  await hydrated(page);
  await page.getByText('Only owners and admins manage users').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Add user' }).count(), 0);
  const status = await page.evaluate(async () => {
    const res = await fetch('/api/users', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'x@example.com', password: 'correct horse battery', role: 'viewer' }),
    });
    return res.status;
  });
  assert.equal(status, 403);
  assert.deepEqual(errors.filter((e) => !e.includes('403')), []);
  await context.close();
});
