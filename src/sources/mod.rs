//! sources: where records come from. Each source turns its input into `Change`s for the
//! store and may not read the snapshot or touch another source's records.

pub mod docker;
pub mod hosts;
