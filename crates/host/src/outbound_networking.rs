//! `allowed_outbound_hosts` grants (Spin's `outbound-networking-config`): parsing, template
//! resolution and matching, shared by outbound HTTP, outbound Redis and service chaining.
//!
//! A grant is `scheme://host[:port]`, where scheme, host and port may be `*`, the host may be a
//! `*.domain` wildcard, a CIDR range, or `self`, and the port may be a range `a..b`. A missing port
//! means the scheme's well-known port. Templates (`{{ var }}`) are resolved from application
//! variables at start-up; a template resolving to an empty string grants nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::capability::ConfigureAppContext;
use crate::variables::{AppVariables, Template};

/// The service-chaining domain: `http://<component-id>.spin.internal`.
pub const SERVICE_CHAINING_DOMAIN_SUFFIX: &str = ".spin.internal";

/// One parsed grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    original: String,
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    AnySubdomain(String),
    ToSelf,
    Literal(String),
    Cidr(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Port(u16),
    Range(u16, u16),
}

/// The scheme's default port, as Spin knows them.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHost {
    /// Parses `scheme://host[:port]`.
    pub fn parse(original: &str) -> Result<AllowedHost> {
        let url = original.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            if matches!(url, "*" | ":" | "" | "?") {
                bail!("{url:?} is not an allowed outbound host format. Hosts must be in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each");
            }
            bail!("{url:?} does not contain a scheme (e.g., 'http://' or '*://')");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let whole_is_host =
            rest.parse::<IpAddr>().is_ok() || HostPattern::parse_cidr(rest).is_some();
        let (host, port) = match rest.rsplit_once(':') {
            _ if whole_is_host => (rest, ""),
            None => (rest, ""),
            Some((h, "")) => (h, ""),
            Some((h, tail)) => {
                let port = match tail.split_once('/') {
                    Some((port, path)) => {
                        if !path.is_empty() {
                            bail!("{url:?} has a path but is not allowed to");
                        }
                        port
                    }
                    None => tail,
                };
                (h, port)
            }
        };
        if host.contains('/') && HostPattern::parse_cidr(host).is_none() {
            bail!("{url:?} has a path but is not allowed to");
        }
        let scheme_pat = if scheme == "*" {
            None
        } else {
            if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphabetic()) {
                bail!("invalid allowed host scheme {scheme:?}: only alphabetic characters are allowed");
            }
            Some(scheme.to_string())
        };
        let port = if port.is_empty() {
            match well_known_port(scheme) {
                Some(p) => PortPattern::Port(p),
                None => bail!("{url:?}: no port was provided and the scheme {scheme:?} does not have a known default port number"),
            }
        } else if port == "*" {
            PortPattern::Any
        } else if let Some((a, b)) = port.split_once("..") {
            let a = a
                .parse()
                .with_context(|| format!("port range {port:?} contains non-number"))?;
            let b = b
                .parse()
                .with_context(|| format!("port range {port:?} contains non-number"))?;
            PortPattern::Range(a, b)
        } else {
            PortPattern::Port(
                port.parse()
                    .with_context(|| format!("port {port:?} is not a number"))?,
            )
        };
        let host =
            HostPattern::parse(host).with_context(|| format!("invalid allowed host {host:?}"))?;
        Ok(AllowedHost {
            original: original.to_string(),
            scheme: scheme_pat,
            host,
            port,
        })
    }

    /// Whether this grant is for service chaining (`<id>.spin.internal` or `*.spin.internal`), as
    /// Spin's `AllowedHostConfig::is_for_service_chaining`.
    pub fn is_for_service_chaining(&self) -> bool {
        match &self.host {
            HostPattern::Literal(h) => h.ends_with(SERVICE_CHAINING_DOMAIN_SUFFIX),
            HostPattern::AnySubdomain(suffix) => suffix == SERVICE_CHAINING_DOMAIN_SUFFIX,
            _ => false,
        }
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if let Some(s) = &self.scheme {
            if s != scheme {
                return false;
            }
        }
        if !self.host.allows(host) {
            return false;
        }
        match self.port {
            PortPattern::Any => true,
            PortPattern::Port(p) => port.or_else(|| well_known_port(scheme)) == Some(p),
            PortPattern::Range(a, b) => port
                .or_else(|| well_known_port(scheme))
                .is_some_and(|p| p >= a && p < b),
        }
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.original)
    }
}

