// Drives the Debian chromium (headless) through `reclab serve` for tests/e2e_consoles.rs, with
// playwright-core from npm (installed by `scripts/novnc --test-tools`; NODE_PATH points at it).
//
// Usage:
//   node console.cjs visit LAB_URL VM SCREENSHOT.png   open the lab page, the VM's console,
//                                                      wait for its screen, sign off
//   node console.cjs app LAB_URL NAME                 the lab page's restore points, then the
//                                                      published app NAME from its link
//   node console.cjs refused URL                       expect the page to be refused (403)
//   node console.cjs drive LAB_URL VM                  open the VM's console and take orders, one
//                                                      JSON object a line on stdin:
//       {"op":"type","text":"..."}   type TEXT into the console with real key events (playwright
//                                    keyboard -> noVNC -> RFB key events -> QEMU); "\n" is Enter
//       {"op":"shot","path":"x.png"} write the noVNC canvas, at the VM's screen resolution, as PNG
//       {"op":"quit"}                close the browser and exit
//     answering each order with one JSON line ({"ok":true,...}); the first line says it connected.
//
// Prints one JSON object with what it saw on stdout; exits non-zero on any failure.
'use strict';

const { chromium } = require('playwright-core');
const fs = require('fs');
const os = require('os');
const path = require('path');

const CHROMIUM = process.env.RECLAB_CHROMIUM || '/usr/bin/chromium';

async function withBrowser(fn) {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'reclab-chromium-'));
    // Playwright passes the profile directory as --user-data-dir itself.
    const context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        timeout: 60000,
        viewport: { width: 1100, height: 800 },
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
        return await fn(context);
    } finally {
        await context.close();
        fs.rmSync(profile, { recursive: true, force: true });
    }
}

// Pixels of the noVNC canvas that differ clearly from its first pixel.
async function canvasVariety(page) {
    return page.evaluate(() => {
        const canvas = document.querySelector('#screen canvas');
        if (!canvas || !canvas.width || !canvas.height) return { width: 0, height: 0, differing: 0 };
        const ctx = canvas.getContext('2d');
        const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        let differing = 0;
        for (let i = 4; i < data.length; i += 4) {
            if (Math.abs(data[i] - data[0]) + Math.abs(data[i + 1] - data[1]) + Math.abs(data[i + 2] - data[2]) > 48) {
                differing++;
            }
        }
        return { width: canvas.width, height: canvas.height, differing };
    });
}

async function visit(labUrl, vm, screenshot) {
    return withBrowser(async (browser) => {
        const page = await browser.newPage();
        const errors = [];
        page.on('pageerror', (e) => errors.push(String(e)));
        page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
        page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });

        const resp = await page.goto(labUrl, { waitUntil: 'load' });
        const labStatus = resp.status();
        const labTitle = await page.title();
        const vms = await page.$$eval('#vms tr td:first-child', (tds) => tds.map((t) => t.textContent));

        // The VM's console: noVNC connects through the websocket and draws the screen.
        await page.click(`#vms tr:has(td:text-is("${vm}")) a.console`);
        await page.waitForSelector('body[data-state="connected"]', { timeout: 60000 });
        let canvas = await canvasVariety(page);
        const until = Date.now() + 30000;
        while (canvas.differing < 200 && Date.now() < until) {
            await page.waitForTimeout(500);
            canvas = await canvasVariety(page);
        }
        await page.screenshot({ path: screenshot });
        const consoleStatus = await page.textContent('#status');

        // Back to the lab page: sign off.
        await page.goto(labUrl, { waitUntil: 'load' });
        await page.fill('#name', 'Ann Customer');
        await page.fill('#comment', 'The invoices of last night are all there.');
        await page.selectOption('#vm', vm);
        await Promise.all([page.waitForNavigation(), page.click('#sign')]);
        const signed = await page.textContent('#signed');
        const signoffs = await page.$$eval('#signoffs li', (lis) => lis.map((l) => l.textContent));
        return { labStatus, labTitle, vms, consoleStatus, canvas, signed, signoffs, errors };
    });
}

// The US keyboard: the characters typed with Shift, by the key that types them without it. noVNC
// sends QEMU the scancode of the key's `code` (QEMU's extended key event), so a shifted character
// is typed as a real keyboard does it: Shift down, the key, Shift up.
const SHIFTED = {
    '~': 'Backquote', '!': 'Digit1', '@': 'Digit2', '#': 'Digit3', '$': 'Digit4', '%': 'Digit5',
    '^': 'Digit6', '&': 'Digit7', '*': 'Digit8', '(': 'Digit9', ')': 'Digit0', '_': 'Minus',
    '+': 'Equal', '{': 'BracketLeft', '}': 'BracketRight', '|': 'Backslash', ':': 'Semicolon',
    '"': 'Quote', '<': 'Comma', '>': 'Period', '?': 'Slash',
};

