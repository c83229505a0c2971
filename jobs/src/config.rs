//! Configuration pieces both binaries share, read from the environment once at start-up.
//! Errors name the variable; secrets never appear in them.

use secrecy::{ExposeSecret, SecretString};
use std::str::FromStr;

/// A missing or malformed variable, by name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is required but not set")]
    Missing(&'static str),
    #[error("{name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

/// Reads variables through a lookup function, so tests never touch the process environment.
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

/// The process environment.
pub fn process_env() -> Env<impl Fn(&str) -> Option<String>> {
    Env(|k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn optional(&self, name: &'static str) -> Option<String> {
        (self.0)(name)
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    pub fn secret(&self, name: &'static str) -> Result<SecretString, ConfigError> {
        self.required(name).map(SecretString::from)
    }

    /// Parses a value; the error says what was expected but does not echo the value.
    pub fn parsed<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Malformed {
                    name,
                    reason: e.to_string(),
                }),
        }
    }
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub max_connections: u32,
    /// `DATABASE_DIRECT_URL`: a direct (or session-mode pooler) connection for migrations and
    /// LISTEN, when `url` goes through a transaction pooler.
    pub direct_url: Option<SecretString>,
    /// `url` goes through a transaction-mode pooler: see [`crate::db`] for what changes.
    pub pooler: bool,
}

impl DatabaseConfig {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let url = env.secret("DATABASE_URL")?;
        let max_connections = env.parsed("DATABASE_MAX_CONNECTIONS", 10u32)?;
        if max_connections == 0 {
            return Err(ConfigError::Malformed {
                name: "DATABASE_MAX_CONNECTIONS",
                reason: "must be at least 1".into(),
            });
        }
        let direct_url = env.optional("DATABASE_DIRECT_URL").map(SecretString::from);
        let pooler = match env.optional("DATABASE_POOLER").as_deref().map(str::trim) {
            Some("transaction") => true,
            Some("none") => false,
            Some(_) => {
                return Err(ConfigError::Malformed {
                    name: "DATABASE_POOLER",
                    reason: "expected `transaction` or `none`".into(),
                })
            }
            None => direct_url.is_some() || known_transaction_pooler(url.expose_secret()),
        };
        Ok(Self {
            url,
            max_connections,
            direct_url,
            pooler,
        })
    }
}

/// Whether `url` names a host known to be a transaction-mode pooler: Supabase's transaction
/// pooler (`*.pooler.supabase.com:6543`; its port 5432 is the session pooler) or Neon's pooled
/// endpoint (`*-pooler.*`).
pub fn known_transaction_pooler(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, "5432"));
    let host = host.to_ascii_lowercase();
    (host.ends_with(".pooler.supabase.com") && port == "6543")
        || host
            .split('.')
            .next()
            .is_some_and(|l| l.ends_with("-pooler"))
}

/// `SMTP_CA_FILE`: a PEM file of root certificates trusted for the SMTP server's TLS
/// certificate besides the built-in web roots (a relay with a private CA). Read once at
/// start-up: a file that cannot be read or holds no certificate stops the binary.
pub fn smtp_ca_file<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    const NAME: &str = "SMTP_CA_FILE";
    let Some(path) = env.optional(NAME) else {
        return Ok(None);
    };
    let pem = std::fs::read(&path).map_err(|e| ConfigError::Malformed {
        name: NAME,
        reason: format!("cannot read {path}: {e}"),
    })?;
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(BEGIN.len()).any(|w| w == BEGIN) {
        return Err(ConfigError::Malformed {
            name: NAME,
            reason: format!("{path} holds no PEM certificate"),
        });
    }
    Ok(Some(pem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env(move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn database_url_is_required_by_name() {
        assert_eq!(
            DatabaseConfig::from_env(&env(&[])).unwrap_err(),
            ConfigError::Missing("DATABASE_URL")
        );
    }

    #[test]
    fn smtp_ca_file_must_hold_a_certificate() {
        assert_eq!(smtp_ca_file(&env(&[])), Ok(None));
        let dir = std::env::temp_dir().join(format!("authsync-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let good = dir.join("good.pem");
        std::fs::write(
            &good,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for (path, want) in [
            (dir.join("missing.pem"), Err("cannot read")),
            (empty, Err("holds no PEM certificate")),
            (good, Ok(())),
        ] {
            let got = smtp_ca_file(&env(&[("SMTP_CA_FILE", path.to_str().unwrap())]));
            match (got, want) {
                (Ok(Some(_)), Ok(())) => {}
                (Err(e), Err(w)) => {
                    let e = e.to_string();
                    assert!(
                        e.starts_with("SMTP_CA_FILE is malformed") && e.contains(w),
                        "{e}"
                    );
                }
                (got, want) => panic!("{path:?}: {got:?} vs {want:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pooler_mode_is_explicit_or_follows_the_direct_url_or_a_known_pooler_host() {
        let plain = "postgres://u:p@db.example.com:5432/app";
        for (pairs, want) in [
            (vec![("DATABASE_URL", plain)], false),
            (vec![("DATABASE_URL", plain), ("DATABASE_POOLER", "transaction")], true),
            (vec![("DATABASE_URL", plain), ("DATABASE_DIRECT_URL", plain)], true),
            (
                vec![
                    ("DATABASE_URL", plain),
                    ("DATABASE_DIRECT_URL", plain),
                    ("DATABASE_POOLER", "none"),
                ],
                false,
            ),
            (
                vec![(
                    "DATABASE_URL",
                    "postgres://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
                )],
                true,
            ),
            (
                vec![(
                    "DATABASE_URL",
                    "postgres://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres",
                )],
                false,
            ),
            (
                vec![(
                    "DATABASE_URL",
                    "postgres://u:p@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require",
                )],
                true,
            ),
            (
                vec![("DATABASE_URL", "postgres://u:p@ep-cool-darkness-123456.us-east-2.aws.neon.tech/neondb")],
                false,
            ),
        ] {
            let got = DatabaseConfig::from_env(&env(&pairs)).unwrap();
            assert_eq!(got.pooler, want, "{pairs:?}");
        }
        let e = DatabaseConfig::from_env(&env(&[
            ("DATABASE_URL", plain),
            ("DATABASE_POOLER", "session"),
        ]))
        .unwrap_err();
        assert!(e.to_string().starts_with("DATABASE_POOLER is malformed"));
    }

    #[test]
    fn malformed_numbers_name_the_variable() {
        let e = DatabaseConfig::from_env(&env(&[
            ("DATABASE_URL", "postgres://x"),
            ("DATABASE_MAX_CONNECTIONS", "many"),
        ]))
        .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("DATABASE_MAX_CONNECTIONS is malformed"));
    }
}
