//! Small process, port and file helpers built on std and /proc (Linux only, like the servers).

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The cargo that runs us (so `cargo xtask` and `cargo +toolchain xtask` use the same one).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The command line as a user would type it, for headers and error messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| {
            let s = s.to_string_lossy();
            if s.contains('\'') {
                format!("\"{s}\"")
            } else if s.contains(' ') || s.is_empty() {
                format!("'{s}'")
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command with inherited stdio; an error when it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = describe(cmd);
    println!("$ {line}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its stdout; the error carries its stderr.
pub fn capture(cmd: &mut Command) -> Result<String> {
    let line = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with inherited stdio, killing it after `timeout`. `Ok(None)` on timeout.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Option<ExitStatus>> {
    let line = describe(cmd);
    println!("$ {line}");
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if start.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            return Ok(None);
        }
        sleep(Duration::from_millis(200));
    }
}

/// The effective user id of this process (the owner of /proc/self), without unsafe code.
pub fn effective_uid() -> Result<u32> {
    Ok(fs::metadata("/proc/self")
        .context("reading /proc/self")?
        .uid())
}

/// Whether `pid` is a live (not zombie) process whose command line contains `marker`.
/// The marker guards against signalling an unrelated process that reused a recorded pid.
pub fn is_alive(pid: i32, marker: &str) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself contain spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?");
    if state == "Z" || state == "X" {
        return false;
    }
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(marker)
        })
        .unwrap_or(false)
}

/// Pids of the live processes whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_string();
                    let mut fields = rest.split_whitespace();
                    let state = fields.next()?.to_string();
                    let ppid = fields.next()?.parse::<i32>().ok()?;
                    Some(ppid == parent && state != "Z")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// One variable of a running process's environment.
pub fn environ_var(pid: i32, key: &str) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|b| *b == 0).find_map(|entry| {
        let entry = String::from_utf8_lossy(entry);
        let (k, v) = entry.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

/// Stops a recorded process: SIGTERM, up to `grace` for it to exit, then SIGKILL.
/// Does nothing when the pid no longer belongs to a process matching `marker`.
pub fn stop_pid(pid: i32, marker: &str, label: &str, grace: Duration) -> Result<()> {
    if !is_alive(pid, marker) {
        println!("  {label} (pid {pid}) is not running");
        return Ok(());
    }
    println!("  stopping {label} (pid {pid}): SIGTERM");
    kill(Pid::from_raw(pid), Signal::SIGTERM).ok();
    if wait_until(grace, Duration::from_millis(100), || !is_alive(pid, marker)) {
        return Ok(());
    }
    println!(
        "  {label} (pid {pid}) still running after {} s: SIGKILL",
        grace.as_secs()
    );
    kill(Pid::from_raw(pid), Signal::SIGKILL).ok();
    if wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        !is_alive(pid, marker)
    }) {
        return Ok(());
    }
    bail!("{label} (pid {pid}) did not exit after SIGKILL")
}

/// Whether nothing listens on 127.0.0.1:`port` (a bind attempt, as the server would make).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// `GET path` on 127.0.0.1:`port` over plain HTTP/1.0; the body when the status is 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status_ok = head
        .lines()
        .next()
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
    status_ok.then(|| body.to_string())
}

/// Polls `done` every `interval` until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, interval: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        sleep(interval);
    }
}

/// The share of all CPUs busy over `window` (from /proc/stat), or None where it cannot be read.
pub fn machine_busy(window: Duration) -> Option<f64> {
    fn times() -> Option<(u64, u64)> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some((fields.iter().take(8).sum(), idle))
    }
    let (total0, idle0) = times()?;
    sleep(window);
    let (total1, idle1) = times()?;
    let total = total1.checked_sub(total0)?;
    (total > 0).then(|| 1.0 - (idle1 - idle0) as f64 / total as f64)
}

/// What [`wait_for_or_exit`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildWait {
    Found,
    Exited(ExitStatus),
    TimedOut,
}

/// Polls `found` until it holds, the child exits or `timeout` passes. The child's exit is
/// learned from the child itself, not from /proc: a process that is still exec'ing its
/// interpreter reads an empty cmdline there and would look gone.
pub fn wait_for_or_exit(
    child: &mut Child,
    timeout: Duration,
    interval: Duration,
    mut found: impl FnMut() -> bool,
) -> ChildWait {
    let mut outcome = ChildWait::TimedOut;
    wait_until(timeout, interval, || {
        if found() {
            outcome = ChildWait::Found;
        } else if let Ok(Some(status)) = child.try_wait() {
            outcome = ChildWait::Exited(status);
        }
        outcome != ChildWait::TimedOut
    });
    outcome
}

/// The last `lines` lines of a log file, labelled, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            format!(
                "--- last {} lines of {} ---\n{}",
                all.len() - start,
                path.display(),
                all[start..].join("\n")
            )
        }
        Err(e) => format!("--- {} could not be read: {e} ---", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(seconds: &str) -> Child {
        Command::new("sleep").arg(seconds).spawn().unwrap()
    }

    #[test]
    fn a_running_child_whose_cmdline_lacks_the_marker_is_not_taken_for_exited() {
        // What a wrapper looks like from /proc while it execs its interpreter.
        let mut child = sleeper("1");
        let pid = i32::try_from(child.id()).unwrap();
        assert!(!is_alive(pid, "milvus-server"));
        let seen = wait_for_or_exit(
            &mut child,
            Duration::from_millis(300),
            Duration::from_millis(20),
            || false,
        );
        assert_eq!(seen, ChildWait::TimedOut);
        child.kill().ok();
        child.wait().ok();
    }

    #[test]
    fn a_child_that_exits_is_reported_with_its_status() {
        let mut child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let seen = wait_for_or_exit(
            &mut child,
            Duration::from_secs(10),
            Duration::from_millis(20),
            || false,
        );
        assert!(matches!(seen, ChildWait::Exited(s) if s.code() == Some(3)));
    }

    #[test]
    fn a_busy_loop_shows_in_the_machine_s_busy_share() {
        let before = machine_busy(Duration::from_millis(300)).unwrap();
        assert!((0.0..=1.0).contains(&before), "{before}");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let busy = machine_busy(Duration::from_millis(500)).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        // One spinning thread keeps at least one CPU busy (less some scheduling slack).
        assert!(busy >= 0.8 / cpus, "{busy} of {cpus} CPUs");
    }

    #[test]
    fn found_wins_over_a_running_child() {
        let mut child = sleeper("5");
        let seen = wait_for_or_exit(
            &mut child,
            Duration::from_secs(10),
            Duration::from_millis(20),
            || true,
        );
        assert_eq!(seen, ChildWait::Found);
        child.kill().ok();
        child.wait().ok();
    }
}
