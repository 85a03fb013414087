//! Which address a request comes from, when the node sits behind load balancers or reverse
//! proxies (`--trusted-proxy CIDR`).
//!
//! The rate limits key on the client's address. Behind a proxy the TCP peer is the proxy,
//! so every client would share one bucket; `X-Forwarded-For` names the real client, but any
//! client can send that header, so it is believed only as far as it was written by proxies
//! we trust. The rule is nginx's `real_ip_recursive on`: when the peer is trusted, walk the
//! header from the right (the hop nearest to us) and take the first address that is not a
//! trusted proxy. A header that is missing or malformed at that point leaves the last
//! address we could trust: a client cannot spoof its way into another bucket, only into
//! its own proxy's. `X-Forwarded-Proto` (the scheme token realms name) is believed from a
//! trusted proxy alone too (`Edge::admit_forwarded`).

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`) or single addresses (`192.0.2.7`).
    pub fn parse(specs: &[String]) -> Result<TrustedProxies, String> {
        let nets = specs
            .iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is neither an address nor a CIDR"))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// Whether `ip` is a trusted proxy, whose `X-Forwarded-*` headers are believed.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: `peer` itself unless `peer` is a trusted proxy, in which case
    /// the nearest untrusted hop of `forwarded_for` (every `X-Forwarded-For` value, in order).
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = forwarded_for.iter().flat_map(|v| v.split(',')).rev();
        for hop in hops {
            let Some(ip) = hop_address(hop) else {
                break;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// One hop of the header: an address, or an address with a port as some load balancers
/// write it (`203.0.113.1:443`, `[2001:db8::1]:443`, `[2001:db8::1]`).
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            hop.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as dual-stack sockets report them) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_header_is_believed_only_as_far_as_trusted_proxies_wrote_it() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        let cases: &[(&str, &[&str], &str)] = &[
            // Not from a proxy: the header is the client's own word and ignored.
            ("203.0.113.9", &["198.51.100.1"], "203.0.113.9"),
            // From a trusted proxy: the hop it saw.
            ("10.1.2.3", &["198.51.100.1"], "198.51.100.1"),
            // A spoofed left part stays unread past the first untrusted hop.
            ("10.1.2.3", &["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
            // Chains of trusted proxies are walked, over several header lines too.
            (
                "10.1.2.3",
                &["198.51.100.1, 192.0.2.7", "10.9.9.9"],
                "198.51.100.1",
            ),
            // Nothing usable: the nearest address we could trust.
            ("10.1.2.3", &[], "10.1.2.3"),
            ("10.1.2.3", &["garbage"], "10.1.2.3"),
            ("10.1.2.3", &["198.51.100.1, garbage, 10.2.2.2"], "10.2.2.2"),
            // IPv4-mapped addresses count as IPv4.
            ("::ffff:10.1.2.3", &["::ffff:198.51.100.1"], "198.51.100.1"),
            ("10.1.2.3", &["2001:db8::1"], "2001:db8::1"),
            // Hops with ports, as some load balancers write them.
            ("10.1.2.3", &["198.51.100.1:443"], "198.51.100.1"),
            (
                "10.1.2.3",
                &["[2001:db8::1]:443, 10.0.0.9:80"],
                "2001:db8::1",
            ),
            ("10.1.2.3", &["[2001:db8::2]"], "2001:db8::2"),
        ];
        for (peer, header, want) in cases {
            assert_eq!(t.client(ip(peer), header), ip(want), "{peer} {header:?}");
        }
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("10.1.2.3"), &["198.51.100.1"]),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
        assert!(TrustedProxies::parse(&[" fd00::/8 ".into()]).is_ok());
    }
}