impl HostPattern {
    fn parse(host: &str) -> Result<HostPattern> {
        let host = host.trim();
        if host == "*" {
            return Ok(HostPattern::Any);
        }
        if host == "self" || host == "self.alt" {
            return Ok(HostPattern::ToSelf);
        }
        if host.starts_with('{') {
            bail!("host lists are not yet supported");
        }
        if let Some((ip, bits)) = Self::parse_cidr(host) {
            return Ok(HostPattern::Cidr(ip, bits));
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') || domain.is_empty() {
                bail!("wildcards are allowed only as prefixes");
            }
            return Ok(HostPattern::AnySubdomain(format!(
                ".{}",
                domain.to_ascii_lowercase()
            )));
        }
        if host.contains('*') {
            bail!("wildcards are allowed only as subdomains");
        }
        if host.is_empty() {
            bail!("host must not be empty");
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(HostPattern::Literal(host.to_ascii_lowercase()))
    }

    fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
        let (ip, bits) = s.split_once('/')?;
        let ip: IpAddr = ip.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some((ip, bits))
    }

    fn allows(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        match self {
            HostPattern::Any => true,
            HostPattern::AnySubdomain(suffix) => {
                host.parse::<IpAddr>().is_err() && host.ends_with(suffix.as_str())
            }
            HostPattern::ToSelf => false,
            HostPattern::Literal(l) => match (l.parse::<IpAddr>(), host.parse::<IpAddr>()) {
                (Ok(a), Ok(b)) => a == b,
                _ => *l == host,
            },
            HostPattern::Cidr(net, bits) => match host.parse::<IpAddr>() {
                Ok(ip) => cidr_contains(*net, *bits, ip),
                Err(_) => false,
            },
        }
    }
}

fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

/// Resolves every loaded component's `allowed_outbound_hosts` (every component with a bad entry
/// is reported at once).
pub fn configure_app(ctx: &ConfigureAppContext<'_>) -> Result<HashMap<String, Arc<AllowedHosts>>> {
    let component_ids = ctx.app.component_ids();
    ctx.per_component(|id, c| {
        AllowedHosts::parse(&c.allowed_outbound_hosts, ctx.vars, &component_ids)
            .map(Arc::new)
            .with_context(|| format!("component {id:?}: invalid allowed_outbound_hosts"))
    })
}

/// wasi:sockets for one instance, as Spin: TCP connect and UDP only to granted `tcp://` /
/// `udp://` addresses (by IP); no listening sockets; name lookup stays disabled. wasmtime turns
/// TCP and UDP off unless asked, so they are turned on here and every address is checked against
/// the grants. The implicit wildcard bind that precedes a connect or a first send is allowed.
pub fn allow_granted_sockets(wasi: &mut wasmtime_wasi::WasiCtxBuilder, grants: Arc<AllowedHosts>) {
    wasi.allow_tcp(true).allow_udp(true);
    wasi.socket_addr_check(move |addr, addr_use| {
        use wasmtime_wasi::sockets::SocketAddrUse;
        let implicit_bind = addr.ip().is_unspecified() && addr.port() == 0;
        let allowed = match addr_use {
            SocketAddrUse::TcpBind => implicit_bind,
            SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
            SocketAddrUse::TcpConnect => grants.allows_url(&addr.to_string(), "tcp"),
            SocketAddrUse::UdpBind => implicit_bind || grants.allows_url(&addr.to_string(), "udp"),
            SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
                grants.allows_url(&addr.to_string(), "udp")
            }
        };
        Box::pin(async move { allowed })
    });
}

