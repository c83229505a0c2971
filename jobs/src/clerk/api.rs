//! Clerk's Backend API, the parts we call: get a user, merge public metadata, list users, the
//! instance's JWKS (and, beside it, the session JWKS at `CLERK_JWKS_URL`, to tell whether both
//! belong to one instance). Behind a trait so tests point it at a local fake server speaking the same wire format.
//! Failures are classified for the job runner: 429 carries `Retry-After`, 5xx and network
//! errors are retryable, 404 is "nothing there", other 4xx are fatal.

use crate::clerk::ids::ClerkUserId;
use crate::clerk::ClerkUser;
use crate::error::JobError;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::time::Duration;

/// Default base URL of the Backend API.
pub const DEFAULT_API_URL: &str = "https://api.clerk.com";

/// A failed Backend API call, classified.
#[derive(Debug, thiserror::Error)]
pub enum ClerkApiError {
    #[error("Clerk rate limit (429); retry after {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Clerk answered {status}: {body}")]
    Server { status: u16, body: String },
    #[error("Clerk refused the request ({status}): {body}")]
    Client { status: u16, body: String },
    #[error("Clerk could not be reached: {0}")]
    Network(String),
    #[error("Clerk's answer did not parse: {0}")]
    Decode(String),
}

impl From<ClerkApiError> for JobError {
    fn from(e: ClerkApiError) -> Self {
        match e {
            ClerkApiError::RateLimited { retry_after } => JobError::Retryable {
                source: e.into(),
                retry_after,
            },
            ClerkApiError::Server { .. } | ClerkApiError::Network(_) => JobError::Retryable {
                source: e.into(),
                retry_after: None,
            },
            ClerkApiError::Client { .. } | ClerkApiError::Decode(_) => JobError::Fatal(e.into()),
        }
    }
}

/// The calls we make. `Ok(None)` means 404: the user does not exist (any more).
pub trait ClerkApi: Send + Sync {
    fn get_user<'a>(
        &'a self,
        id: &'a ClerkUserId,
    ) -> BoxFuture<'a, Result<Option<ClerkUser>, ClerkApiError>>;
    /// `PATCH /v1/users/{id}/metadata`: Clerk merges `public_metadata` at the top level.
    fn merge_public_metadata<'a>(
        &'a self,
        id: &'a ClerkUserId,
        metadata: Value,
    ) -> BoxFuture<'a, Result<Option<()>, ClerkApiError>>;
    /// `GET /v1/users?limit=&offset=` (ordered by creation).
    fn list_users(
        &self,
        limit: u32,
        offset: u32,
    ) -> BoxFuture<'_, Result<Vec<ClerkUser>, ClerkApiError>>;
    /// `GET /v1/jwks`: the key ids of the instance the secret key belongs to.
    fn instance_key_ids(&self) -> BoxFuture<'_, Result<Vec<String>, ClerkApiError>>;
}

/// A JWKS document (`{"keys": [{"kid": …, …}]}`), as far as we read it.
#[derive(serde::Deserialize)]
struct Jwks {
    keys: Vec<JwkId>,
}

#[derive(serde::Deserialize)]
struct JwkId {
    #[serde(default)]
    kid: Option<String>,
}

fn key_ids(body: String) -> Result<Vec<String>, ClerkApiError> {
    let jwks: Jwks = decode(body)?;
    Ok(jwks.keys.into_iter().filter_map(|k| k.kid).collect())
}

/// The key ids served at a public JWKS URL (`CLERK_JWKS_URL`: the keys that sign session
/// tokens). Failures are classified as for the Backend API; a 404 is a client error here.
pub async fn session_key_ids(url: &str) -> Result<Vec<String>, ClerkApiError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent("authsync")
        .build()
        .expect("reqwest client builds");
    let resp = client.get(url).send().await.map_err(network)?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(network)?;
    match status {
        200..=299 => key_ids(body),
        429 => Err(ClerkApiError::RateLimited { retry_after: None }),
        500..=599 => Err(ClerkApiError::Server {
            status,
            body: truncate(body),
        }),
        _ => Err(ClerkApiError::Client {
            status,
            body: truncate(body),
        }),
    }
}

/// The real client: reqwest with rustls, Bearer `CLERK_SECRET_KEY`, timeouts.
pub struct HttpClerkApi {
    client: reqwest::Client,
    base: String,
    key: SecretString,
}

