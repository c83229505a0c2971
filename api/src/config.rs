//! The api's configuration, read once from the environment.

use crate::session::SessionConfig;
use crate::verify::WebhookVerifier;
use jobs::config::{ConfigError, DatabaseConfig, Env};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Largest webhook body we accept. Clerk's user objects are a few KiB; 512 KiB leaves room.
pub const DEFAULT_BODY_LIMIT: usize = 512 * 1024;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub database: DatabaseConfig,
    /// Where to listen (`BIND_ADDR`, default 0.0.0.0; `PORT`, default 8080; port 0 in tests).
    pub listen: SocketAddr,
    pub verifier: Arc<WebhookVerifier>,
    pub body_limit: usize,
    /// Session-token verification (CLERK_JWKS_URL + CLERK_ISSUER, CLERK_AUTHORIZED_PARTIES).
    pub session: Option<SessionConfig>,
    /// CLERK_SECRET_KEY is set: the workers can fetch users, so the fallback may enqueue.
    pub clerk_api_enabled: bool,
    /// `ADMIN_TOKEN`: bearer token for the operator routes.
    pub admin_token: Option<secrecy::SecretString>,
    /// `WEBHOOK_IP_ALLOWLIST` and `TRUSTED_PROXIES`.
    pub ip_filter: crate::ip_filter::IpFilter,
    /// Where the setup page goes on success (`SETUP_REDIRECT_URL`) and home (`SETUP_HOME_URL`).
    pub setup: crate::routes::setup::SetupPage,
    /// Open long-polls allowed per user and per process (fixed; tests lower them).
    pub wait_limits: crate::job_events::WaitLimits,
    /// `HTTP_HEADER_TIMEOUT_SECS` (default 10), `HTTP_KEEP_ALIVE_SECS` (default 75) and
    /// `HTTP_REQUEST_TIMEOUT_SECS` (default 30).
    pub timeouts: crate::server::Timeouts,
    /// `/readyz` answers `503 pool_saturated` once the routes' pool has been saturated this
    /// long (fixed at [`jobs::telemetry::POOL_SATURATED_AFTER`]; tests lower it).
    pub pool_saturated_after: std::time::Duration,
    /// `CORS_ALLOWED_ORIGINS`: origins whose pages may call `/v1/*` (none by default).
    pub cors_allowed_origins: crate::cors::AllowedOrigins,
}

/// A whole number of seconds, at least 1.
fn seconds<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    name: &'static str,
    default: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    match env.parsed(name, default.as_secs())? {
        0 => Err(ConfigError::Malformed {
            name,
            reason: "must be at least 1".into(),
        }),
        n => Ok(std::time::Duration::from_secs(n)),
    }
}

