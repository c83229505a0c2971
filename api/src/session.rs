//! Networkless session-token verification: Clerk's RS256 session JWT from `Authorization:
//! Bearer` or the `__session` cookie, checked against keys from `CLERK_JWKS_URL`.
//!
//! Keys are fresh for five minutes. After that a request still uses the cached keys at once
//! while one refresh runs in the background, so a slow or hung JWKS URL never delays a
//! signed-in user; the fetch itself gives up after two seconds. A `kid` we do not know causes
//! one refetch that the request waits for — single-flight and at most every ten seconds, so a
//! flood of bad tokens cannot become a flood of JWKS requests. A failed fetch keeps the keys we
//! have and is not retried for ten seconds.

use crate::error::{ApiError, Code};
use jobs::clerk::ids::ClerkUserId;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Algorithm, DecodingKey, Validation};
use poem::http::HeaderMap;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, RwLock};

/// Keys older than this are refreshed (in the background; they stay in use meanwhile).
pub const KEY_TTL: Duration = Duration::from_secs(300);
/// An unknown `kid`, or a failed fetch, allows another fetch only after this interval.
/// Longest time keys are served stale while `CLERK_JWKS_URL` fails to answer: a key Clerk
/// rotated out must not verify tokens for ever. Past it, requests wait for a fetch and get a
/// 503 when it fails.
pub const MAX_STALE: Duration = Duration::from_secs(3600);
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// A JWKS fetch (connect and answer) that takes longer fails.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub jwks_url: String,
    pub issuer: String,
    /// When non-empty, `azp` must be present and one of these.
    pub authorized_parties: Vec<String>,
    /// How long fetched keys count as fresh ([`KEY_TTL`]; tests set it short).
    pub key_ttl: Duration,
}

/// A verified session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: ClerkUserId,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    iat: Option<u64>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    last_unknown_kid_fetch: Option<Instant>,
    last_failure: Option<Instant>,
}

impl Keys {
    fn fresh(&self, ttl: Duration) -> bool {
        self.fetched_at.is_some_and(|t| t.elapsed() < ttl)
    }

    fn failed_recently(&self) -> bool {
        self.last_failure
            .is_some_and(|t| t.elapsed() < MIN_REFETCH_INTERVAL)
    }
}

pub struct SessionVerifier {
    shared: Arc<Shared>,
}

/// What the background refresh needs too.
struct Shared {
    config: SessionConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// Held by whoever fetches: at most one JWKS request at a time.
    fetching: Arc<Mutex<()>>,
}

impl SessionVerifier {
    pub fn new(config: SessionConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .build()
            .expect("reqwest client builds");
        Self {
            shared: Arc::new(Shared {
                config,
                http,
                keys: RwLock::new(Keys::default()),
                fetching: Arc::new(Mutex::new(())),
            }),
        }
    }

