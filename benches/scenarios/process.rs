//! Resource use of a process, read from /proc (Linux).

use serde::Serialize;

/// Memory of a process, in MiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// Resident set size now.
    pub rss_mib: f64,
    /// Peak resident set size since it started.
    pub peak_rss_mib: f64,
}

/// Current and peak resident memory of `pid`.
pub fn memory(pid: u32) -> std::io::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(Memory {
        rss_mib: kib("VmRSS:") / 1024.0,
        peak_rss_mib: kib("VmHWM:") / 1024.0,
    })
}

/// CPU time (user + system) `pid` has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((ticks(11) + ticks(12)) / clock_ticks_per_second())
}

/// How a command run to completion went: its exit status, wall time and peak memory.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub status: std::process::ExitStatus,
    pub millis: f64,
    /// The highest peak RSS (VmHWM) read while it ran, sampled every 5 ms, so a peak in its
    /// last few milliseconds can be missed.
    pub peak_rss_mib: f64,
}

/// Runs `command` to completion (standard output and error discarded) and measures it.
/// Blocks the calling thread. Fails if it cannot be started or waited for.
pub fn run_measured(mut command: std::process::Command) -> std::io::Result<Run> {
    let started = std::time::Instant::now();
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut peak_rss_mib: f64 = 0.0;
    loop {
        if let Ok(m) = memory(child.id()) {
            peak_rss_mib = peak_rss_mib.max(m.peak_rss_mib);
        }
        if let Some(status) = child.try_wait()? {
            return Ok(Run {
                status,
                millis: started.elapsed().as_secs_f64() * 1000.0,
                peak_rss_mib,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The machine: logical CPUs, memory in GiB, kernel.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

/// Reads the machine's description.
pub fn machine() -> Machine {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    Machine {
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_gib: mem_kib / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}
