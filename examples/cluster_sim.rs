//! 100 cluster nodes in one process over the in-memory network of `cluster::sim` (the same
//! `ClusterNode` code the daemon runs, sealed datagrams included), with a virtual clock and
//! 1 ms latency. Prints convergence time after every node changes its records at once, the
//! time for one later change to reach everyone, and gossip bandwidth per node.
//!
//! cargo run --release --example cluster_sim [-- NODES RECORDS_PER_NODE [LOSS]]

use std::time::{Duration, Instant};

use joyride::cluster::crypto::{ClusterKey, Keyring};
use joyride::cluster::sim::{sample_set, SimNet};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let per_node: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let loss: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0.0);
    let key = ClusterKey::generate();
    let wall = Instant::now();

    let mut net = SimNet::new();
    net.loss = loss;
    for i in 0..nodes {
        net.add(
            &format!("node{i}"),
            Keyring::new(std::slice::from_ref(&key), "sim"),
            |_| {},
        );
    }
    net.join_all();
    let joined = net
        .run_until(Duration::from_secs(60), |n| {
            n.nodes.iter().all(|x| x.live_members() == nodes - 1)
        })
        .expect("membership did not converge in 60 s");

    // The last change: every node publishes its records at the same moment.
    let sent_before: u64 = net.nodes.iter().map(|n| n.counters.gossip_bytes_sent).sum();
    for i in 0..nodes {
        let set = sample_set(&format!("node{i}"), per_node, (i % 250) as u8);
        net.set_local(i, set);
    }
    let want = (nodes - 1) * per_node;
    let converge = net
        .run_until(Duration::from_secs(60), |n| {
            n.stores.iter().all(|s| s.total() == want)
        })
        .expect("records did not converge in 60 s");
    let sent_converge: u64 = net
        .nodes
        .iter()
        .map(|n| n.counters.gossip_bytes_sent)
        .sum::<u64>()
        - sent_before;

    // One more change on one node, after everything settled.
    net.run_for(Duration::from_secs(2));
    net.set_local(0, sample_set("node0", per_node + 1, 0));
    let one_change = net
        .run_until(Duration::from_secs(30), |n| {
            n.stores
                .iter()
                .skip(1)
                .all(|s| s.count_of("node0") == per_node + 1)
        })
        .expect("one change did not spread");

    // Steady state: nothing changes for 10 s.
    let before: u64 = net.nodes.iter().map(|n| n.counters.gossip_bytes_sent).sum();
    let steady = Duration::from_secs(10);
    net.run_for(steady);
    let after: u64 = net.nodes.iter().map(|n| n.counters.gossip_bytes_sent).sum();
    let steady_bps = (after - before) as f64 / nodes as f64 / steady.as_secs_f64();
    let converge_bps = sent_converge as f64 / nodes as f64 / converge.as_secs_f64().max(0.001);

    println!(
        "cluster-convergence: nodes={nodes} records_per_node={per_node} loss={loss} membership_ms={} converge_ms={} one_change_ms={} bytes_per_node_per_s={:.0} converge_bytes_per_node_per_s={:.0} wall_s={:.1}",
        joined.as_millis(),
        converge.as_millis(),
        one_change.as_millis(),
        steady_bps,
        converge_bps,
        wall.elapsed().as_secs_f64()
    );
}
