// A small W3C WebDriver client (fetch only) for driving the real desktop window through
// tauri-driver and WebKitWebDriver.

/**
 * How long to wait for the window to show something (an element, a text, a synced change):
 * every wait polls for what it expects and returns as soon as it holds, so this only bounds a
 * failure, and is far beyond what a slow, loaded machine needs.
 */
export const PATIENCE_MS = 60_000;

export class Session {
  constructor(base, id) {
    this.base = base;
    this.id = id;
  }

  static async start(port, application) {
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + PATIENCE_MS;
    for (;;) {
      try {
        const response = await fetch(`${base}/session`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            capabilities: { alwaysMatch: { "tauri:options": { application }, browserName: "wry" } },
          }),
        });
        const body = await response.json();
        if (!response.ok) throw new Error(JSON.stringify(body));
        return new Session(base, body.value.sessionId);
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }

  async send(method, path, body) {
    if (process.env.DAFTAR_E2E_TRACE) console.error(`→ ${method} ${path} ${body ? JSON.stringify(body).slice(0, 120) : ""}`);
    const response = await fetch(`${this.base}/session/${this.id}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await response.json();
    if (!response.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value ?? json)}`);
    return json.value;
  }

  /** The first element matching an XPath, waiting for it to appear. */
  async find(xpath, timeout = PATIENCE_MS) {
    const deadline = Date.now() + timeout;
    for (;;) {
      try {
        const found = await this.send("POST", "/element", { using: "xpath", value: xpath });
        return Object.values(found)[0];
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`no element ${xpath}: ${error.message}`);
        await new Promise((r) => setTimeout(r, 150));
      }
    }
  }

  async click(xpath) {
    await this.send("POST", `/element/${await this.find(xpath)}/click`, {});
  }

  async type(xpath, text) {
    const element = await this.find(xpath);
    await this.send("POST", `/element/${element}/clear`, {});
    await this.send("POST", `/element/${element}/value`, { text });
  }

  async text(xpath) {
    return (await this.send("GET", `/element/${await this.find(xpath)}/text`)).trim();
  }

  async property(xpath, name) {
    return this.send("GET", `/element/${await this.find(xpath)}/property/${name}`);
  }

  async run(script, ...args) {
    return this.send("POST", "/execute/sync", { script, args });
  }

  /** Waits until `xpath`'s text satisfies `test`, returning it. */
  async waitText(xpath, test, timeout = PATIENCE_MS) {
    const deadline = Date.now() + timeout;
    let last = "";
    for (;;) {
      try {
        last = await this.text(xpath);
        if (test(last)) return last;
      } catch {
        // not there yet
      }
      if (Date.now() > deadline) throw new Error(`${xpath}: text stayed ${JSON.stringify(last)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async screenshot() {
    return Buffer.from(await this.send("GET", "/screenshot"), "base64");
  }

  async end() {
    await this.send("DELETE", "", undefined).catch(() => {});
  }
}

/** XPath helpers. */
export const by = {
  button: (name) => `//button[normalize-space()=${JSON.stringify(name)}]`,
  nav: (name) => `//nav//button[normalize-space()=${JSON.stringify(name)}]`,
  label: (name) => `//*[@aria-label=${JSON.stringify(name)}]`,
  id: (id) => `//*[@id=${JSON.stringify(id)}]`,
  test: (id) => `//*[@data-testid=${JSON.stringify(id)}]`,
  text: (text) => `//*[contains(normalize-space(), ${JSON.stringify(text)}) and not(*[contains(normalize-space(), ${JSON.stringify(text)})])]`,
};
