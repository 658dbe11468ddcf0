//! Fetching a URL a sender gave us (a call's `recording_url`) without becoming a way into the
//! network the server sits in: every address the host resolves to must be public unless the
//! operator allowed its network, the connection goes to the address that was checked (so a
//! second DNS answer cannot swap it), redirects are followed by hand and each target checked
//! again, and the body is read up to a size limit.

use callgrade_core::shown_url;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How many redirects are followed.
const MAX_REDIRECTS: usize = 5;

/// How long resolving a host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A network, as `10.0.0.0/8`, `127.0.0.1` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a network such as 10.0.0.0/8 or fd00::/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0–{max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// What may be fetched, and for how long.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Networks reachable although they are private, loopback or otherwise not public.
    pub allowed: Vec<Network>,
    /// For each request, redirects each count anew.
    pub timeout: Duration,
    /// The setting that adds to `allowed`, named when an address is refused.
    pub allow_flag: &'static str,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allowed: Vec::new(),
            timeout: Duration::from_secs(60),
            allow_flag: "--allow-fetch-from",
        }
    }
}

/// Why a fetch did not give the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Trying again will not help: refused by the guard, a 4xx, too large.
    Refused(String),
    /// It may work later: unreachable, a 5xx, a timeout.
    Failed(String),
}

/// An IPv4 address inside IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is an ordinary address of the internet: not loopback, private, link-local,
/// shared (carrier NAT), documentation, benchmarking, multicast, reserved or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)) // documentation
        }
    }
}

impl FetchPolicy {
    fn admits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|n| n.contains(ip))
    }

    /// The addresses `url`'s host resolves to, all of them admitted.
    async fn addresses(&self, url: &reqwest::Url) -> Result<Vec<SocketAddr>, FetchError> {
        let shown = shown_url(url.as_str());
        let host = url
            .host_str()
            .ok_or_else(|| FetchError::Refused(format!("{shown} names no host")))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| FetchError::Refused(format!("{shown} has no port")))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            // A resolver that does not answer must not hold a request for long.
            Err(_) => tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port)))
                .await
                .map_err(|_| FetchError::Failed(format!("cannot resolve {host}: timed out")))?
                .map_err(|e| FetchError::Failed(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(FetchError::Failed(format!("{host} resolves to no address")));
        }
        if let Some(refused) = addrs.iter().find(|a| !self.admits(a.ip())) {
            return Err(FetchError::Refused(format!(
                "{shown} resolves to {}, a private or local address; the server reaches \
                 only public addresses unless {} names the network",
                refused.ip(),
                self.allow_flag
            )));
        }
        Ok(addrs)
    }

    /// A client that reaches `url`'s host only at its checked addresses, not following
    /// redirects itself (each target is checked again by the caller's loop).
    async fn client_for(&self, url: &reqwest::Url) -> Result<reqwest::Client, FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Refused(format!(
                "{} is not an http or https URL",
                shown_url(url.as_str())
            )));
        }
        let addrs = self.addresses(url).await?;
        let host = url.host_str().unwrap_or_default().to_owned();
        // No proxy from the environment: it would resolve the host itself, past the check.
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .resolve_to_addrs(&host, &addrs)
            .timeout(self.timeout)
            .build()
            .map_err(|e| FetchError::Failed(format!("cannot build an HTTP client: {e}")))
    }

    /// Whether `url` may be reached at all (its scheme, and every address its host resolves
    /// to), without sending anything: for checking a URL when it is saved.
    pub async fn check(&self, url: &str) -> Result<(), FetchError> {
        let url = parse_url(url)?;
        self.client_for(&url).await.map(drop)
    }

    /// The body at `url` (at most `max_bytes`), following up to five redirects, each checked
    /// like the first.
    pub async fn get(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
        let mut url = parse_url(url)?;
        for _ in 0..=MAX_REDIRECTS {
            let client = self.client_for(&url).await?;
            let shown = shown_url(url.as_str());
            let response = client.get(url.clone()).send().await.map_err(|e| {
                FetchError::Failed(format!("could not fetch {shown}: {}", plain(e)))
            })?;
            let status = response.status();
            if status.is_redirection() {
                url = redirect_target(&url, &response)?;
                continue;
            }
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Err(FetchError::Failed(format!("{shown} answered {status}")));
            }
            if !status.is_success() {
                return Err(FetchError::Refused(format!("{shown} answered {status}")));
            }
            return body(response, &shown, max_bytes).await;
        }
        Err(too_many_redirects(&url))
    }

    /// POSTs `body` with `headers` to `url` and gives back the answer, whatever its status,
    /// with the start of its body (`keep` bytes). Only 307 and 308 redirects are followed
    /// (they keep the method and body), each target checked like the first.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        keep: usize,
    ) -> Result<Posted, FetchError> {
        let mut url = parse_url(url)?;
        for _ in 0..=MAX_REDIRECTS {
            let client = self.client_for(&url).await?;
            let mut request = client.post(url.clone()).body(body.to_vec());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let shown = shown_url(url.as_str());
            let response = request.send().await.map_err(|e| {
                FetchError::Failed(format!("could not post to {shown}: {}", plain(e)))
            })?;
            let status = response.status();
            if matches!(status.as_u16(), 307 | 308) {
                url = redirect_target(&url, &response)?;
                continue;
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Ok(Posted {
                status: status.as_u16(),
                retry_after,
                body: snippet(response, keep).await,
            });
        }
        Err(too_many_redirects(&url))
    }
}

/// A receiver's answer to a POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The start of the body, as text (invalid UTF-8 replaced).
    pub body: String,
}

fn parse_url(url: &str) -> Result<reqwest::Url, FetchError> {
    reqwest::Url::parse(url)
        .map_err(|e| FetchError::Refused(format!("{} is not a URL: {e}", shown_url(url))))
}

fn redirect_target(
    from: &reqwest::Url,
    response: &reqwest::Response,
) -> Result<reqwest::Url, FetchError> {
    let shown = shown_url(from.as_str());
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| FetchError::Refused(format!("{shown} redirected without a Location")))?;
    from.join(location)
        .map_err(|e| FetchError::Refused(format!("{shown} redirected to an invalid URL: {e}")))
}

fn too_many_redirects(url: &reqwest::Url) -> FetchError {
    FetchError::Refused(format!(
        "more than {MAX_REDIRECTS} redirects from {}",
        shown_url(url.as_str())
    ))
}

/// The first `keep` bytes of an answer's body; an answer that breaks off keeps what came.
async fn snippet(mut response: reqwest::Response, keep: usize) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < keep {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(keep);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A response's body, up to `limit` bytes.
async fn body(
    mut response: reqwest::Response,
    shown: &str,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || {
        FetchError::Refused(format!(
            "the recording at {shown} is over the {limit}-byte limit (--max-recording-bytes)"
        ))
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Failed(format!("reading {shown} failed: {}", plain(e))))?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A reqwest error without the URL it carries (it may hold a signature), with its causes.
fn plain(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn networks_parse_and_contain() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.1.1")) && !n.contains(ip("11.0.0.1")));
        let one: Network = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!(one.contains(ip("::ffff:127.0.0.1")));
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
        assert_eq!(n.to_string(), "10.0.0.0/8");
    }
}
