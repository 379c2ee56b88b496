import { lookup as dnsLookup, LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';

/**
 * The one rule for every outbound call (webhooks, SAML metadata, OIDC discovery): never reach a
 * private, loopback, link-local, metadata, multicast or unspecified address, unless the host is
 * listed in OUTBOUND_ALLOWED_HOSTS. Names are checked when they are resolved for the connection,
 * so a DNS answer that changes after registration (rebinding) cannot reach a private address.
 */
const FORBIDDEN = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24],
  ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) FORBIDDEN.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['2001:db8::', 32], ['100::', 64],
] as const) FORBIDDEN.addSubnet(net, prefix, 'ipv6');

export function isForbiddenAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '');
  const version = isIP(bare);
  if (version === 4) return FORBIDDEN.check(bare, 'ipv4');
  if (version !== 6) return true;
  // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses carry an IPv4 address.
  const embedded = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/i.exec(bare)?.[1];
  if (embedded) return FORBIDDEN.check(embedded, 'ipv4');
  const mappedHex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(bare);
  if (mappedHex) {
    const n = (parseInt(mappedHex[1]!, 16) << 16) | parseInt(mappedHex[2]!, 16);
    return FORBIDDEN.check([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.'), 'ipv4');
  }
  return FORBIDDEN.check(bare, 'ipv6');
}

export class OutboundGuard {
  private readonly allowed: Set<string>;

  constructor(allowedHosts: string[]) {
    this.allowed = new Set(allowedHosts.map((h) => h.toLowerCase()));
  }

  isAllowedHost(host: string): boolean {
    return this.allowed.has(host.toLowerCase().replace(/^\[|\]$/g, ''));
  }

  /** Why a URL may never be called (scheme or literal address), or undefined when it may be tried. */
  refuseUrl(raw: string): string | undefined {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return 'Not a valid URL';
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'Only http and https URLs are allowed';
    if (url.username || url.password) return 'Credentials in the URL are not allowed';
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) && isForbiddenAddress(host) && !this.isAllowedHost(host)) {
      return 'The host is a private, loopback, link-local or otherwise internal address';
    }
    if (!isIP(host) && /^[\d.]+$/.test(host)) return 'The host is not a valid address';
    return undefined;
  }

  /** A dns.lookup replacement for the connection: fails when the name resolves to a forbidden address. */
  lookup = (
    hostname: string,
    options: { family?: number; all?: boolean },
    callback: (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    dnsLookup(hostname, { all: true, family: options.family ?? 0 }, (error, addresses) => {
      if (error) return callback(error, '');
      const allowed = this.isAllowedHost(hostname);
      const bad = addresses.find((a) => isForbiddenAddress(a.address));
      if (bad && !allowed) {
        const refused = Object.assign(new Error(`${hostname} resolves to a forbidden address (${bad.address})`), { code: 'EFORBIDDENADDRESS' });
        return callback(refused, '');
      }
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}