    /// The token from `Authorization: Bearer …`, else (no `Authorization` header at all) from
    /// the `__session` cookie. An `Authorization` header that is not a bearer token in text
    /// yields none: never the cookie, which the cross-site check treats differently.
    pub fn token(headers: &HeaderMap) -> Option<String> {
        if let Some(auth) = headers.get("authorization") {
            let (scheme, rest) = auth.to_str().ok()?.split_once(' ')?;
            return scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned());
        }
        headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == "__session")
            .map(|(_, v)| v.to_owned())
    }

    /// Verifies the request's token.
    pub async fn verify_request(&self, headers: &HeaderMap) -> Result<Session, ApiError> {
        let token = Self::token(headers).ok_or(ApiError::Unauthenticated(
            Code::MissingToken,
            "no session token: send Authorization: Bearer <token> or the __session cookie",
        ))?;
        self.verify(&token).await
    }

    pub async fn verify(&self, token: &str) -> Result<Session, ApiError> {
        let bad = |m: &'static str| ApiError::Unauthenticated(Code::InvalidToken, m);
        let header = decode_header(token).map_err(|_| bad("the session token is malformed"))?;
        if header.alg != Algorithm::RS256 {
            return Err(bad("the session token must be signed with RS256"));
        }
        let kid = header.kid.ok_or(bad("the session token has no key id"))?;
        let key = self.key(&kid).await?;

        let mut v = Validation::new(Algorithm::RS256);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.validate_aud = false;
        v.set_issuer(&[&self.shared.config.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = decode::<Claims>(token, &key, &v)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    ApiError::Unauthenticated(Code::TokenExpired, "the session token has expired")
                }
                ErrorKind::ImmatureSignature => ApiError::Unauthenticated(
                    Code::TokenNotYetValid,
                    "the session token is not valid yet",
                ),
                ErrorKind::InvalidIssuer => ApiError::Unauthenticated(
                    Code::WrongIssuer,
                    "the session token was issued by another Clerk instance",
                ),
                ErrorKind::InvalidSignature => bad("the session token's signature does not verify"),
                ErrorKind::MissingRequiredClaim(_) => {
                    bad("the session token lacks a required claim")
                }
                _ => bad("the session token is invalid"),
            })?
            .claims;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if claims.iat.is_some_and(|iat| iat > now + LEEWAY_SECS) {
            return Err(ApiError::Unauthenticated(
                Code::TokenNotYetValid,
                "the session token was issued in the future",
            ));
        }
        let parties = &self.shared.config.authorized_parties;
        if !parties.is_empty() {
            match &claims.azp {
                Some(azp) if parties.iter().any(|p| p == azp) => {}
                Some(_) => {
                    return Err(ApiError::Unauthenticated(
                        Code::UnauthorizedParty,
                        "the session token was issued for another origin",
                    ))
                }
                None => {
                    return Err(ApiError::Unauthenticated(
                        Code::UnauthorizedParty,
                        "the session token names no authorized party",
                    ))
                }
            }
        }
        let user_id = ClerkUserId::parse(&claims.sub)
            .map_err(|_| bad("the session token's subject is not a Clerk user id"))?;
        Ok(Session { user_id })
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        let shared = &self.shared;
        {
            let keys = shared.keys.read().await;
            if let Some(k) = keys.by_kid.get(kid) {
                if keys.fresh(shared.config.key_ttl) {
                    return Ok(k.clone());
                }
                if keys.fresh(shared.config.key_ttl + MAX_STALE) {
                    self.refresh_in_background();
                    return Ok(k.clone());
                }
            }
        }
        {
            // Single flight: whoever waited here re-checks what the previous holder fetched.
            let _one = shared.fetching.lock().await;
            let (fresh, has, unknown_recent, failed_recent) = {
                let k = shared.keys.read().await;
                (
                    k.fresh(shared.config.key_ttl),
                    k.by_kid.contains_key(kid),
                    k.last_unknown_kid_fetch
                        .is_some_and(|t| t.elapsed() < MIN_REFETCH_INTERVAL),
                    k.failed_recently(),
                )
            };
            if !failed_recent && (!fresh || (!has && !unknown_recent)) {
                if fresh {
                    shared.keys.write().await.last_unknown_kid_fetch = Some(Instant::now());
                }
                shared.fetch_into().await;
            }
        }
        let keys = shared.keys.read().await;
        match keys.by_kid.get(kid) {
            Some(_) if !keys.fresh(shared.config.key_ttl + MAX_STALE) => {
                Err(ApiError::Unavailable(anyhow::anyhow!(
                    "signing keys are over an hour out of date and CLERK_JWKS_URL does not answer"
                )))
            }
            Some(k) => Ok(k.clone()),
            None if keys.fetched_at.is_none() => Err(ApiError::Unavailable(anyhow::anyhow!(
                "signing keys could not be fetched from CLERK_JWKS_URL"
            ))),
            None => Err(ApiError::Unauthenticated(
                Code::UnknownKey,
                "the session token was signed by a key this instance does not publish",
            )),
        }
    }

    /// Starts one refresh of stale keys unless one is running or the last attempt failed
    /// recently; the caller goes on with the keys it has.
    fn refresh_in_background(&self) {
        let Ok(one) = self.shared.fetching.clone().try_lock_owned() else {
            return;
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _one = one;
            let skip = {
                let k = shared.keys.read().await;
                k.fresh(shared.config.key_ttl) || k.failed_recently()
            };
            if !skip {
                shared.fetch_into().await;
            }
        });
    }
}

impl Shared {
    /// Fetches the key set; on failure keeps serving the keys we have (a JWKS hiccup must not
    /// log everybody out) and waits a while before trying again.
    async fn fetch_into(&self) {
        match self.fetch().await {
            Ok(by_kid) => {
                let mut keys = self.keys.write().await;
                keys.by_kid = by_kid;
                keys.fetched_at = Some(Instant::now());
                keys.last_failure = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching the JWKS failed");
                self.keys.write().await.last_failure = Some(Instant::now());
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, DecodingKey>> {
        let set: JwkSet = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut out = HashMap::new();
        for jwk in &set.keys {
            if let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) {
                out.insert(kid.clone(), key);
            }
        }
        tracing::info!(keys = out.len(), "JWKS fetched");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_bearer_or_the_session_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(SessionVerifier::token(&h), None);
        h.insert("cookie", "a=b; __session=tok1; c=d".parse().unwrap());
        assert_eq!(SessionVerifier::token(&h).as_deref(), Some("tok1"));
        h.insert("authorization", "Bearer tok2".parse().unwrap());
        assert_eq!(SessionVerifier::token(&h).as_deref(), Some("tok2"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(SessionVerifier::token(&h), None);
        // Not text: still an Authorization header, so never the cookie beside it.
        h.insert(
            "authorization",
            poem::http::HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(SessionVerifier::token(&h), None);
    }
}
