//! How a job says it failed: [`JobError::Retryable`] backs off and runs again,
//! [`JobError::Fatal`] stops at once and waits for an operator. The classification belongs to
//! the queue runtime (`authsync_queue::error`), which records it; re-exported here for the
//! handlers.

pub use authsync_queue::error::*;
