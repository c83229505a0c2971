//! SQL on our own tables, one module per table.

pub mod webhook_events;
