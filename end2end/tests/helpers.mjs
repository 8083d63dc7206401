// Starts the real switchyard binary on port 0 with a fresh data dir, and real Chromium.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.SWITCHYARD_BIN ?? new URL('../../target/release/switchyard', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export const PASSWORD = 'correct horse battery';

export async function startServer(extra = []) {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-e2e-'));
  const common = ['--data-dir', dir, '--database-url', `sqlite://${dir}/switchyard.db`];
  const cli = (args, input) => {
    const out = spawnSync(BIN, [...args, ...common], { input, encoding: 'utf8' });
    if (out.status !== 0) throw new Error(`switchyard ${args.join(' ')} failed: ${out.stderr}`);
    return out.stdout;
  };
  const child = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', ...common, ...extra], {
    env: { ...process.env, SWITCHYARD_LOG: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 30000);
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/listening on (http:\/\/[0-9.:]+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
  });
  return {
    url,
    cli,
    addUser: (email, role) => cli(['users', 'add', email, '--role', role, '--password-stdin'], `${PASSWORD}\n`),
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

// A page that records console errors and uncaught exceptions.
export async function newPage(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => errors.push(`request failed: ${req.url()} ${req.failure()?.errorText}`));
  return { page, errors, context };
}

// Waits until the wasm has hydrated the page (the hydrate script sets this flag on window).
export async function hydrated(page) {
  await page.waitForFunction(() => window.__switchyard_hydrated === true, null, { timeout: 20000 });
}

export async function signIn(page, url, email, password = PASSWORD) {
  await page.goto(`${url}/login`);
  await hydrated(page);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

// An API token and a new source (its id and write key) on a running server.
export async function sourceWithToken(server, name, type = 'server') {
  const token = server.cli(['tokens', 'create', `sdk-${name}`, '--role', 'editor']).trim();
  const res = await fetch(`${server.url}/api/sources`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name, type }),
  });
  if (res.status !== 201) throw new Error(`create source: ${res.status} ${await res.text()}`);
  const source = await res.json();
  return { token, id: source.id, writeKey: source.write_key };
}

// Waits until the source has stored at least `count` events, and returns them (oldest first).
export async function storedEvents(server, src, count, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let items = [];
  while (Date.now() < deadline) {
    const res = await fetch(`${server.url}/api/sources/${src.id}/events?limit=1000`, { headers: { Authorization: `Bearer ${src.token}` } });
    items = (await res.json()).items;
    if (items.length >= count) return items.reverse();
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`expected ${count} events, got ${items.length}: ${JSON.stringify(items.map((e) => e.type))}`);
}

export async function rejections(server, src) {
  const res = await fetch(`${server.url}/api/sources/${src.id}/rejections`, { headers: { Authorization: `Bearer ${src.token}` } });
  return (await res.json()).items;
}

export function byType(events) {
  const out = {};
  for (const e of events) (out[e.type] ??= []).push(e.payload);
  return out;
}
