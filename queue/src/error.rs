//! How a job says it failed: [`JobError::Retryable`] backs off and runs again,
//! [`JobError::Fatal`] stops at once and waits for an operator.

use std::time::Duration;

/// A job's failure, classified. "Already done" is never an error.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("retryable: {source:#}")]
    Retryable {
        source: anyhow::Error,
        /// A server-imposed earliest retry (e.g. `Retry-After`), overriding the backoff.
        retry_after: Option<Duration>,
    },
    #[error("fatal: {0:#}")]
    Fatal(anyhow::Error),
}

impl JobError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, JobError::Retryable { .. })
    }

    /// An attempt that ran past its job's [`crate::Job::DEADLINE`]: abandoned, retried.
    pub fn deadline_exceeded(deadline: Duration) -> Self {
        JobError::Retryable {
            source: DeadlineExceeded(deadline).into(),
            retry_after: None,
        }
    }
}

/// The text an operator sees for an abandoned attempt, e.g. "deadline of 60 s exceeded".
#[derive(Debug, thiserror::Error)]
#[error("deadline of {} exceeded; the attempt was abandoned", human(*.0))]
pub struct DeadlineExceeded(pub Duration);

/// Whole seconds as "60 s", shorter ones as "250 ms".
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Keeps call sites honest about which failures are worth retrying.
pub trait ResultExt<T> {
    /// A transient failure: network, 5xx, lock timeouts.
    fn retryable(self) -> Result<T, JobError>;
    /// A failure that will not change by trying again: invalid data, 4xx.
    fn fatal(self) -> Result<T, JobError>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::Retryable {
            source: e.into(),
            retry_after: None,
        })
    }
    fn fatal(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::Fatal(e.into()))
    }
}

/// Database errors are retryable unless Postgres says the data itself is wrong
/// (class 22, data exception; class 23 other than unique violations, which a retry resolves
/// once the competing transaction has committed). A lock or statement timeout (55P03, 57014)
/// is retryable and says so in words, not only as Postgres' "canceling statement".
impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(what) = crate::db::timed_out(&e) {
            return JobError::Retryable {
                source: anyhow::Error::new(e).context(what),
                retry_after: None,
            };
        }
        let fatal = match &e {
            sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                (c.starts_with("22") || c.starts_with("23")) && c.as_ref() != "23505"
            }),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => true,
            _ => false,
        };
        if fatal {
            JobError::Fatal(e.into())
        } else {
            JobError::Retryable {
                source: e.into(),
                retry_after: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_retryable() {
        assert!(JobError::from(sqlx::Error::PoolTimedOut).is_retryable());
    }

    #[test]
    fn an_exceeded_deadline_is_retryable_and_says_so() {
        let e = JobError::deadline_exceeded(Duration::from_secs(60));
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "retryable: deadline of 60 s exceeded; the attempt was abandoned"
        );
        assert!(JobError::deadline_exceeded(Duration::from_millis(250))
            .to_string()
            .contains("deadline of 250 ms exceeded"));
    }

    #[test]
    fn extension_methods_classify() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("x"));
        assert!(r.retryable().unwrap_err().is_retryable());
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("x"));
        assert!(!r.fatal().unwrap_err().is_retryable());
    }
}