impl HttpClerkApi {
    pub fn new(base_url: &str, key: SecretString) -> Self {
        Self::with_timeout(base_url, key, Duration::from_secs(10))
    }

    /// As [`HttpClerkApi::new`], with a different total timeout per request.
    pub fn with_timeout(base_url: &str, key: SecretString, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .user_agent("authsync")
            .build()
            .expect("reqwest client builds");
        Self {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
            key,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Option<String>, ClerkApiError> {
        let resp = req
            .bearer_auth(self.key.expose_secret())
            .send()
            .await
            .map_err(network)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.map_err(network)?;
        match status {
            200..=299 => Ok(Some(body)),
            404 => Ok(None),
            429 => Err(ClerkApiError::RateLimited { retry_after }),
            500..=599 => Err(ClerkApiError::Server {
                status,
                body: truncate(body),
            }),
            _ => Err(ClerkApiError::Client {
                status,
                body: truncate(body),
            }),
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > 500 {
        let mut cut = 500;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// A network failure, without the URL (it adds nothing and may carry ids into logs twice).
fn network(e: reqwest::Error) -> ClerkApiError {
    ClerkApiError::Network(if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        e.without_url().to_string()
    })
}

fn decode<T: serde::de::DeserializeOwned>(body: String) -> Result<T, ClerkApiError> {
    crate::json_error::from_slice(body.as_bytes()).map_err(|e| ClerkApiError::Decode(e.to_string()))
}

impl ClerkApi for HttpClerkApi {
    fn get_user<'a>(
        &'a self,
        id: &'a ClerkUserId,
    ) -> BoxFuture<'a, Result<Option<ClerkUser>, ClerkApiError>> {
        Box::pin(async move {
            let url = format!("{}/v1/users/{}", self.base, id);
            match self.send(self.client.get(url)).await? {
                Some(body) => decode(body).map(Some),
                None => Ok(None),
            }
        })
    }

    fn merge_public_metadata<'a>(
        &'a self,
        id: &'a ClerkUserId,
        metadata: Value,
    ) -> BoxFuture<'a, Result<Option<()>, ClerkApiError>> {
        Box::pin(async move {
            let url = format!("{}/v1/users/{}/metadata", self.base, id);
            let req = self
                .client
                .patch(url)
                .json(&json!({ "public_metadata": metadata }));
            Ok(self.send(req).await?.map(|_| ()))
        })
    }

    fn list_users(
        &self,
        limit: u32,
        offset: u32,
    ) -> BoxFuture<'_, Result<Vec<ClerkUser>, ClerkApiError>> {
        Box::pin(async move {
            let url = format!(
                "{}/v1/users?limit={limit}&offset={offset}&order_by=created_at",
                self.base
            );
            match self.send(self.client.get(url)).await? {
                Some(body) => decode(body),
                None => Ok(Vec::new()),
            }
        })
    }

    fn instance_key_ids(&self) -> BoxFuture<'_, Result<Vec<String>, ClerkApiError>> {
        Box::pin(async move {
            let url = format!("{}/v1/jwks", self.base);
            match self.send(self.client.get(url)).await? {
                Some(body) => key_ids(body),
                // Every instance has keys: a 404 means this is not the Backend API we expect.
                None => Err(ClerkApiError::Client {
                    status: 404,
                    body: "GET /v1/jwks: not found".into(),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_for_the_runner() {
        let ra = Some(Duration::from_secs(7));
        match JobError::from(ClerkApiError::RateLimited { retry_after: ra }) {
            JobError::Retryable { retry_after, .. } => assert_eq!(retry_after, ra),
            e => panic!("{e}"),
        }
        assert!(JobError::from(ClerkApiError::Server {
            status: 502,
            body: String::new()
        })
        .is_retryable());
        assert!(JobError::from(ClerkApiError::Network("x".into())).is_retryable());
        assert!(!JobError::from(ClerkApiError::Client {
            status: 422,
            body: String::new()
        })
        .is_retryable());
        assert!(!JobError::from(ClerkApiError::Decode("x".into())).is_retryable());
    }

    #[test]
    fn key_ids_are_read_from_a_jwks_document() {
        let body = r#"{"keys":[{"kid":"ins_a","kty":"RSA","n":"x","e":"AQAB"},{"kty":"RSA"}]}"#;
        assert_eq!(key_ids(body.into()).unwrap(), ["ins_a"]);
        assert!(key_ids(r#"{"nope":1}"#.into()).is_err());
    }
}
