//! A voter cut off from the region's plane (its UDP port dropped with iptables) and then
//! healed must not depose the leader: with a pre-vote it never raises its term while it
//! cannot win (`raft::prevote`). Plain openraft 0.9 would: the isolated voter campaigns at
//! each election timeout, and its higher term makes the leader step down on its return.

use std::time::Duration;

use shoal_tests::netcut::Cut;
use shoal_tests::region::Region;
use shoal_tests::{require_tool, tempdir, Registry};

#[test]
fn a_voter_healed_from_a_partition_does_not_depose_the_leader() {
    if !require_tool("iptables") {
        return;
    }
    let dir = tempdir();
    let region = Region::start(dir.path(), 3, 3);
    let leader = region.leader();
    let before = region.status(leader);
    let term = before["term"].as_u64().unwrap();
    let cut_off = (1..=3).find(|&id| id != leader).unwrap();

    {
        let _cut = Cut::port(region.plane_port(cut_off));
        // Many election timeouts: an isolated voter without a pre-vote would have
        // campaigned several times by now.
        std::thread::sleep(Duration::from_secs(4));
        let s = region.status(leader);
        assert_eq!(s["leader"], leader, "the majority keeps its leader: {s:#}");
        let isolated = region.status(cut_off);
        assert_eq!(
            isolated["term"], term,
            "the isolated voter did not raise its term: {isolated:#}"
        );
        // Readiness tells the truth: load balancers stop sending clients to the cut-off
        // node, and keep sending them to the leader, which still has a quorum.
        let (status, why) = region.readyz(cut_off);
        assert_eq!(status, 503, "the cut-off node is not ready: {why}");
        assert!(why.contains("cut off"), "{why}");
        assert_eq!(region.readyz(leader).0, 200);
    }
    // Healed: the leader reaches it again, and nothing changes hands.
    region.wait_for(
        |s| s["node_id"] == cut_off && s["leader"] == leader,
        "the healed voter follows the leader again",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(region.readyz(cut_off).0, 200, "ready again once healed");
    let after = region.status(leader);
    assert_eq!(after["leader"], leader, "{after:#}");
    assert_eq!(after["term"], term, "no election happened: {after:#}");

    // And the region still takes writes through the healed node.
    let reg = Registry::new(&region.api_url(cut_off));
    reg.create_namespace("healed");
}
