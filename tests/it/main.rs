//! Integration tests: the real binary, real sockets, real peers. One test binary (modules
//! below) keeps link time down.

mod support;
mod testbed;

mod browser;
mod cli;
mod cluster;
mod cluster_docker;
mod dns;
mod docker;
mod forward;
mod hosts;
mod malformed;
mod ship;
mod ship_image;
mod web;
mod webdriver;
