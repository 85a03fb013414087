//! Puts the git commit the binary was built from into `SHOAL_GIT_COMMIT` (`shoal --version`,
//! the start-up line); `unknown` outside a git checkout.

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SHOAL_GIT_COMMIT={commit}");
    // A new commit or checkout moves HEAD's log.
    println!("cargo:rerun-if-changed=../.git/logs/HEAD");
    println!("cargo:rerun-if-changed=../.git/HEAD");
}
