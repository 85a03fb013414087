//! What the OS says about the machine and the server processes under load.
//!
//! The machine (cores, memory, CPU model) goes into every report, since figures mean
//! nothing without it. A server process given with `--pid` is read from `/proc`: its peak
//! resident set (`VmHWM` of `/proc/PID/status`) and its CPU time (`utime + stime` of
//! `/proc/PID/stat`) before and after the run, so CPU seconds per GiB served can be
//! compared between registries. The peak is reset before the run where the kernel lets us
//! (writing 5 to `/proc/PID/clear_refs`), so it is the run's own and not the setup's.

use serde::Serialize;

#[derive(Serialize, Debug, Clone)]
pub struct Machine {
    pub cores: usize,
    pub memory_bytes: u64,
    pub cpu_model: String,
}

impl Machine {
    pub fn this() -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: kib_field(&meminfo, "MemTotal:").unwrap_or(0) * 1024,
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// A `kB` field of a `/proc` status-like file (`VmHWM:   1234 kB`).
fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A process watched over a run.
pub struct Watch {
    pid: u32,
    cpu_before: Option<f64>,
    peak_reset: bool,
}

/// What a watched process used during the run.
#[derive(Serialize, Debug, Clone)]
pub struct ProcessUsage {
    pub pid: u32,
    /// Peak resident set; since the run started when `peak_reset`, else since the process did.
    pub peak_rss_bytes: Option<u64>,
    pub peak_reset: bool,
    /// CPU seconds (user + system) the process spent during the run.
    pub cpu_seconds: Option<f64>,
    /// `cpu_seconds` per GiB the run moved.
    pub cpu_seconds_per_gib: Option<f64>,
}

impl Watch {
    /// Starts watching `pid`: resets its peak RSS if allowed and reads its CPU time.
    pub fn start(pid: u32) -> Watch {
        let peak_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        Watch {
            pid,
            cpu_before: cpu_seconds(pid),
            peak_reset,
        }
    }

    /// The usage since `start`, with CPU per GiB of `bytes` moved.
    pub fn finish(self, bytes: u64) -> ProcessUsage {
        let cpu = cpu_seconds(self.pid)
            .zip(self.cpu_before)
            .map(|(after, before)| after - before);
        let gib = bytes as f64 / (1u64 << 30) as f64;
        ProcessUsage {
            pid: self.pid,
            peak_rss_bytes: peak_rss_bytes(self.pid),
            peak_reset: self.peak_reset,
            cpu_seconds: cpu,
            cpu_seconds_per_gib: cpu.filter(|_| bytes > 0).map(|c| c / gib),
        }
    }
}

pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(kib_field(&status, "VmHWM:")? * 1024)
}

/// User + system CPU seconds of `pid` so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (utime, stime) = stat_times(&stat)?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) as f64 / ticks)
}

/// `utime` and `stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name in
/// parentheses may hold spaces, so fields are counted after its closing parenthesis.
fn stat_times(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let line =
            "1234 (shoal serve) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(stat_times(line), Some((250, 75)));
        assert_eq!(stat_times("garbage"), None);
    }

    #[test]
    fn this_process_is_readable() {
        let me = std::process::id();
        assert!(peak_rss_bytes(me).unwrap() > 0);
        assert!(cpu_seconds(me).is_some());
        let m = Machine::this();
        assert!(m.cores >= 1 && m.memory_bytes > 0);
    }

    #[test]
    fn kib_fields() {
        assert_eq!(
            kib_field("VmPeak:  10 kB\nVmHWM:\t  2048 kB\n", "VmHWM:"),
            Some(2048)
        );
        assert_eq!(kib_field("", "VmHWM:"), None);
    }
}
