//! Which hosts scripts may call: the `[http]` `allow` and `deny` patterns of `ferry.toml`, and the
//! addresses refused unless an `allow` entry names them (link-local networks, where the cloud
//! metadata services answer with the machine's credentials).
//!
//! A request passes two checks: its URL before it is sent (scheme, host name, an IP address
//! written in the URL), and every address its host name resolves to, at connection time (so a
//! name that resolves to a refused address is refused, whatever it resolved to a moment
//! before). Redirects go through both checks again.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// One `allow` or `deny` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: every host.
    Any,
    /// `api.example.com`: that host name exactly (lowercase).
    Host(String),
    /// `*.example.com`: any name below `example.com` (stored as `.example.com`).
    Below(String),
    /// `10.0.0.0/8`, `192.168.1.7`, `::1`: addresses in that network.
    Net(IpNet),
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, String> {
        let t = text.trim().to_ascii_lowercase();
        if t == "*" {
            return Ok(Pattern::Any);
        }
        if let Ok(net) = t.parse::<IpNet>() {
            return Ok(Pattern::Net(net.trunc()));
        }
        if let Ok(ip) = t
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(Pattern::Net(IpNet::from(ip)));
        }
        let (below, name) = match t.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, t.as_str()),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!(
                "{text:?} is not a host pattern; expected a host name (api.example.com), a \
                 wildcard below a domain (*.example.com), an IP address or network (10.0.0.0/8), \
                 or * for every host"
            ));
        }
        Ok(if below {
            Pattern::Below(format!(".{name}"))
        } else {
            Pattern::Host(name.to_string())
        })
    }

    fn matches_name(&self, host: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Host(h) => h == host,
            Pattern::Below(suffix) => host.ends_with(suffix.as_str()),
            Pattern::Net(_) => false,
        }
    }

    fn matches_addr(&self, ip: IpAddr) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Net(net) => net.contains(&ip),
            Pattern::Host(_) | Pattern::Below(_) => false,
        }
    }

    /// Whether this entry names `ip` itself (an address or network, not `*`).
    fn names_addr(&self, ip: IpAddr) -> bool {
        matches!(self, Pattern::Net(net) if net.contains(&ip))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Any => f.write_str("*"),
            Pattern::Host(h) => f.write_str(h),
            Pattern::Below(s) => write!(f, "*{s}"),
            Pattern::Net(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "{}", n.addr()),
            Pattern::Net(n) => write!(f, "{n}"),
        }
    }
}

/// Networks refused unless an `allow` entry names the address: link-local (where AWS, GCP and
/// Azure serve instance metadata and credentials at 169.254.169.254), AWS's IPv6 metadata
/// address, Alibaba Cloud's metadata address, and the unspecified addresses.
const REFUSED_BY_DEFAULT: &[&str] = &[
    "169.254.0.0/16",
    "100.100.100.200/32",
    "0.0.0.0/8",
    "fe80::/10",
    "fd00:ec2::254/128",
    "::/128",
];

/// Host names of metadata services, refused unless an `allow` entry names them exactly.
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata.goog", "metadata"];

/// Why a request was refused; the message names the host and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// What the URL check found about a host name, for the address check that follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameVerdict {
    /// An `allow` name pattern (or `*`) matched the host name: its addresses need not match an
    /// `allow` network too.
    pub allowed_by_name: bool,
    /// An `allow` entry named this host exactly: a metadata host name or a refused-by-default
    /// address it resolves to is the operator's explicit choice.
    pub named_exactly: bool,
}

/// The `[http]` policy, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpPolicy {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
}

impl HttpPolicy {
    /// The policy of the `allow` and `deny` lists (an empty `allow` allows every host not
    /// denied). Errors name the entry (`allow[2]`) and what was expected.
    pub fn new(allow: &[String], deny: &[String]) -> Result<HttpPolicy, String> {
        let parse = |list: &[String], key: &str| -> Result<Vec<Pattern>, String> {
            list.iter()
                .enumerate()
                .map(|(i, p)| Pattern::parse(p).map_err(|e| format!("{key}[{i}]: {e}")))
                .collect()
        };
        Ok(HttpPolicy {
            allow: parse(allow, "allow")?,
            deny: parse(deny, "deny")?,
        })
    }

