//! cluster: membership and replication across hosts.
//!
//! Owns the gossip socket, the failure detector (foca, SWIM), the anti-entropy of record
//! sets (`replication`), the wire format (`wire`) and the datagram crypto (`crypto`). It
//! reads this node's records from the snapshot and writes peers' records to the store as
//! `Change`s owned by the peer's node name; it never asserts another node's records as its
//! own and never touches the DNS path.

pub mod crypto;
pub mod node;
pub mod replication;
pub mod service;
pub mod sim;
pub mod srv;
pub mod wire;
