import { BlockList, isIP } from "node:net";

/**
 * Address ranges of a network the operator runs, such as a devnet, a test cluster or a
 * benchmark on one host (`127.0.0.0/8`), or nodes behind one NAT. Many honest peers share
 * an address there, which public-network defences read as an attack: gossipsub's
 * IP-colocation score (P6) graylists peers once more than ten share an address, and
 * libp2p refuses more than a few inbound connections per second from one host and
 * prunes connections beyond its limit. Peers from trusted ranges are exempt from those
 * three; every other defence (scores for invalid messages, rate limits, penalties) still
 * applies. Public networks trust no range.
 */
export class TrustedNetworks {
  readonly cidrs: readonly string[];
  readonly #list = new BlockList();

  constructor(cidrs: readonly string[]) {
    this.cidrs = [...cidrs];
    for (const cidr of cidrs) {
      const { address, prefix, family } = parseCidr(cidr);
      this.#list.addSubnet(address, prefix, family);
    }
  }

  get empty(): boolean {
    return this.cidrs.length === 0;
  }

  /** True when `ip` (an IPv4 or IPv6 address) lies in a trusted range. */
  contains(ip: string): boolean {
    const family = isIP(ip);
    if (family === 0 || this.empty) return false;
    return this.#list.check(ip, family === 4 ? "ipv4" : "ipv6");
  }

  /** The ranges as multiaddrs, for libp2p's connection manager allow list. */
  multiaddrs(): string[] {
    return this.cidrs.map((cidr) => {
      const { address, prefix, family } = parseCidr(cidr);
      return `/${family === "ipv4" ? "ip4" : "ip6"}/${address}/ipcidr/${prefix}`;
    });
  }

  /**
   * A stand-in for gossipsub's `IPColocationFactorWhitelist`: the router asks only `has(ip)`
   * of it, answered for whole ranges rather than listed addresses.
   */
  colocationWhitelist(): Set<string> {
    return new RangeSet(this);
  }
}

class RangeSet extends Set<string> {
  readonly #networks: TrustedNetworks;

  constructor(networks: TrustedNetworks) {
    super();
    this.#networks = networks;
  }

  override has(ip: string): boolean {
    return this.#networks.contains(ip);
  }
}

/** Parses `a.b.c.d/n` or `x:y::z/n`; a bare address is a range of one. Throws naming what is wrong. */
export function parseCidr(cidr: string): { address: string; prefix: number; family: "ipv4" | "ipv6" } {
  const [address = "", prefixText, extra] = cidr.split("/");
  const version = isIP(address);
  if (version === 0 || extra !== undefined)
    throw new Error(`trusted network ${JSON.stringify(cidr)} is not an IP range like 127.0.0.0/8`);
  const bits = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  // A range wider than a /8 would exempt much of the Internet from the colocation score and
  // connection limits: a mistake, never a network one runs (IPv6's fd00::/8 is the widest private one).
  const widest = 8;
  if (!/^\d{1,3}$/.test(prefixText ?? String(bits)) || prefix > bits || prefix < widest)
    throw new Error(`trusted network ${JSON.stringify(cidr)} has a prefix length outside ${widest}-${bits}`);
  return { address, prefix, family: version === 4 ? "ipv4" : "ipv6" };
}
