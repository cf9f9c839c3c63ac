//! CPU time and context switches of processes, read from `/proc`, so the benchmark
//! can say what one sign-in costs each process (api, each worker, PostgreSQL, the
//! driver itself). Context switches do not move with a noisy machine's speed, and
//! on SQLite they count the round trips to sqlx's connection threads.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on
/// every Linux this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process whose CPU the benchmark reports: `pid` and, with `tree`, every
/// descendant (PostgreSQL's backends are children of its postmaster).
#[derive(Clone, Debug)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
    pub tree: bool,
}

impl Watched {
    pub fn process(name: impl Into<String>, pid: u32) -> Self {
        Self {
            name: name.into(),
            pid,
            tree: false,
        }
    }

    pub fn tree(name: impl Into<String>, pid: u32) -> Self {
        Self {
            name: name.into(),
            pid,
            tree: true,
        }
    }

    /// The process and, with `tree`, its live descendants.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid];
        if self.tree {
            pids.extend(descendants(self.pid));
        }
        pids
    }

    /// What the process has used so far. CPU: user + system time of the process
    /// (all its threads) and of its children already reaped; with `tree`, plus
    /// every live descendant's. Context switches: those of its live threads (and,
    /// with `tree`, its descendants'), voluntary or not.
    pub fn usage(&self) -> Option<Usage> {
        let pids = self.pids();
        let ticks =
            own_ticks(self.pid)? + pids[1..].iter().copied().filter_map(own_ticks).sum::<u64>();
        Some(Usage {
            cpu: Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND),
            switches: pids.into_iter().map(switches).sum(),
        })
    }
}

/// CPU time and context switches used by a watched process so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu: Duration,
    pub switches: u64,
}

/// Context switches of every live thread of `pid` (`/proc/<pid>/task/*/status`).
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|line| line.contains("ctxt_switches:"))
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime + cutime + cstime (fields 14–17 of `stat`; 12–15 after the name).
fn own_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<i64>().ok().map(|t| t.max(0) as u64))
        .sum()
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Every live descendant of `root`.
fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<(u32, u32)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut at = 0;
    // Breadth-first over the parent links; bounded by the number of processes.
    while at < found.len() && at <= all.len() {
        let parent = found[at];
        found.extend(all.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        at += 1;
    }
    found.remove(0);
    found
}

/// This process's parent, for finding PostgreSQL's postmaster from a backend.
pub fn parent(pid: u32) -> Option<u32> {
    parent_of(pid)
}

/// Usage of every watched process, in order (zero for one that has gone).
pub fn sample(watched: &[Watched]) -> Vec<Usage> {
    watched
        .iter()
        .map(|w| w.usage().unwrap_or_default())
        .collect()
}

/// Busy and total time of the whole machine (`/proc/stat`), in ticks.
pub fn machine() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = cpu.get(3)? + cpu.get(4).unwrap_or(&0);
    let total: u64 = cpu.iter().take(8).sum();
    Some((total - idle, total))
}
