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
  // Local-use NAT64 (RFC 8215) and Teredo carry IPv4 addresses in ways that are not worth decoding.
  ['64:ff9b:1::', 48], ['2001::', 32],
] as const) FORBIDDEN.addSubnet(net, prefix, 'ipv6');

export function isForbiddenAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '');
  const version = isIP(bare);
  if (version === 4) return FORBIDDEN.check(bare, 'ipv4');
  if (version !== 6) return true;
  const embedded = embeddedIpv4(ipv6Bytes(bare));
  if (embedded !== undefined && FORBIDDEN.check(embedded, 'ipv4')) return true;
  return FORBIDDEN.check(bare, 'ipv6');
}

/**
 * The IPv4 address an IPv6 address carries, in whatever text form it was written: IPv4-mapped
 * (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96), IPv4-compatible (::/96), well-known NAT64
 * (64:ff9b::/96) and 6to4 (2002::/16). A NAT64 gateway or a dual-stack socket would reach that
 * IPv4 address, so it must pass the IPv4 rules too.
 */
function embeddedIpv4(b: number[]): string | undefined {
  const zero = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  const v4 = (at: number) => b.slice(at, at + 4).join('.');
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) return v4(12);
  if (zero(0, 8) && b[8] === 0xff && b[9] === 0xff && zero(10, 12)) return v4(12);
  if (zero(0, 12)) return v4(12);
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) return v4(12);
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2);
  return undefined;
}

/** The 16 bytes of a valid IPv6 address (net.isIP said so), from any of its text forms. */
function ipv6Bytes(address: string): number[] {
  let text = address.split('%')[0]!.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b2, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b2).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? (text.split('::') as [string, string]) : [text, undefined];
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return all.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 255];
  });
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