    /// Checks a host as written in a URL (a name, or an IP address). For a name, the verdict
    /// tells the address check what the name already settled.
    pub fn check_host(&self, host: &str) -> Result<NameVerdict, Refusal> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_addr(&host, ip, NameVerdict::default())?;
            return Ok(NameVerdict {
                allowed_by_name: true,
                named_exactly: true,
            });
        }
        if let Some(p) = self.deny.iter().find(|p| p.matches_name(&host)) {
            return Err(Refusal(format!(
                "host {host} is denied by the [http] deny entry {p:?} of ferry.toml",
                p = p.to_string()
            )));
        }
        let named_exactly = self
            .allow
            .iter()
            .any(|p| matches!(p, Pattern::Host(h) if *h == host));
        if METADATA_NAMES.contains(&host.as_str()) && !named_exactly {
            return Err(Refusal(format!(
                "host {host} is a cloud metadata service, refused unless [http] allow in \
                 ferry.toml names it"
            )));
        }
        let allowed_by_name =
            self.allow.is_empty() || self.allow.iter().any(|p| p.matches_name(&host));
        let allow_has_nets = self.allow.iter().any(|p| matches!(p, Pattern::Net(_)));
        if !allowed_by_name && !allow_has_nets {
            return Err(self.not_allowed(&host));
        }
        Ok(NameVerdict {
            allowed_by_name,
            named_exactly,
        })
    }

    /// Checks an address `host` resolved to (or that `host` is).
    pub fn check_addr(&self, host: &str, ip: IpAddr, name: NameVerdict) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        let shown = if host == ip.to_string() {
            host.to_string()
        } else {
            format!("{host} ({ip})")
        };
        if let Some(p) = self.deny.iter().find(|p| p.matches_addr(ip)) {
            return Err(Refusal(format!(
                "address {shown} is denied by the [http] deny entry {p:?} of ferry.toml",
                p = p.to_string()
            )));
        }
        let named = self.allow.iter().any(|p| p.names_addr(ip));
        if !named && !name.named_exactly && refused_by_default(ip) {
            return Err(Refusal(format!(
                "address {shown} is link-local or a cloud metadata address, refused unless \
                 [http] allow in ferry.toml names it"
            )));
        }
        if !name.allowed_by_name
            && !self.allow.is_empty()
            && !self.allow.iter().any(|p| p.matches_addr(ip))
        {
            return Err(self.not_allowed(&shown));
        }
        Ok(())
    }

    fn not_allowed(&self, what: &str) -> Refusal {
        let list: Vec<String> = self.allow.iter().map(|p| p.to_string()).collect();
        Refusal(format!(
            "{what} is not in [http] allow of ferry.toml ({})",
            list.join(", ")
        ))
    }
}

fn refused_by_default(ip: IpAddr) -> bool {
    REFUSED_BY_DEFAULT.iter().any(|n| {
        n.parse::<IpNet>()
            .map(|net| net.contains(&ip))
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> HttpPolicy {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        HttpPolicy::new(&s(allow), &s(deny)).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn by_default_every_host_but_link_local_and_metadata() {
        let p = HttpPolicy::default();
        let v = p.check_host("api.example.com").unwrap();
        assert!(
            p.check_addr("api.example.com", ip("93.184.216.34"), v)
                .is_ok()
        );
        assert!(p.check_addr("localhost", ip("127.0.0.1"), v).is_ok());
        for bad in [
            "169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            let e = p.check_host(bad).unwrap_err();
            assert!(e.0.contains("metadata"), "{bad}: {e}");
            // Also when a name resolves there.
            let e = p.check_addr("evil.example", ip(bad), v).unwrap_err();
            assert!(e.0.contains("evil.example ("), "{e}");
        }
        let e = p.check_host("metadata.google.internal").unwrap_err();
        assert!(e.0.contains("metadata service"), "{e}");
        assert!(p.check_host("METADATA.google.internal.").is_err());
    }

    #[test]
    fn an_allow_entry_that_names_the_address_lets_it_through() {
        let p = policy(&["169.254.169.254", "metadata.google.internal"], &[]);
        assert!(p.check_host("169.254.169.254").is_ok());
        let v = p.check_host("metadata.google.internal").unwrap();
        assert!(
            p.check_addr("metadata.google.internal", ip("169.254.169.254"), v)
                .is_ok()
        );
        // `*` is not naming it.
        let p = policy(&["*"], &[]);
        assert!(p.check_host("169.254.169.254").is_err());
    }

    #[test]
    fn allow_lists_names_wildcards_and_networks() {
        let p = policy(&["api.example.com", "*.example.org", "10.0.0.0/8"], &[]);
        assert!(p.check_host("api.example.com").is_ok());
        assert!(p.check_host("a.b.example.org").is_ok());
        // A wildcard does not cover the apex.
        let v = p.check_host("example.org").unwrap();
        assert!(!v.allowed_by_name);
        assert!(p.check_addr("example.org", ip("93.184.216.34"), v).is_err());
        // A name not listed passes only if its addresses are in an allowed network.
        let v = p.check_host("db.internal").unwrap();
        assert!(p.check_addr("db.internal", ip("10.1.2.3"), v).is_ok());
        let e = p
            .check_addr("db.internal", ip("192.168.1.1"), v)
            .unwrap_err();
        assert!(e.0.contains("not in [http] allow"), "{e}");
        assert!(p.check_host("10.9.9.9").is_ok());
        assert!(p.check_host("11.0.0.1").is_err());
        // Without networks in allow, an unlisted name is refused before any lookup.
        let p = policy(&["api.example.com"], &[]);
        let e = p.check_host("other.example.com").unwrap_err();
        assert!(e.0.contains("api.example.com"), "{e}");
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = policy(&["*"], &["*.internal", "192.168.0.0/16", "::1"]);
        assert!(p.check_host("x.internal").is_err());
        assert!(p.check_host("192.168.3.4").is_err());
        assert!(p.check_host("[::1]").is_err());
        let v = p.check_host("ok.example.com").unwrap();
        let e = p
            .check_addr("ok.example.com", ip("192.168.0.9"), v)
            .unwrap_err();
        assert!(e.0.contains("deny entry \"192.168.0.0/16\""), "{e}");
    }

    #[test]
    fn malformed_patterns_are_refused_with_their_place() {
        for (bad, at) in [
            ("http://x", "allow[0]"),
            ("a..b", "allow[0]"),
            ("", "allow[0]"),
        ] {
            let e = HttpPolicy::new(&[bad.to_string()], &[]).unwrap_err();
            assert!(e.starts_with(at), "{bad}: {e}");
        }
        let e = HttpPolicy::new(&[], &["ok.com".into(), "10.0.0.0/99".into()]).unwrap_err();
        assert!(e.starts_with("deny[1]"), "{e}");
    }
}
