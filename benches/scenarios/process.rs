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

/// CPU time (user + system) `pid` has used so far, in seconds. Fails if the process
/// cannot be read (e.g. it has ended).
pub fn cpu_seconds(pid: u32) -> std::io::Result<f64> {
    let (_, ticks) = stat(pid)?;
    Ok(ticks / clock_ticks_per_second())
}

/// The parent pid of `pid`, and the clock ticks of CPU time (user + system, every thread)
/// it has used so far, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> std::io::Result<(u32, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may contain spaces):
    // state, ppid, ...; utime and stime are fields 14 and 15 of the full line, 12 and 13
    // after the name.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((ppid, ticks(11) + ticks(12)))
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
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
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

/// CPU time used so far by the whole machine and by this benchmark's process tree (the
/// benchmark, the control plane and the operators it started), read from /proc.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    at: std::time::Instant,
    /// Seconds of CPU time spent busy, all CPUs together (/proc/stat: user, nice, system,
    /// irq, softirq; steal apart).
    busy_s: f64,
    /// Seconds of CPU time the hypervisor gave to other machines (/proc/stat: steal).
    steal_s: f64,
    /// Seconds of CPU time used by this process and its descendants alive now.
    run_s: f64,
}

/// What the machine did between two [`CpuSnapshot`]s, in CPU-seconds (all CPUs together).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Load {
    /// Wall-clock seconds between the snapshots.
    pub window_s: f64,
    /// CPU-seconds available in that window (CPUs × window).
    pub available_cpu_s: f64,
    /// CPU-seconds the machine spent busy.
    pub busy_cpu_s: f64,
    /// CPU-seconds used by this run's processes (the benchmark and what it started).
    pub run_cpu_s: f64,
    /// `busy_cpu_s` less `run_cpu_s`: other programs on the machine, and the kernel's own
    /// work. Processes of the run that ended within the window count here too (the run
    /// starts none there). Never below zero: the kernel keeps the whole machine's time
    /// and each process's time its own way, and the two differ by a few percent of the
    /// busy time either way, so small values are noise.
    pub outside_run_cpu_s: f64,
    /// CPU-seconds taken by the hypervisor for other machines (steal).
    pub steal_cpu_s: f64,
}

impl CpuSnapshot {
    /// Reads the machine's and this run's CPU time now. Fails if /proc/stat cannot be read.
    pub fn now() -> std::io::Result<Self> {
        let at = std::time::Instant::now();
        let stat = std::fs::read_to_string("/proc/stat")?;
        let ticks: Vec<f64> = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .unwrap_or_default()
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let field = |i: usize| ticks.get(i).copied().unwrap_or(0.0);
        let hz = clock_ticks_per_second();
        // user nice system idle iowait irq softirq steal (guest time is part of user).
        let busy = field(0) + field(1) + field(2) + field(5) + field(6);
        Ok(Self {
            at,
            busy_s: busy / hz,
            steal_s: field(7) / hz,
            run_s: tree_cpu_seconds(std::process::id()),
        })
    }

    /// The load between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Self) -> Load {
        let window_s = self.at.duration_since(earlier.at).as_secs_f64();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let busy_cpu_s = self.busy_s - earlier.busy_s;
        let run_cpu_s = self.run_s - earlier.run_s;
        Load {
            window_s,
            available_cpu_s: window_s * cpus as f64,
            busy_cpu_s,
            run_cpu_s,
            outside_run_cpu_s: (busy_cpu_s - run_cpu_s).max(0.0),
            steal_cpu_s: self.steal_s - earlier.steal_s,
        }
    }
}

/// CPU seconds used by `root` and every live descendant of it (each process's own user and
/// system time, all its threads included).
fn tree_cpu_seconds(root: u32) -> f64 {
    // (pid, parent pid, CPU clock ticks) of every process readable now.
    let processes: Vec<(u32, u32, f64)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).ok().map(|(ppid, ticks)| (pid, ppid, ticks)))
        .collect();
    let mut total = 0.0;
    let mut frontier = vec![root];
    while let Some(pid) = frontier.pop() {
        for &(child, parent, ticks) in &processes {
            if child == pid {
                total += ticks;
            }
            if parent == pid && child != pid {
                frontier.push(child);
            }
        }
    }
    total / clock_ticks_per_second()
}