/// A component's resolved grants.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    hosts: Vec<AllowedHost>,
}

impl AllowedHosts {
    /// Parses a component's `allowed_outbound_hosts`, resolving templates; `*.spin.internal`
    /// expands to every component of the app, as in Spin.
    pub fn parse(
        entries: &[String],
        vars: &AppVariables,
        component_ids: &[String],
    ) -> Result<AllowedHosts> {
        if entries.len() == 1 && entries[0] == "insecure:allow-all" {
            bail!("'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic");
        }
        let mut hosts = Vec::new();
        for entry in entries {
            let t = Template::parse(entry)?;
            let resolved = if t.is_literal() {
                entry.clone()
            } else {
                vars.check_template(entry)?;
                vars.resolve_template(entry)
                    .with_context(|| format!("cannot resolve allowed host template {entry:?}"))?
            };
            if resolved.is_empty() || resolved == "http://" || resolved == "https://" {
                continue;
            }
            let h = AllowedHost::parse(&resolved)
                .with_context(|| format!("invalid allowed_outbound_hosts entry {entry:?}"))?;
            match &h.host {
                HostPattern::AnySubdomain(s) if s == SERVICE_CHAINING_DOMAIN_SUFFIX => {
                    for c in component_ids {
                        let mut e = h.clone();
                        e.host =
                            HostPattern::Literal(format!("{c}{SERVICE_CHAINING_DOMAIN_SUFFIX}"));
                        hosts.push(e);
                    }
                }
                _ => hosts.push(h),
            }
        }
        Ok(AllowedHosts { hosts })
    }

    /// Whether any grant exists.
    pub fn has_any(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// Checks an absolute URL (or `host:port` with `default_scheme`).
    pub fn allows_url(&self, url: &str, default_scheme: &str) -> bool {
        let parsed = match url::Url::parse(url) {
            Ok(u) if u.has_host() => u,
            _ => match url::Url::parse(&format!("{default_scheme}://{url}")) {
                Ok(u) => u,
                Err(_) => return false,
            },
        };
        let Some(host) = parsed.host_str() else {
            return false;
        };
        self.allows(parsed.scheme(), host, parsed.port())
    }

    /// Checks scheme, host and explicit port.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.hosts.iter().any(|h| h.allows(scheme, host, port))
    }

    /// Whether a relative (self) request is allowed.
    pub fn allows_relative(&self, schemes: &[&str]) -> bool {
        self.hosts.iter().any(|h| {
            matches!(h.host, HostPattern::Any | HostPattern::ToSelf)
                && schemes
                    .iter()
                    .any(|s| h.scheme.as_deref().is_none_or(|hs| hs == *s))
        })
    }
}

/// The `allowed_outbound_hosts` entries, as written, that grant service chaining, which makes the
/// component require `local_service_chaining` from its triggers (Spin's
/// `requires_service_chaining`). Spin judges the entry as written; an entry is also caught here
/// when its template resolves to a chaining host. Entries that do not parse or resolve are left
/// to the start-up checks that report them.
pub fn service_chaining_grants(entries: &[String], vars: &AppVariables) -> Vec<String> {
    let is_chaining = |s: &str| AllowedHost::parse(s).is_ok_and(|h| h.is_for_service_chaining());
    entries
        .iter()
        .filter(|e| is_chaining(e) || vars.resolve_template(e).is_ok_and(|r| is_chaining(&r)))
        .cloned()
        .collect()
}

