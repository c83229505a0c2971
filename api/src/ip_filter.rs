//! The optional webhook IP allowlist. The client address is the TCP peer, unless the peer is
//! one of `TRUSTED_PROXIES`: then `X-Forwarded-For` is read from the right, skipping trusted
//! proxies, and the first other address is the client. A forwarded header from anyone else is
//! ignored, so it cannot be used to spoof an allowed address.

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
    /// The client's address as far as we can trust it.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !contains(&self.trusted_proxies, peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        Some(
            forwarded
                .into_iter()
                .rev()
                .find(|ip| !contains(&self.trusted_proxies, *ip))
                .unwrap_or(peer),
        )
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
