//! The SSRF guard: HTTP destinations may not reach loopback, link-local or private addresses
//! unless the configuration allows it. It runs in the HTTP client's resolver, so it also covers
//! DNS rebinding and redirects.

use std::net::{IpAddr, SocketAddr};

/// Loopback, private, link-local, shared (CGNAT), unspecified, broadcast or unique-local.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback() || v6.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// A resolver for reqwest that refuses private addresses.
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_private(a.ip())) {
                let msg = format!("{host} resolves to {}, a private address: refused (set allow_private_destinations to allow it)", bad.ip());
                return Err(msg.into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for p in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1"] {
            assert!(is_private(p.parse().unwrap()), "{p}");
        }
        for p in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_private(p.parse().unwrap()), "{p}");
        }
    }
}

/// On save: the problem with an HTTP destination URL whose host resolves to a private address
/// (a host that does not resolve is not private: it is checked again at send time).
pub async fn private_on_save(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?.trim_matches(['[', ']']).to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return is_private(ip).then(|| format!("{ip} is a private address; set allow_private_destinations to allow it"));
    }
    let lookup = tokio::time::timeout(std::time::Duration::from_secs(3), tokio::net::lookup_host((host.as_str(), port))).await;
    let addrs: Vec<SocketAddr> = lookup.ok()?.ok()?.collect();
    addrs
        .iter()
        .find(|a| is_private(a.ip()))
        .map(|a| format!("{host} resolves to {}, a private address; set allow_private_destinations to allow it", a.ip()))
}
