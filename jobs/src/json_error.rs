//! JSON decode errors without the input's values: the queue runtime's
//! (`authsync_queue::json_error`, which describes undecodable job payloads with it),
//! re-exported for the webhook and Backend API parsers.

pub use authsync_queue::json_error::*;
