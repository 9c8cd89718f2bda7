//! Integration tests: the real binary, real sockets, real peers. One test binary (modules
//! below) keeps link time down.

mod support;
mod testbed;

mod cluster;
mod dns;
