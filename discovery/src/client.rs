//! [`Consul`]: a typed client of the local agent's HTTP API, for the few calls Courier makes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use courier_config::ConsulSettings;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::registration::go_duration;
use crate::wire::HealthEntry;
use crate::{DiscoveryError, Instance, Registration};

/// The header Consul reads the ACL token from.
const TOKEN_HEADER: &str = "X-Consul-Token";
/// The header carrying a blocking query's index.
const INDEX_HEADER: &str = "X-Consul-Index";
/// How much of an error body to keep: Consul's reasons are one line.
const MAX_ERROR_BODY: usize = 1024;

/// The status of a check, spelled as Consul spells it (`"passing"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Healthy.
    Passing,
    /// Degraded: `?passing=true` leaves the instance out, as it does a critical one.
    Warning,
    /// Failing (or never yet passed).
    Critical,
}

/// A client of one Consul agent. Cheap to clone (one shared connection pool); its `Debug`
/// shows whether a token is set, never the token.
#[derive(Clone)]
pub struct Consul {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
    has_token: bool,
}

impl fmt::Debug for Consul {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consul")
            .field("base", &self.base.as_str())
            .field("timeout", &self.timeout)
            .field("token", &if self.has_token { "***" } else { "none" })
            .finish()
    }
}

impl Consul {
    /// A client of the agent at `settings.base_url()`, sending `settings.token` (when not
    /// empty) and giving up on a call after `settings.timeout` (plus its wait, for a blocking
    /// query). Proxy variables are ignored: the agent is local, and a proxy would cut blocking
    /// queries short.
    pub fn new(settings: &ConsulSettings) -> Result<Self, DiscoveryError> {
        let base = parse_base(&settings.base_url())?;
        let mut headers = HeaderMap::new();
        let token = settings.token.expose();
        if !token.is_empty() {
            let mut value = HeaderValue::from_str(token).map_err(|_| {
                DiscoveryError::InvalidConfig("consul.token is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            headers.insert(TOKEN_HEADER, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(settings.timeout)
            .no_proxy()
            .build()
            .map_err(|e| DiscoveryError::InvalidConfig(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            timeout: settings.timeout,
            has_token: !token.is_empty(),
        })
    }

    /// The agent's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// Registers (or replaces) a service instance with the local agent, which keeps it in the
    /// catalog and runs its checks. Checks the registration no longer names are removed.
    ///
    /// The agent answers before it has synced the instance to the catalog (which
    /// [`Consul::healthy`] reads); the sync follows within milliseconds on a healthy cluster.
    pub async fn register(&self, registration: &Registration) -> Result<(), DiscoveryError> {
        let what = format!("register service {}", registration.id);
        let mut url = self.url(&["v1", "agent", "service", "register"]);
        url.query_pairs_mut()
            .append_pair("replace-existing-checks", "true");
        let request = self.http.put(url).json(registration);
        self.send(&what, request, self.timeout).await.map(drop)
    }

    /// Removes a service instance and its checks from the local agent. Consul 1.8 answers 200
    /// for an id it does not know, so this is idempotent.
    pub async fn deregister(&self, service_id: &str) -> Result<(), DiscoveryError> {
        let what = format!("deregister service {service_id}");
        let url = self.url(&["v1", "agent", "service", "deregister", service_id]);
        self.send(&what, self.http.put(url), self.timeout)
            .await
            .map(drop)
    }

    /// Sets a TTL check's status, which holds for its TTL. A change of status reaches the
    /// catalog at once; a new `output` alone waits for the agent's `check_update_interval`
    /// (5 min). An unknown check id is a [`DiscoveryError::Status`] 500 (`CheckID "x" does not
    /// have associated TTL`).
    pub async fn update_ttl(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), DiscoveryError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Update<'a> {
            status: CheckStatus,
            output: &'a str,
        }
        let what = format!("update TTL check {check_id}");
        let url = self.url(&["v1", "agent", "check", "update", check_id]);
        let request = self.http.put(url).json(&Update { status, output });
        self.send(&what, request, self.timeout).await.map(drop)
    }

    /// The instances of `service` whose checks all pass, with the catalog's `X-Consul-Index`.
    /// With `index`, a blocking query: Consul answers once its index moves past `index` (which
    /// can happen with no visible change: its indexes are coarse), or after about `wait` (plus
    /// up to `wait/16` of jitter) with the same index. Without `index`, or with a zero `wait`
    /// (which Consul would read as its 5 min default), it answers at once.
    pub async fn healthy(
        &self,
        service: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<(u64, Vec<Instance>), DiscoveryError> {
        let what = format!("healthy instances of {service}");
        let mut url = self.url(&["v1", "health", "service", service]);
        let mut timeout = self.timeout;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("passing", "true");
            if let (Some(index), false) = (index, wait.is_zero()) {
                query.append_pair("index", &index.to_string());
                query.append_pair("wait", &go_duration(wait));
                timeout += wait + wait / 16;
            }
        }
        let response = self.send(&what, self.http.get(url), timeout).await?;
        let index = consul_index(&what, &response)?;
        let entries: Vec<HealthEntry> = self.decode(&what, response, timeout).await?;
        Ok((index, entries.into_iter().map(Instance::from).collect()))
    }

    /// Every service the catalog knows, with the union of its instances' tags, and the
    /// catalog's `X-Consul-Index`. With `index`, a blocking query, as for [`Consul::healthy`].
    pub async fn services(
        &self,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<(u64, BTreeMap<String, Vec<String>>), DiscoveryError> {
        let what = "catalog services";
        let mut url = self.url(&["v1", "catalog", "services"]);
        let mut timeout = self.timeout;
        if let (Some(index), false) = (index, wait.is_zero()) {
            url.query_pairs_mut()
                .append_pair("index", &index.to_string())
                .append_pair("wait", &go_duration(wait));
            timeout += wait + wait / 16;
        }
        let response = self.send(what, self.http.get(url), timeout).await?;
        let index = consul_index(what, &response)?;
        let services = self.decode(what, response, timeout).await?;
        Ok((index, services))
    }

    /// The checks the local agent runs for one service instance, sorted by check id.
    pub async fn checks(
        &self,
        service_id: &str,
    ) -> Result<Vec<(String, CheckStatus)>, DiscoveryError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct AgentCheck {
            status: CheckStatus,
            #[serde(rename = "ServiceID")]
            service_id: String,
        }
        let what = format!("checks of service {service_id}");
        let url = self.url(&["v1", "agent", "checks"]);
        let response = self.send(&what, self.http.get(url), self.timeout).await?;
        let all: BTreeMap<String, AgentCheck> = self.decode(&what, response, self.timeout).await?;
        let mine = all
            .into_iter()
            .filter(|(_, check)| check.service_id == service_id);
        Ok(mine.map(|(id, check)| (id, check.status)).collect())
    }

    /// Whether the agent answers and knows a leader (`GET /v1/status/leader` is non-empty).
    pub async fn leader_ok(&self) -> bool {
        let what = "leader status";
        let url = self.url(&["v1", "status", "leader"]);
        let Ok(response) = self.send(what, self.http.get(url), self.timeout).await else {
            return false;
        };
        let leader: Result<String, _> = self.decode(what, response, self.timeout).await;
        leader.is_ok_and(|leader| !leader.is_empty())
    }

    /// The base URL with `segments` appended, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // Invariant: `parse_base` refused URLs that cannot be a base.
        url.path_segments_mut()
            .expect("the base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Sends `request` under `timeout`; a non-2xx answer becomes an error.
    async fn send(
        &self,
        what: &str,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<Response, DiscoveryError> {
        let response = request.timeout(timeout).send().await;
        let response = response.map_err(|e| self.transport(what, timeout, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let body = truncate(body.trim(), MAX_ERROR_BODY);
        let what = what.to_owned();
        Err(match status {
            StatusCode::FORBIDDEN => DiscoveryError::Forbidden { what, reason: body },
            _ => DiscoveryError::Status {
                what,
                code: status.as_u16(),
                body,
            },
        })
    }

    /// Reads and decodes a JSON body.
    async fn decode<T: DeserializeOwned>(
        &self,
        what: &str,
        response: Response,
        timeout: Duration,
    ) -> Result<T, DiscoveryError> {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport(what, timeout, e))?;
        serde_json::from_slice(&bytes).map_err(|e| DiscoveryError::Decode {
            what: what.to_owned(),
            source: Box::new(e),
        })
    }

    fn transport(&self, what: &str, after: Duration, error: reqwest::Error) -> DiscoveryError {
        if error.is_timeout() {
            DiscoveryError::TimedOut {
                what: what.to_owned(),
                after,
            }
        } else {
            DiscoveryError::Unreachable {
                addr: self.base.to_string(),
                source: error,
            }
        }
    }
}

fn parse_base(addr: &str) -> Result<Url, DiscoveryError> {
    let invalid =
        |why: String| DiscoveryError::InvalidConfig(format!("consul.addr {addr:?}: {why}"));
    let url = Url::parse(addr).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        _ if url.cannot_be_a_base() => Err(invalid("is not a base URL".into())),
        "http" => Ok(url),
        // reqwest is built without a TLS backend: the agent is local and speaks plain HTTP.
        "https" => Err(invalid(
            "https is not supported; use the local agent's http port".into(),
        )),
        other => Err(invalid(format!("scheme {other} is not http"))),
    }
}

fn consul_index(what: &str, response: &Response) -> Result<u64, DiscoveryError> {
    let header = response.headers().get(INDEX_HEADER);
    let parsed = header
        .and_then(|v| v.to_str().ok())
        .map(|v| v.parse::<u64>());
    match parsed {
        Some(Ok(index)) => Ok(index),
        Some(Err(e)) => Err(DiscoveryError::Decode {
            what: what.to_owned(),
            source: Box::new(e),
        }),
        None => Err(DiscoveryError::Decode {
            what: what.to_owned(),
            source: format!("no valid {INDEX_HEADER} header").into(),
        }),
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_config::Secret;

    #[test]
    fn debug_never_shows_the_token() {
        let settings = ConsulSettings {
            token: Secret::new("hunter2"),
            ..Default::default()
        };
        let consul = Consul::new(&settings).expect("default settings make a client");
        let shown = format!("{consul:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn a_bare_host_and_port_is_http() {
        let settings = ConsulSettings {
            addr: "127.0.0.1:8500".into(),
            ..Default::default()
        };
        let consul = Consul::new(&settings).expect("host:port makes a client");
        assert_eq!(consul.base_url(), "http://127.0.0.1:8500/");
    }

    #[test]
    fn https_and_bad_tokens_are_invalid_config() {
        let https = ConsulSettings {
            addr: "https://consul:8501".into(),
            ..Default::default()
        };
        let bad_token = ConsulSettings {
            token: Secret::new("a\nb"),
            ..Default::default()
        };
        for settings in [https, bad_token] {
            let error = Consul::new(&settings).expect_err("refused");
            assert!(
                matches!(error, DiscoveryError::InvalidConfig(_)),
                "{error:?}"
            );
        }
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let consul = Consul::new(&ConsulSettings::default()).expect("default settings are valid");
        let url = consul.url(&["v1", "agent", "service", "deregister", "a b/c"]);
        assert_eq!(url.path(), "/v1/agent/service/deregister/a%20b%2Fc");
    }
}
