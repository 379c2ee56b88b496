import { createServer, IncomingHttpHeaders, Server } from 'node:http';
import { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: Record<string, unknown>;
}

/** A webhook endpoint on loopback that records what it gets and answers with scripted statuses. */
export class WebhookReceiver {
  readonly received: ReceivedRequest[] = [];
  private server!: Server;
  /** Status to answer per path; a list is consumed one per request, its last value repeating. */
  private readonly script = new Map<string, number[]>();

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        const path = req.url ?? '/';
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(body) as Record<string, unknown>;
        } catch {
          /* recorded as is */
        }
        this.received.push({ path, headers: req.headers, body, json });
        const statuses = this.script.get(path);
        const status = statuses && statuses.length > 1 ? statuses.shift()! : (statuses?.[0] ?? 200);
        res.writeHead(status, { 'content-type': 'text/plain' }).end('ok');
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return this;
  }

  url(path: string, host = '127.0.0.1'): string {
    return `http://${host}:${(this.server.address() as AddressInfo).port}${path}`;
  }

  respond(path: string, ...statuses: number[]): void {
    this.script.set(path, statuses);
  }

  on(path: string): ReceivedRequest[] {
    return this.received.filter((r) => r.path === path);
  }

  async waitFor(predicate: () => boolean, timeoutMs = 15_000, tick?: () => Promise<void>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting; received ${this.received.length} request(s)`);
      if (tick) await tick();
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
