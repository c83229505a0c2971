//! Configuration pieces both binaries share, read from the environment once at start-up.
//! Errors name the variable; secrets never appear in them.

use secrecy::SecretString;
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
        Ok(Self {
            url,
            max_connections,
        })
    }
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