// Type TEXT key by key; a pause after each so that an emulated guest keeps up.
async function typeKeys(page, text) {
    for (const ch of text) {
        if (ch === '\n') {
            await page.keyboard.press('Enter');
        } else if (SHIFTED[ch] || /[A-Z]/.test(ch)) {
            await page.keyboard.down('Shift');
            await page.keyboard.press(SHIFTED[ch] || `Key${ch}`);
            await page.keyboard.up('Shift');
        } else if (/[ -~]/.test(ch)) {
            await page.keyboard.press(ch === ' ' ? 'Space' : ch);
        } else {
            throw new Error(`cannot type ${JSON.stringify(ch)} on a US keyboard`);
        }
        await page.waitForTimeout(40);
    }
}

// The noVNC canvas as PNG bytes, at its own (the VM's screen) resolution, not as scaled on the page.
async function canvasPng(page) {
    const url = await page.evaluate(() => document.querySelector('#screen canvas').toDataURL('image/png'));
    return Buffer.from(url.slice(url.indexOf(',') + 1), 'base64');
}

async function drive(labUrl, vm) {
    return withBrowser(async (browser) => {
        const page = await browser.newPage();
        const errors = [];
        page.on('pageerror', (e) => errors.push(String(e)));
        page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
        const resp = await page.goto(labUrl, { waitUntil: 'load' });
        if (resp.status() !== 200) throw new Error(`lab page: status ${resp.status()}`);
        await page.click(`#vms tr:has(td:text-is("${vm}")) a.console`);
        await page.waitForSelector('body[data-state="connected"]', { timeout: 60000 });
        // A click focuses the canvas (noVNC's focusOnClick): keys go to the VM from then on.
        await page.click('#screen canvas');
        const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
        say({ ok: true, connected: await page.textContent('#status') });
        const lines = require('readline').createInterface({ input: process.stdin });
        for await (const line of lines) {
            if (!line.trim()) continue;
            const order = JSON.parse(line);
            if (order.op === 'type') {
                await typeKeys(page, order.text);
                say({ ok: true });
            } else if (order.op === 'shot') {
                const png = await canvasPng(page);
                fs.writeFileSync(order.path, png);
                const { width, height } = await canvasVariety(page);
                say({ ok: true, width, height, bytes: png.length, errors });
            } else if (order.op === 'quit') {
                break;
            } else {
                throw new Error(`unknown order ${line}`);
            }
        }
        return { ok: true, quit: true, errors };
    });
}

// The lab page's restore points and the published app NAME opened from its "open NAME" link
// (tests/e2e_published.rs): what the page says and what the app shows.
async function app(labUrl, name) {
    return withBrowser(async (browser) => {
        const page = await browser.newPage();
        const errors = [];
        page.on('pageerror', (e) => errors.push(String(e)));
        const resp = await page.goto(labUrl, { waitUntil: 'load' });
        const labStatus = resp.status();
        await page.waitForSelector('body[data-times="local"]', { timeout: 10000 });
        const moment = await page.textContent('#moment');
        const points = await page.$$eval('#points tr', (trs) => trs.slice(1).map(
            (tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent)));
        const results = await page.$$eval('#results tr', (trs) => trs.slice(1).map(
            (tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent)));
        const times = await page.$$eval('time', (ts) => ts.map((t) => ({
            datetime: t.getAttribute('datetime'), text: t.textContent, local: t.dataset.local === '1' })));
        const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
        const link = await page.getAttribute(`#open-${name}`, 'href');
        const linkText = await page.textContent(`#open-${name}`);
        // The app: its front page redirects (meta refresh) to the invoice list.
        const appResp = await page.goto(link, { waitUntil: 'load' });
        await page.waitForSelector('#invoices', { timeout: 60000 });
        const appUrl = page.url();
        const version = await page.textContent('#version');
        const stats = await page.textContent('#stats');
        const invoices = await page.$$eval('#invoices tr', (trs) => trs.slice(1).map(
            (tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent)));
        const cookies = (await browser.cookies()).map((c) => ({ name: c.name, domain: c.domain, httpOnly: c.httpOnly }));
        return { labStatus, moment, points, results, times, timeZone, link, linkText,
            appStatus: appResp.status(), appUrl, version, stats, invoices, cookies, errors };
    });
}

async function refused(url) {
    return withBrowser(async (browser) => {
        const page = await browser.newPage();
        const resp = await page.goto(url, { waitUntil: 'load' });
        return { status: resp.status(), heading: await page.textContent('h1') };
    });
}

async function main() {
    const [mode, ...args] = process.argv.slice(2);
    let out;
    if (mode === 'visit' && args.length === 3) {
        out = await visit(...args);
    } else if (mode === 'app' && args.length === 2) {
        out = await app(...args);
    } else if (mode === 'refused' && args.length === 1) {
        out = await refused(args[0]);
    } else if (mode === 'drive' && args.length === 2) {
        out = await drive(...args);
    } else {
        throw new Error('usage: console.cjs visit LAB_URL VM SCREENSHOT | refused URL | drive LAB_URL VM');
    }
    process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
    console.error(`console.cjs: ${e.stack || e}`);
    process.exit(1);
});
