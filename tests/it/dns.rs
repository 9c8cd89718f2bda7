//! The DNS server as a resolver or dig sees it.

use crate::support::*;

#[test]
fn serves_static_record_over_udp_and_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("joyride.toml");
    std::fs::write(
        &cfg,
        "[[records]]\nname = \"db\"\ntype = \"A\"\nvalue = \"10.9.0.1\"\n",
    )
    .unwrap();
    let j = Joyride::start(&["--no-forward", "--config", cfg.to_str().unwrap()]);
    let udp = j.query("db.docker.", RecordType::A);
    assert_eq!(udp.metadata.response_code, ResponseCode::NoError);
    assert!(udp.metadata.authoritative);
    assert_eq!(answers(&udp), vec!["10.9.0.1"]);
    assert_eq!(
        answers(&j.query_tcp("DB.Docker.", RecordType::A)),
        vec!["10.9.0.1"]
    );
}
