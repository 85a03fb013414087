//! The processes a comparison starts, and the promise that they all stop.
//!
//! Every peer and Shoal process goes into one `Fleet`, owned by the comparison. Dropping it
//! (the normal end, an error, a panic, or Ctrl-C, which drops the comparison's future)
//! sends SIGTERM to every process and its children, waits, then SIGKILLs what is left.
//! Two more measures cover what a destructor cannot:
//! - each child runs in a process group of its own, so Ctrl-C reaches only shoal-bench,
//!   which then stops the peers in order instead of racing them while it cleans up;
//! - each child asks the kernel for SIGTERM when its parent dies (`PR_SET_PDEATHSIG`), so
//!   even a SIGKILLed shoal-bench leaves nothing running. The kernel sends it when the
//!   *thread* that spawned the child exits, so spawns happen on the comparison's own task
//!   (the main thread), never on tokio's blocking pool, whose threads come and go.
//!
//! nginx's workers are children of its master: they are collected before the master is
//! signalled and killed if they outlive it.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a process gets to start listening, and to exit after SIGTERM.
const START_WITHIN: Duration = Duration::from_secs(60);
const STOP_WITHIN: Duration = Duration::from_secs(10);

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

#[derive(Default)]
pub struct Fleet {
    procs: Vec<Proc>,
}

impl Fleet {
    /// Starts `cmd` with stdout and stderr appended to `log`; returns its pid.
    pub fn spawn(&mut self, name: &str, cmd: Command, log: &Path) -> anyhow::Result<u32> {
        self.start(name, cmd, log, false).map(|(pid, _)| pid)
    }

    /// Starts a Shoal process and waits for its first stdout line, `listening on URL`;
    /// the rest of its stdout goes to `<log>.stdout`. Returns its pid and URL.
    pub async fn spawn_listening(
        &mut self,
        name: &str,
        cmd: Command,
        log: &Path,
    ) -> anyhow::Result<(u32, String)> {
        let (pid, rx) = self.start(name, cmd, log, true)?;
        let rx = rx.expect("stdout is read when asked");
        match tokio::time::timeout(START_WITHIN, rx).await {
            Ok(Ok(url)) => Ok((pid, url)),
            Ok(Err(_)) => bail!("{name} exited before listening:\n{}", tail(log)),
            Err(_) => bail!(
                "{name} did not say where it listens within {START_WITHIN:?}:\n{}",
                tail(log)
            ),
        }
    }

    fn start(
        &mut self,
        name: &str,
        mut cmd: Command,
        log: &Path,
        read_stdout: bool,
    ) -> anyhow::Result<(u32, Option<tokio::sync::oneshot::Receiver<String>>)> {
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("opening {}", log.display()))
        };
        cmd.stdin(Stdio::null()).stderr(file()?).process_group(0);
        if read_stdout {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(file()?);
        }
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // async-signal-safe system call.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let pid = child.id();
        let rx = match child.stdout.take() {
            Some(stdout) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let mut rest = std::fs::File::create(log.with_extension("stdout"))?;
                std::thread::spawn(move || {
                    let mut tx = Some(tx);
                    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                        match line.strip_prefix("listening on ") {
                            Some(url) if tx.is_some() => {
                                let _ = tx.take().expect("checked").send(url.to_string());
                            }
                            _ => {
                                let _ = writeln!(rest, "{line}");
                            }
                        }
                    }
                });
                Some(rx)
            }
            None => None,
        };
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        });
        Ok((pid, rx))
    }

    /// Fails with the end of its log if process `pid` has exited.
    pub fn alive(&mut self, pid: u32) -> anyhow::Result<()> {
        let Some(p) = self.procs.iter_mut().find(|p| p.child.id() == pid) else {
            bail!("no process {pid} was started");
        };
        if let Some(status) = p.child.try_wait()? {
            bail!("{} exited with {status}:\n{}", p.name, tail(&p.log));
        }
        Ok(())
    }

    /// Polls `url` until it answers with a status `ok` accepts, while `pid` runs.
    pub async fn wait_http(
        &mut self,
        pid: u32,
        url: &str,
        ok: impl Fn(u16) -> bool,
    ) -> anyhow::Result<()> {
        let http = crate::tls::client().build()?;
        let deadline = Instant::now() + START_WITHIN;
        loop {
            self.alive(pid)?;
            let last = match http.get(url).send().await {
                Ok(r) if ok(r.status().as_u16()) => return Ok(()),
                Ok(r) => format!("status {}", r.status()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("{url} did not answer within {START_WITHIN:?} (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every process, last started first: SIGTERM to all, then a wait, then SIGKILL
    /// to what is still running (children included).
    pub fn stop(&mut self) {
        let procs: Vec<Proc> = self.procs.drain(..).rev().collect();
        let mut kids = Vec::new();
        for p in &procs {
            kids.extend(children_of(p.child.id()));
            signal(p.child.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_WITHIN;
        for mut p in procs {
            while matches!(p.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(p.child.try_wait(), Ok(None)) {
                eprintln!("compare: {} ignored SIGTERM; killing it", p.name);
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
        let running = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z"))
        };
        kids.retain(|k| running(*k));
        for kid in &kids {
            signal(*kid, libc::SIGKILL);
        }
        // SIGKILL is delivered asynchronously; a killed orphan ends as a zombie of init.
        let deadline = Instant::now() + Duration::from_secs(2);
        while kids.iter().any(|k| running(*k)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid this process started; a stale pid fails harmlessly.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// The last lines of a log, for an error message.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The processes whose parent is `pid` (nginx's workers), from `/proc/*/stat`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let child: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        (parent_of(&stat)? == pid).then_some(child)
    })
    .collect()
}

/// The parent pid (field 4) of a `/proc/PID/stat` line; the command name in parentheses
/// may hold spaces, so fields are counted after its closing parenthesis.
fn parent_of(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A loopback TCP port free at this moment. The port is released before the peer binds
/// it, which could race another program; loopback ports on a benchmark machine are quiet.
pub fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A loopback UDP port free at this moment (Shoal's QUIC cluster plane).
pub fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_from_stat_lines() {
        let check = |line: &str, want: Option<u32>| assert_eq!(parent_of(line), want, "{line}");
        check("4242 (nginx) S 4200 4200 4200 0 -1", Some(4200));
        check("7 (a b) c) R 1 7 7", Some(1));
        check("nonsense", None);
    }

    #[test]
    fn a_fleet_stops_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let mut fleet = Fleet::default();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & wait"]);
        let pid = fleet
            .spawn("sleeper", cmd, &dir.path().join("s.log"))
            .unwrap();
        fleet.alive(pid).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while children_of(pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let kids = children_of(pid);
        assert_eq!(kids.len(), 1, "sh's sleep");
        drop(fleet);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        for kid in kids {
            // A killed child of a dead parent may linger as a zombie until init reaps it.
            let stat = std::fs::read_to_string(format!("/proc/{kid}/stat")).unwrap_or_default();
            assert!(
                stat.is_empty() || stat.contains(") Z"),
                "{kid} still runs: {stat}"
            );
        }
    }
}