/// `foo.spin.internal[:port]` => `foo`.
pub fn parse_service_chaining_host(host: &str) -> Option<&str> {
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let (first, rest) = host.split_once('.')?;
    (rest == "spin.internal").then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        let mut values = BTreeMap::new();
        values.insert("redis_host".to_string(), Some("127.0.0.1:7000".to_string()));
        values.insert("empty".to_string(), Some(String::new()));
        let vars = AppVariables::from_values(values);
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&entries, &vars, &["order".into(), "stock".into()]).expect("parse")
    }

    #[test]
    fn literal_hosts_and_default_ports() {
        let h = hosts(&["https://example.com", "redis://{{ redis_host }}"]);
        assert!(h.allows_url("https://example.com/x", "https"));
        assert!(h.allows_url("https://example.com:443/x", "https"));
        assert!(!h.allows_url("https://example.com:8443/x", "https"));
        assert!(!h.allows_url("http://example.com/x", "https"));
        assert!(h.allows_url("redis://127.0.0.1:7000", "redis"));
        assert!(!h.allows_url("redis://127.0.0.1:6379", "redis"));
        assert!(!h.allows_url("redis://127.0.0.2:7000", "redis"));
    }

    #[test]
    fn wildcards() {
        let h = hosts(&["*://*.example.com:*", "http://localhost:3000..3010"]);
        assert!(h.allows_url("https://api.example.com:9/x", "https"));
        assert!(!h.allows_url("https://example.com/x", "https"));
        assert!(h.allows_url("http://localhost:3005", "http"));
        assert!(!h.allows_url("http://localhost:3010", "http"));
        let all = hosts(&["*://*:*"]);
        assert!(all.allows_url("redis://anything:1", "redis"));
    }

    #[test]
    fn service_chaining() {
        let h = hosts(&["http://stock.spin.internal"]);
        assert!(h.allows_url("http://stock.spin.internal/api", "http"));
        assert!(!h.allows_url("http://order.spin.internal/api", "http"));
        let h = hosts(&["http://*.spin.internal"]);
        assert!(h.allows_url("http://order.spin.internal/api", "http"));
        assert!(!h.allows_url("http://other.spin.internal/api", "http"));
        assert_eq!(
            parse_service_chaining_host("stock.spin.internal"),
            Some("stock")
        );
        assert_eq!(
            parse_service_chaining_host("stock.spin.internal:80"),
            Some("stock")
        );
        assert_eq!(parse_service_chaining_host("example.com"), None);
    }

    #[test]
    fn grants_that_require_service_chaining() {
        let mut values = BTreeMap::new();
        values.insert(
            "chain".to_string(),
            Some("http://stock.spin.internal".to_string()),
        );
        values.insert("plain".to_string(), Some("https://example.com".to_string()));
        let vars = AppVariables::from_values(values);
        let entries: Vec<String> = [
            "http://*.spin.internal",
            "http://order.spin.internal:8080",
            "{{ chain }}",
            "{{ plain }}",
            "*://*:*",
            "https://spin.internal",
            "redis://127.0.0.1:6379",
            "{{ missing }}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            service_chaining_grants(&entries, &vars),
            vec![
                "http://*.spin.internal",
                "http://order.spin.internal:8080",
                "{{ chain }}"
            ]
        );
    }

    #[test]
    fn cidr_and_self() {
        let h = hosts(&["http://10.0.0.0/8:*", "http://self"]);
        assert!(h.allows_url("http://10.1.2.3:99", "http"));
        assert!(!h.allows_url("http://11.1.2.3:99", "http"));
        assert!(h.allows_relative(&["http", "https"]));
        assert!(!hosts(&["https://x.com"]).allows_relative(&["http"]));
    }

    #[test]
    fn errors_and_empty_templates() {
        let vars = AppVariables::from_values(BTreeMap::new());
        assert!(AllowedHosts::parse(&["example.com".into()], &vars, &[]).is_err());
        assert!(AllowedHosts::parse(&["foo://example.com".into()], &vars, &[]).is_err());
        assert!(AllowedHosts::parse(&["insecure:allow-all".into()], &vars, &[]).is_err());
        assert!(AllowedHosts::parse(&["https://a/b".into()], &vars, &[]).is_err());
        let h = hosts(&["{{ empty }}"]);
        assert!(!h.allows_url("http://x", "http"));
    }
}
