//! Cross-site request protection for the operator routes. A browser attaches the `__session`
//! cookie to requests that any other site makes (a form posting to `/admin/api/reconcile`), so
//! a state-changing operator request authenticated by that cookie must show that it comes from
//! this service's own pages: `Sec-Fetch-Site: same-origin` or `none` (the browser's own,
//! unforgeable statement, decisive when present), or else an `Origin` equal to this service's
//! origin. Bearer-token callers are not at risk (a browser never adds their header) and are
//! not checked.

use poem::http::HeaderMap;

/// Whether the request comes from this service's own origin, as far as the browser tells.
///
/// Without `Sec-Fetch-Site` (older browsers, or plain-HTTP hosts other than localhost, where
/// browsers omit it), `Origin` must be `<scheme>://<Host>`: the scheme is the first
/// `X-Forwarded-Proto` value when a proxy sets one, otherwise `http` or `https` (a browser
/// page cannot set either header on a cross-site request without a CORS preflight that we
/// never grant). No header at all is refused.
pub fn from_own_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let (Some(origin), Some(host)) = (text("origin"), text("host")) else {
        return false;
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if !rest.eq_ignore_ascii_case(host.trim()) {
        return false;
    }
    match text("x-forwarded-proto").and_then(|p| p.split(',').next()) {
        Some(proto) => scheme.eq_ignore_ascii_case(proto.trim()),
        None => scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request headers, whether they pass, and what the case is.
    type Case<'a> = (&'a [(&'static str, &'static str)], bool, &'static str);

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn own_pages_pass_and_other_sites_do_not() {
        let host = ("host", "ops.example.com");
        let cases: &[Case] = &[
            (&[("sec-fetch-site", "same-origin")], true, "same origin"),
            (&[("sec-fetch-site", "none")], true, "typed by the user"),
            (
                &[("sec-fetch-site", "same-site")],
                false,
                "a sibling subdomain",
            ),
            (&[("sec-fetch-site", "cross-site")], false, "another site"),
            (
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://ops.example.com"),
                ],
                false,
                "Sec-Fetch-Site is decisive",
            ),
            (
                &[host, ("origin", "https://ops.example.com")],
                true,
                "own origin",
            ),
            (
                &[host, ("origin", "http://ops.example.com")],
                true,
                "own origin, plain",
            ),
            (
                &[host, ("origin", "https://evil.example")],
                false,
                "foreign origin",
            ),
            (
                &[host, ("origin", "https://ops.example.com:8443")],
                false,
                "other port",
            ),
            (&[host, ("origin", "null")], false, "opaque origin"),
            (
                &[
                    host,
                    ("origin", "http://ops.example.com"),
                    ("x-forwarded-proto", "https"),
                ],
                false,
                "scheme differs from the proxy's",
            ),
            (
                &[
                    host,
                    ("origin", "https://ops.example.com"),
                    ("x-forwarded-proto", "https"),
                ],
                true,
                "scheme as the proxy says",
            ),
            (&[("origin", "https://ops.example.com")], false, "no Host"),
            (&[host], false, "neither header"),
        ];
        for (pairs, want, what) in cases {
            assert_eq!(from_own_origin(&headers(pairs)), *want, "{what}");
        }
    }
}
