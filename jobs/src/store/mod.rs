//! Every statement on one of our tables, one file per table, as small named functions that
//! run on the caller's connection or pool and return `FromRow` structs.
//!
//! Static statements are checked against the schema at build time (`sqlx::query!` and
//! friends, with the offline data committed in `jobs/.sqlx`; see the README, "Changing a
//! query"). Statements whose text is built at run time stay runtime-checked and say so.

pub mod held_deletions;
