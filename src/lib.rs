//! Joyride: DNS names for Docker containers, on one host and across many.
//!
//! See ARCHITECTURE.md for the map. Data flows one way: sources send changes to the
//! store (`records`), which publishes immutable snapshots that `dns` answers from.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod records;
pub mod sources;
pub mod status;
pub mod web;
