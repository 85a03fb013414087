//! Finding the peers' binaries, installing them with apt-get when missing, and asking them
//! their versions for the record.
//!
//! The packages are Debian's: `docker-registry` is CNCF Distribution 2.8, and `nginx-light`
//! is the smallest nginx with sendfile. apt-get runs non-interactively and says what it
//! runs; without root it goes through sudo. Debian's packages also enable their own system
//! services (Distribution on :5000, nginx on :80); the comparison never uses those, it
//! starts its own instances on ports of its own.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

/// A peer's binary and the Debian package that provides it.
pub struct Tool {
    pub binary: &'static str,
    pub package: &'static str,
}

pub const DISTRIBUTION: Tool = Tool {
    binary: "docker-registry",
    package: "docker-registry",
};
pub const NGINX: Tool = Tool {
    binary: "nginx",
    package: "nginx-light",
};

/// Where `binary` is: on PATH, or in an sbin directory a non-root PATH may lack (nginx
/// lives in /usr/sbin).
pub fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

/// The commands that install `packages` (what is printed is what runs).
pub fn apt_commands(packages: &[&str], root: bool) -> Vec<Vec<String>> {
    let sudo: &[&str] = if root { &[] } else { &["sudo"] };
    let line =
        |args: &[&str]| -> Vec<String> { sudo.iter().chain(args).map(|s| s.to_string()).collect() };
    let mut install = line(&[
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
    ]);
    install.extend(packages.iter().map(|p| p.to_string()));
    vec![line(&["apt-get", "update", "-q"]), install]
}

/// Every tool's binary, installing the missing ones unless `allowed` is false.
pub fn ensure(tools: &[&Tool], allowed: bool) -> anyhow::Result<Vec<PathBuf>> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|t| find(t.binary).is_none())
        .map(|t| t.package)
        .collect();
    if !missing.is_empty() {
        // SAFETY: geteuid only reads the process's credentials.
        let root = unsafe { libc::geteuid() } == 0;
        let commands = apt_commands(&missing, root);
        if !allowed {
            let shown: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
            bail!(
                "missing {} (--no-install); install with: {}",
                missing.join(", "),
                shown.join(" && ")
            );
        }
        for c in &commands {
            eprintln!(
                "compare: installing {}: {}",
                missing.join(", "),
                c.join(" ")
            );
            let status = Command::new(&c[0])
                .args(&c[1..])
                .status()
                .with_context(|| format!("running {}", c[0]))?;
            if !status.success() {
                bail!("`{}` failed with {status}", c.join(" "));
            }
        }
    }
    tools
        .iter()
        .map(|t| {
            find(t.binary).with_context(|| {
                format!(
                    "{} is still missing after installing {}",
                    t.binary, t.package
                )
            })
        })
        .collect()
}

/// The first line a binary prints for `args` (nginx prints its version on stderr).
pub fn version(binary: &std::path::Path, args: &[&str]) -> String {
    match Command::new(binary).args(args).output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            let line = String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            // docker-registry starts its line with the path it was run as.
            let name = binary.file_name().unwrap_or_default().to_string_lossy();
            match line.strip_prefix(&*binary.to_string_lossy()) {
                Some(rest) => format!("{name}{rest}"),
                None => line,
            }
        }
        Err(e) => format!("unknown ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_lines() {
        let joined = |root| -> Vec<String> {
            apt_commands(&["docker-registry", "nginx-light"], root)
                .iter()
                .map(|c| c.join(" "))
                .collect()
        };
        assert_eq!(
            joined(true),
            [
                "apt-get update -q",
                "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry nginx-light"
            ]
        );
        assert!(joined(false).iter().all(|c| c.starts_with("sudo ")));
    }

    #[test]
    fn binaries_are_found_on_path() {
        let sh = find("sh").unwrap();
        assert!(find("no-such-binary-anywhere").is_none());
        let echo = find("echo").unwrap();
        assert_eq!(version(&echo, &["v1.2"]), "v1.2");
        assert!(version(&sh, &["-c", "echo \"$0 x 1.0\""]).ends_with(" x 1.0"));
    }
}
