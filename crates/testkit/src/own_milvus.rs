//! A Milvus of a test's own (to kill, restart or configure), started through xtask's code
//! on a free block of ports, its data under target/test-milvus, killed when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use xtask::layout::Layout;
use xtask::milvus::{self, MilvusPorts, MilvusState, ServerSettings};

use crate::{unique_name, workspace_root};

/// Milvus registers each component in etcd with a 30 s lease (`common.session.ttl`). A
/// server restarted on the same data before the killed one's sessions lapse dials those
/// stale sessions and dies ("unknown service milvus.proto.data.DataCoord"), so a restart
/// waits this long after the kill.
const SESSION_TTL_MARGIN: Duration = Duration::from_secs(35);

fn port_free(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A test's own Milvus.
#[derive(Debug)]
pub struct OwnMilvus {
    layout: Layout,
    ports: MilvusPorts,
    settings: ServerSettings,
    state: Option<MilvusState>,
    killed_at: Option<Instant>,
}

impl OwnMilvus {
    /// Picks a free block of ports at or above `from` (gRPC port P uses P-1..P+9), outside
    /// the ephemeral range.
    pub fn new(from: u16) -> Self {
        let port = crate::ports::free_block(from, 20, (1, 9), port_free)
            .expect("no free block of 11 ports for a test Milvus");
        let dir = workspace_root()
            .join("target/test-milvus")
            .join(unique_name("own"));
        Self {
            layout: Layout::for_own_servers(&dir),
            ports: MilvusPorts::new(port).expect("a usable port block"),
            settings: ServerSettings::default(),
            state: None,
            killed_at: None,
        }
    }

    /// Serves with these settings (e.g. TLS) from its next start.
    pub fn with_settings(mut self, settings: ServerSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn port(&self) -> u16 {
        self.ports.grpc
    }

    /// Where its data and logs are.
    pub fn dir(&self) -> PathBuf {
        self.layout.services.clone()
    }

    /// Starts it and waits until it answers, at most `attempts` times.
    ///
    /// On a restart after SIGKILL, the embedded etcd restores the killed server's session
    /// leases; a coordinator that comes up meanwhile may wait as standby and the new proxy
    /// then dies (seen in about half of the restarts here). The wrapper does not restart its
    /// child, so neither do we wait forever: kill, let the sessions lapse, start again.
    pub fn start(&mut self, attempts: u32) {
        let venv = xtask::venv::existing(&Layout::current())
            .expect("the server wheels are installed (cargo xtask services up installs them)");
        for attempt in 1..=attempts {
            if let Some(killed_at) = self.killed_at {
                std::thread::sleep(SESSION_TTL_MARGIN.saturating_sub(killed_at.elapsed()));
            }
            let spawned = milvus::spawn_with(&self.layout, &venv, &self.ports, &self.settings);
            let grpc = self.port();
            let result = spawned.and_then(|state| {
                let ready = milvus::wait_ready(&self.layout, &state, Duration::from_secs(90));
                self.state = Some(state);
                // The health port answering is not enough after a restart: a proxy that
                // lost its session race dies afterwards, so its gRPC port must accept too.
                ready.and_then(|()| {
                    std::thread::sleep(Duration::from_secs(2));
                    std::net::TcpStream::connect(("127.0.0.1", grpc))
                        .map(drop)
                        .map_err(|e| anyhow::anyhow!("gRPC port {grpc} refuses connections: {e}"))
                })
            });
            match result {
                Ok(()) => return,
                Err(why) if attempt < attempts => {
                    eprintln!("test Milvus start {attempt} failed ({why:#}); retrying");
                    self.kill();
                }
                Err(why) => panic!(
                    "test Milvus on port {} not ready after {attempts} starts: {why:#}",
                    self.port()
                ),
            }
        }
    }

    /// SIGKILL to its process group (wrapper and server), then waits until its gRPC port
    /// is free again.
    pub fn kill(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        // The wrapper leads its own process group: one signal reaches the server too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", state.wrapper_pid)])
            .status();
        self.killed_at = Some(Instant::now());
        // Every port of the block, not only gRPC: a restart on a port still held by a dying
        // coordinator exits at once.
        let block = self.port() - 1..=self.port() + 9;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !block.clone().all(port_free) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OwnMilvus {
    fn drop(&mut self) {
        self.kill();
        let dir = self.dir();
        if std::thread::panicking() {
            // Keep the evidence of a failed run, without the unpacked binaries and data.
            let _ = std::fs::remove_dir_all(dir.join("milvus/bin"));
            let _ = std::fs::remove_dir_all(dir.join("milvus/data"));
            eprintln!("test Milvus logs kept under {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
