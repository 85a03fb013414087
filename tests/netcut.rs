//! Cutting a process off the network on loopback: iptables rules that drop every UDP
//! datagram to or from one port (a node's QUIC cluster plane), removed when the `Cut` is
//! dropped, also when a test fails half way. Needs root and iptables (`require_tool`).

use std::process::Command;

/// iptables rules dropping every UDP datagram to or from one port on loopback, removed
/// when dropped (also when the test fails half way).
pub struct Cut {
    rules: Vec<Vec<String>>,
}

impl Cut {
    pub fn port(port: u16) -> Cut {
        let comment = format!("shoal-test-{}", std::process::id());
        let rules: Vec<Vec<String>> = ["--dport", "--sport"]
            .iter()
            .map(|dir| {
                [
                    "INPUT",
                    "-i",
                    "lo",
                    "-p",
                    "udp",
                    dir,
                    &port.to_string(),
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-j",
                    "DROP",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            })
            .collect();
        for rule in &rules {
            let ok = Command::new("iptables")
                .arg("-I")
                .args(rule)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "iptables -I {rule:?} failed (the test runs as root)");
        }
        Cut { rules }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for rule in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(rule).status();
        }
    }
}
