use joyride::records::store::{Change, Store, ZoneConfig};
use joyride::records::{Name, OwnerKey, RData, Record, SourceKind};
use std::time::Instant;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let zone = Name::parse("docker").unwrap();
    let records: Vec<Record> = (0..n)
        .map(|i| {
            Record::new(
                zone.child(&format!("host{i:07}")).unwrap(),
                RData::A(std::net::Ipv4Addr::from(0x0a000000 + i as u32)),
            )
        })
        .collect();
    let mut s = Store::new(ZoneConfig {
        apex: zone,
        default_ttl: 10,
        negative_ttl: 5,
        node: "n".into(),
        ns_addresses: vec![],
        prefer_local: false,
    });
    let t = Instant::now();
    s.apply(Change::Replace {
        owner: OwnerKey::new(&"n".into(), SourceKind::Hosts, "f"),
        records,
    });
    let applied = t.elapsed();
    let snap = s.snapshot();
    println!(
        "n={n} apply={applied:?} snapshot={:?} names={}",
        t.elapsed() - applied,
        snap.name_count()
    );
}
