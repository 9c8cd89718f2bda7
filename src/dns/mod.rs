//! dns: the DNS server. Parses queries, answers them from the current snapshot
//! (`answer`, pure), forwards what is not ours (`forward`) and owns the sockets (`server`).
//! It only reads snapshots; it never writes records.

pub mod answer;
pub mod forward;
pub mod query;
pub mod server;
pub mod stats;
