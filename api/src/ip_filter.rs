//! The optional webhook IP allowlist. The client address is the TCP peer, unless the peer is
//! one of `TRUSTED_PROXIES`: then `X-Forwarded-For` is read from the right, skipping trusted
//! proxies, and the first other hop is the client. A forwarded header from anyone else is
//! ignored, so it cannot be used to spoof an allowed address.
//!
//! A hop that is not a bare IP address (`ip:port`, `[v6]`, `[v6]:port`, `unknown`, an empty
//! entry, bytes that are not text) is the client all the same — it is simply one we cannot
//! identify, so no allowlist entry matches it. Skipping it instead would make the entry to
//! its left, which the client wrote itself, count as the client. Strict on purpose: a proxy
//! that appends `ip:port` is refused (403) rather than guessed at.

use ipnet::IpNet;
use jobs::config::ConfigError;
use poem::http::HeaderMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Default)]
pub struct IpFilter {
    /// Empty: every address may post webhooks.
    pub allow: Vec<IpNet>,
    pub trusted_proxies: Vec<IpNet>,
}

/// Parses a comma- or space-separated list of CIDRs or single addresses.
pub fn parse_cidrs(name: &'static str, value: &str) -> Result<Vec<IpNet>, ConfigError> {
    value
        .split([',', ' '])
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::Malformed {
                    name,
                    reason: format!("`{s}` is not an address or CIDR"),
                })
        })
        .collect()
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

impl IpFilter {
    /// The client's address as far as we can trust it; `None` when it cannot be told (no
    /// peer, or the client's hop in `X-Forwarded-For` is not a bare address).
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !contains(&self.trusted_proxies, peer) {
            return Some(peer);
        }
        // Each header line is split at commas; a line that is not visible ASCII is one hop
        // that does not parse. Proxies append on the right, so walk from there.
        let hops: Vec<Option<&str>> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| match v.to_str() {
                Ok(text) => text.split(',').map(Some).collect::<Vec<_>>(),
                Err(_) => vec![None],
            })
            .collect();
        for hop in hops.into_iter().rev() {
            match hop.and_then(|h| h.trim().parse::<IpAddr>().ok()) {
                Some(ip) if contains(&self.trusted_proxies, ip) => continue,
                Some(ip) => return Some(ip),
                None => {
                    tracing::info!(
                        hop = ?hop.map(|h| h.chars().take(60).collect::<String>()),
                        "the client's X-Forwarded-For hop is not an IP address"
                    );
                    return None;
                }
            }
        }
        Some(peer)
    }

    /// Whether a webhook from this request may proceed.
    pub fn allows(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
        self.allow.is_empty()
            || self
                .client_ip(peer, headers)
                .is_some_and(|ip| contains(&self.allow, ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_counts_only_behind_trusted_proxies() {
        let f = IpFilter {
            allow: parse_cidrs("A", "203.0.113.0/24").unwrap(),
            trusted_proxies: parse_cidrs("T", "10.0.0.0/8").unwrap(),
        };
        let proxy = Some("10.1.2.3".parse().unwrap());
        let stranger = Some("198.51.100.9".parse().unwrap());
        assert!(f.allows(proxy, &h("203.0.113.7")));
        assert!(
            f.allows(proxy, &h("198.51.100.1, 203.0.113.7, 10.0.0.2")),
            "rightmost untrusted hop is the client"
        );
        assert!(
            !f.allows(proxy, &h("203.0.113.7, 198.51.100.1")),
            "a client cannot prepend an allowed address"
        );
        assert!(
            !f.allows(stranger, &h("203.0.113.7")),
            "spoofed header from an untrusted peer is ignored"
        );
        assert!(f.allows(Some("203.0.113.50".parse().unwrap()), &HeaderMap::new()));
        assert!(
            f.allows(
                Some("::ffff:203.0.113.50".parse().unwrap()),
                &HeaderMap::new()
            ),
            "IPv4-mapped IPv6"
        );
        assert!(
            IpFilter::default().allows(stranger, &HeaderMap::new()),
            "no allowlist: open"
        );
    }

    #[test]
    fn an_unparsable_hop_is_the_client_and_is_refused() {
        let f = IpFilter {
            allow: parse_cidrs("A", "203.0.113.0/24, 2001:db8::/32").unwrap(),
            trusted_proxies: parse_cidrs("T", "10.0.0.0/8").unwrap(),
        };
        let proxy = Some("10.1.2.3".parse().unwrap());
        let cases: &[(&str, &str, bool)] = &[
            ("ipv4 with port", "203.0.113.7, 198.51.100.1:4711", false),
            ("bracketed ipv6", "203.0.113.7, [2001:db9::1]", false),
            (
                "bracketed ipv6 with port",
                "203.0.113.7, [2001:db9::1]:443",
                false,
            ),
            ("unknown", "203.0.113.7, unknown", false),
            ("empty entry", "203.0.113.7, ", false),
            ("empty in the middle", "203.0.113.7,,10.0.0.9", false),
            ("garbage", "203.0.113.7, not-an-ip", false),
            ("obfuscated", "203.0.113.7, _hidden", false),
            ("allowed with port", "203.0.113.7:4711", false),
            ("allowed ipv6 bracketed", "[2001:db8::1]", false),
            ("allowed ipv6", "198.51.100.1, 2001:db8::1", true),
            ("allowed behind two proxies", "203.0.113.7, 10.0.0.9", true),
            ("spaces around", "  203.0.113.7  ", true),
            ("garbage left of the client", "garbage, 203.0.113.7", true),
        ];
        for (name, xff, want) in cases {
            assert_eq!(f.allows(proxy, &h(xff)), *want, "{name}: {xff:?}");
        }
        // Bytes that are not text are a hop, not nothing.
        let mut raw = HeaderMap::new();
        raw.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
        raw.append(
            "x-forwarded-for",
            poem::http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert!(!f.allows(proxy, &raw), "non-text hop");
        // Several header lines are one list, in order.
        let mut two = HeaderMap::new();
        two.append("x-forwarded-for", "198.51.100.1".parse().unwrap());
        two.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
        assert!(f.allows(proxy, &two), "last line holds the nearest hop");
    }

    #[test]
    fn bad_lists_name_the_variable() {
        let e = parse_cidrs("WEBHOOK_IP_ALLOWLIST", "10.0.0.0/8, banana")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("WEBHOOK_IP_ALLOWLIST is malformed") && e.contains("banana"),
            "{e}"
        );
        assert_eq!(
            parse_cidrs("X", "192.0.2.1").unwrap()[0].to_string(),
            "192.0.2.1/32"
        );
    }
}