impl ApiConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let database = DatabaseConfig::from_env(env)?;
        let port: u16 = env.parsed("PORT", 8080)?;
        let ip: IpAddr = env.parsed("BIND_ADDR", IpAddr::from([0, 0, 0, 0]))?;
        let verifier = WebhookVerifier::from_secrets(&env.required("CLERK_WEBHOOK_SECRET")?)?;
        let body_limit = env.parsed("WEBHOOK_BODY_LIMIT", DEFAULT_BODY_LIMIT)?;
        let session = match (env.optional("CLERK_JWKS_URL"), env.optional("CLERK_ISSUER")) {
            (Some(jwks_url), Some(issuer)) => Some(SessionConfig {
                jwks_url,
                issuer,
                authorized_parties: env
                    .optional("CLERK_AUTHORIZED_PARTIES")
                    .map(|v| {
                        v.split([',', ' '])
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                key_ttl: crate::session::KEY_TTL,
            }),
            (Some(_), None) => return Err(ConfigError::Missing("CLERK_ISSUER")),
            (None, Some(_)) => return Err(ConfigError::Missing("CLERK_JWKS_URL")),
            (None, None) => None,
        };
        let default_timeouts = crate::server::Timeouts::default();
        let timeouts = crate::server::Timeouts {
            header_read: seconds(
                env,
                "HTTP_HEADER_TIMEOUT_SECS",
                default_timeouts.header_read,
            )?,
            keep_alive: seconds(env, "HTTP_KEEP_ALIVE_SECS", default_timeouts.keep_alive)?,
            request: seconds(env, "HTTP_REQUEST_TIMEOUT_SECS", default_timeouts.request)?,
        };
        Ok(Self {
            cors_allowed_origins: env
                .optional("CORS_ALLOWED_ORIGINS")
                .map(|v| crate::cors::AllowedOrigins::parse("CORS_ALLOWED_ORIGINS", &v))
                .transpose()?
                .unwrap_or_default(),
            pool_saturated_after: jobs::telemetry::POOL_SATURATED_AFTER,
            wait_limits: Default::default(),
            timeouts,
            session,
            clerk_api_enabled: env.optional("CLERK_SECRET_KEY").is_some(),
            admin_token: env.optional("ADMIN_TOKEN").map(secrecy::SecretString::from),
            ip_filter: crate::ip_filter::IpFilter {
                allow: env
                    .optional("WEBHOOK_IP_ALLOWLIST")
                    .map(|v| crate::ip_filter::parse_cidrs("WEBHOOK_IP_ALLOWLIST", &v))
                    .transpose()?
                    .unwrap_or_default(),
                trusted_proxies: env
                    .optional("TRUSTED_PROXIES")
                    .map(|v| crate::ip_filter::parse_cidrs("TRUSTED_PROXIES", &v))
                    .transpose()?
                    .unwrap_or_default(),
            },
            setup: crate::routes::setup::SetupPage {
                redirect_url: env
                    .optional("SETUP_REDIRECT_URL")
                    .unwrap_or_else(|| "/".into()),
                home_url: env.optional("SETUP_HOME_URL").unwrap_or_else(|| "/".into()),
            },
            database,
            listen: SocketAddr::new(ip, port),
            verifier: Arc::new(verifier),
            body_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env(move |k: &str| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn bad_configuration_names_the_variable() {
        let db = ("DATABASE_URL", "postgres://x");
        let secret = (
            "CLERK_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "DATABASE_URL is required"),
            (&[db], "CLERK_WEBHOOK_SECRET is required"),
            (
                &[db, ("CLERK_WEBHOOK_SECRET", "secret")],
                "CLERK_WEBHOOK_SECRET is malformed",
            ),
            (&[db, ("PORT", "http")], "PORT is malformed"),
            (&[db, ("PORT", "70000")], "PORT is malformed"),
            (&[db, ("BIND_ADDR", "everywhere")], "BIND_ADDR is malformed"),
            (
                &[db, secret, ("HTTP_HEADER_TIMEOUT_SECS", "0")],
                "HTTP_HEADER_TIMEOUT_SECS is malformed",
            ),
            (
                &[db, secret, ("HTTP_KEEP_ALIVE_SECS", "a minute")],
                "HTTP_KEEP_ALIVE_SECS is malformed",
            ),
            (
                &[db, secret, ("CORS_ALLOWED_ORIGINS", "*")],
                "CORS_ALLOWED_ORIGINS is malformed",
            ),
        ];
        for (pairs, want) in cases {
            let err = ApiConfig::from_env(&env(pairs)).unwrap_err().to_string();
            assert!(err.starts_with(want), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let err = ApiConfig::from_env(&env(&[
            ("DATABASE_URL", "postgres://u:topsecret@h/db"),
            ("CLERK_WEBHOOK_SECRET", "whsec_notbase64!!"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            !err.contains("topsecret") && !err.contains("notbase64"),
            "{err}"
        );
    }

    #[test]
    fn defaults_listen_on_8080() {
        let c = ApiConfig::from_env(&env(&[
            ("DATABASE_URL", "postgres://x"),
            (
                "CLERK_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ]))
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.timeouts.header_read.as_secs(), 10);
        assert_eq!(c.timeouts.keep_alive.as_secs(), 75);
    }
}
