import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { OutboundGuard } from '@app/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';

export const SEND_TIMEOUT_MS = 10_000;

/** The delivery record's text for each kind of connection failure (never the system's own message). */
const SEND_FAILURES: Record<string, string> = {
  EFORBIDDENADDRESS: 'the host resolves to an address that is not allowed (private, loopback, link-local or internal)',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name could not be resolved (temporary DNS failure)',
  ECONNREFUSED: 'the connection was refused',
  ECONNRESET: 'the connection was reset',
  EHOSTUNREACH: 'the host is unreachable',
  ENETUNREACH: 'the network is unreachable',
  UND_ERR_SOCKET: 'the connection was closed before an answer',
  CERT_HAS_EXPIRED: 'the TLS certificate has expired',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the TLS certificate is self-signed',
  SELF_SIGNED_CERT_IN_CHAIN: 'the TLS certificate chain is not trusted',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the TLS certificate could not be verified',
  ERR_TLS_CERT_ALTNAME_INVALID: 'the TLS certificate does not name this host',
};

export interface SendResult {
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

/**
 * Sends one signed delivery (Standard Webhooks 1.0 headers) with a 10 s timeout, never following a
 * redirect (undici's request() does not), through a connection whose address is checked when it is resolved.
 */
@Injectable()
export class WebhookSender implements OnApplicationShutdown {
  private readonly logger = new Logger(WebhookSender.name);
  readonly guard: OutboundGuard;
  private readonly agent: Agent;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.guard = new OutboundGuard(config.outboundAllowedHosts);
    this.agent = new Agent({
      connect: { lookup: this.guard.lookup as never, timeout: SEND_TIMEOUT_MS },
      headersTimeout: SEND_TIMEOUT_MS,
      bodyTimeout: SEND_TIMEOUT_MS,
    });
  }

  async send(url: string, secret: string, deliveryId: string, body: string): Promise<SendResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    // Literal addresses skip DNS, so the connect-time check cannot see them: refuseUrl covers them.
    const refused = this.guard.refuseUrl(url);
    if (refused) return { statusCode: null, error: refused, durationMs: 0 };
    const timestamp = new Date();
    const signature = new Webhook(secret).sign(deliveryId, timestamp, body);
    try {
      const response = await request(url, {
        method: 'POST',
        dispatcher: this.agent,
        body,
        signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'user-management-api-webhooks/2.1',
          'webhook-id': deliveryId,
          'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
          'webhook-signature': signature,
        },
      });
      await response.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      const redirect = response.statusCode >= 300 && response.statusCode < 400;
      return { statusCode: response.statusCode, error: redirect ? 'redirects are not followed' : null, durationMs: elapsed() };
    } catch (error) {
      const e = error as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } };
      const timedOut = e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' || e.code === 'UND_ERR_CONNECT_TIMEOUT';
      // What the delivery record (and so the API) says is a fixed text per kind of failure: the
      // system's own message can name addresses a name resolved to, which are not the caller's to
      // learn (an internal name would be mapped to its internal address). The log keeps the detail.
      const code = e.cause?.code ?? e.code;
      const reason = timedOut ? `timed out after ${SEND_TIMEOUT_MS / 1000} s` : (SEND_FAILURES[code ?? ''] ?? 'the request failed');
      this.logger.warn({ delivery_id: deliveryId, code, detail: e.cause?.message ?? e.message }, 'Webhook delivery failed');
      return { statusCode: null, error: reason, durationMs: elapsed() };
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}
