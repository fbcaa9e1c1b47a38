//! DNS-rebinding guard: the UI and API answer only Host names flowscope serves.
//!
//! A web page on any site can point its own DNS name at 127.0.0.1 and then read
//! flowscope's pages (and the CSRF token in them) as same-origin. Browsers always send the
//! name they resolved in `Host`, so requests naming a host we do not serve get 421
//! Misdirected Request. IP literals cannot be rebound, so they are always served, as are
//! `localhost`, the host of `--external-url` and the `--allowed-host` list.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Lower-case host names, without ports.
    names: Vec<String>,
}

impl HostPolicy {
    pub fn new(external_url: &str, allowed: &[String]) -> HostPolicy {
        let external = external_url.split_once("://").map_or(external_url, |(_, rest)| rest);
        let external = external.split(['/', '?', '#']).next().unwrap_or("");
        let mut names: Vec<String> = std::iter::once(external)
            .chain(allowed.iter().map(String::as_str))
            .map(|h| host_name(h).to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        names.sort();
        names.dedup();
        HostPolicy { names }
    }

    /// Whether a request naming `host` (a `Host` header value) is served.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let literal = name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok();
        literal || name == "localhost" || name.ends_with(".localhost") || self.names.contains(&name)
    }
}

/// `host[:port]` or `[v6]:port` without the port.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

pub async fn require_served_host(State(policy): State<Arc<HostPolicy>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if !policy.allows(&h) => (
            StatusCode::MISDIRECTED_REQUEST,
            format!("flowscope does not serve the host name {h:?}; add it with --allowed-host\n"),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_ip_literals_localhost_and_configured_names_only() {
        let policy = HostPolicy::new("https://flowscope.example.com/", &["dash.internal".into()]);
        for (host, allowed) in [
            ("127.0.0.1:8080", true),
            ("[::1]:8080", true),
            ("10.1.2.3", true),
            ("localhost:8080", true),
            ("LOCALHOST", true),
            ("flowscope.example.com", true),
            ("flowscope.example.com:443", true),
            ("dash.internal:8080", true),
            ("attacker.example:8080", false),
            ("127.0.0.1.attacker.example", false),
            ("flowscope.example.com.evil", false),
        ] {
            assert_eq!(policy.allows(host), allowed, "{host}");
        }
    }
}
