//! Milvus 2.3.5 standalone from the `milvus` wheel ("embedded Milvus"): the `milvus-server`
//! Python wrapper unpacks the real Milvus binary under its data folder, writes its config
//! and runs `milvus run standalone` as its child.
//!
//! Ports: Milvus listens on many ports besides the gRPC one. They are laid out as a block
//! around the gRPC port P so that one flag moves all of them and a second Milvus (another
//! checkout, a developer's own server) can run beside ours: P-1 proxy internal, P+1 query
//! coord (the wrapper's defaults for P=19530), P+2..P+7 the other coordinators and nodes,
//! P+8/P+9 the embedded etcd's client/peer URLs. The embedded etcd ignores the wrapper's
//! `--etcd-port` (it listens on etcd's defaults 2379/2380 unless given an etcd config file),
//! so xtask writes such a file and points Milvus at it with `ETCD_CONFIG_PATH` (Milvus reads
//! any setting from a same-named environment variable). The metrics/health port is chosen
//! by the wrapper itself: the first free port from 9091 up; we read it back from the
//! server's environment (`METRICS_PORT`).

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::process::{
    children_of, environ_var, http_get, is_alive, port_answers, stop_pid, tail, wait_for_or_exit,
    wait_until, ChildWait,
};
use crate::venv::Venv;

const WRAPPER_MARKER: &str = "milvus-server";
const SERVER_MARKER: &str = "run standalone";
/// How long a SIGTERM'ed Milvus gets before SIGKILL. An idle one exits at once; one that
/// has served collections starts a graceful stop that did not finish within 15-70 s here,
/// and a restart after SIGKILL on the same data and ports is up again in ~10 s.
const SERVER_GRACE: Duration = Duration::from_secs(5);

/// (role, offset from the gRPC port, wrapper flag). The etcd ports go to the etcd config.
const PORT_BLOCK: [(&str, i32, Option<&str>); 11] = [
    ("Milvus gRPC (proxy)", 0, Some("--proxy-port")),
    ("Milvus proxy internal", -1, Some("--proxy-internal-port")),
    ("Milvus query coord", 1, Some("--query-coord-port")),
    ("Milvus root coord", 2, Some("--root-coord-port")),
    ("Milvus data coord", 3, Some("--data-coord-port")),
    ("Milvus data node", 4, Some("--data-node-port")),
    ("Milvus query node", 5, Some("--query-node-port")),
    ("Milvus index coord", 6, Some("--index-coord-port")),
    ("Milvus index node", 7, Some("--index-node-port")),
    ("Milvus embedded etcd (client)", 8, Some("--etcd-port")),
    ("Milvus embedded etcd (peer)", 9, None),
];

/// Every port a Milvus with gRPC port `grpc` listens on (except the metrics port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MilvusPorts {
    pub grpc: u16,
}

impl MilvusPorts {
    pub fn new(grpc: u16) -> Result<Self> {
        if !(1025..=65526).contains(&grpc) {
            bail!(
                "--milvus-port {grpc}: Milvus also uses the ports {} to {}, so the gRPC port \
                 must be between 1025 and 65526",
                i32::from(grpc) - 1,
                i32::from(grpc) + 9
            );
        }
        Ok(Self { grpc })
    }

    /// (role, port) for every port of the block.
    pub fn all(&self) -> Vec<(&'static str, u16)> {
        PORT_BLOCK
            .iter()
            .map(|(role, offset, _)| (*role, self.at(*offset)))
            .collect()
    }

    fn at(&self, offset: i32) -> u16 {
        u16::try_from(i32::from(self.grpc) + offset).expect("range checked in new()")
    }

    fn wrapper_args(&self) -> Vec<String> {
        PORT_BLOCK
            .iter()
            .filter_map(|(_, offset, flag)| {
                flag.map(|f| [f.to_string(), self.at(*offset).to_string()])
            })
            .flatten()
            .collect()
    }

    fn etcd_config(&self) -> String {
        let client = self.at(8);
        let peer = self.at(9);
        format!(
            "# Written by `cargo xtask services up`: moves Milvus's embedded etcd off 2379/2380.\n\
             name: vectorgate-embedded\n\
             listen-client-urls: http://127.0.0.1:{client}\n\
             advertise-client-urls: http://127.0.0.1:{client}\n\
             listen-peer-urls: http://127.0.0.1:{peer}\n\
             initial-advertise-peer-urls: http://127.0.0.1:{peer}\n\
             initial-cluster: vectorgate-embedded=http://127.0.0.1:{peer}\n"
        )
    }
}

/// Keys xtask sets in the `configs/milvus.yaml` the wrapper writes from its template under
/// the data folder (each Milvus start rewrites it): only the ones the project needs, through
/// the wrapper's own flags (`--<key>` for templated keys, `--extra-config a.b=v` for others).
///
/// `queryNode.segcore.interimIndex.enableIndex: false`: rows not yet flushed sit in growing
/// segments, which 2.3 searches through an interim IVF index (nlist 128, nprobe 16; the
/// search's own nprobe does not reach it): measured recall@10 0.23 on uniform data. Off,
/// growing segments are searched exactly, so fresh rows are found (the project's
/// `milvus.yaml` for docker-compose sets the same).
pub const SERVER_EXTRA_CONFIG: &[(&str, &str)] =
    &[("queryNode.segcore.interimIndex.enableIndex", "false")];

/// TLS of the proxy's gRPC port (`common.security.tlsMode`, `tls.*` in milvus.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// 1: server TLS; 2: mutual TLS (clients must present a certificate of `ca_pem`).
    pub mode: u8,
    pub server_pem: PathBuf,
    pub server_key: PathBuf,
    pub ca_pem: PathBuf,
}

/// How a Milvus is configured beyond its ports: the shared servers use the default (plain
/// text, no authentication); a TLS test starts its own with `tls` set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSettings {
    pub tls: Option<ServerTls>,
    /// `common.security.authorizationEnabled`: every call must carry credentials (the
    /// built-in user `root`, password `Milvus`).
    pub authorization: bool,
}

impl ServerSettings {
    fn wrapper_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (key, value) in SERVER_EXTRA_CONFIG {
            args.push("--extra-config".to_string());
            args.push(format!("{key}={value}"));
        }
        if self.authorization {
            args.push("--extra-config".to_string());
            args.push("common.security.authorizationEnabled=true".to_string());
        }
        if let Some(tls) = &self.tls {
            args.extend([
                "--tls-mode".to_string(),
                tls.mode.to_string(),
                "--server-pem-path".to_string(),
                tls.server_pem.display().to_string(),
                "--server-key-path".to_string(),
                tls.server_key.display().to_string(),
                "--ca-pem-path".to_string(),
                tls.ca_pem.display().to_string(),
            ]);
        }
        args
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MilvusState {
    /// The gRPC port clients use (MILVUS_PORT).
    pub port: u16,
    pub wrapper_pid: i32,
    /// `milvus run standalone`, the wrapper's child.
    pub server_pid: Option<i32>,
    pub metrics_port: Option<u16>,
}

impl MilvusState {
    /// Every port this server holds, for the "ports are free again" check after stopping.
    pub fn ports(&self) -> Vec<(&'static str, u16)> {
        let mut ports = MilvusPorts { grpc: self.port }.all();
        if let Some(metrics) = self.metrics_port {
            ports.push(("Milvus metrics/health", metrics));
        }
        ports
    }
}

/// Starts the wrapper detached (own process group, output to a log file) and waits until
/// it has started the server process. Readiness is [`wait_ready`]'s job.
pub fn spawn(layout: &Layout, venv: &Venv, ports: &MilvusPorts) -> Result<MilvusState> {
    spawn_with(layout, venv, ports, &ServerSettings::default())
}

/// [`spawn`] with settings of its own (a TLS test's server).
pub fn spawn_with(
    layout: &Layout,
    venv: &Venv,
    ports: &MilvusPorts,
    settings: &ServerSettings,
) -> Result<MilvusState> {
    fs::create_dir_all(&layout.milvus_dir)?;
    fs::write(&layout.milvus_etcd_config, ports.etcd_config())?;
    let log = File::create(&layout.milvus_wrapper_log)?;
    let mut cmd = Command::new(venv.milvus_server());
    cmd.arg("--data")
        .arg(&layout.milvus_dir)
        .args(ports.wrapper_args())
        .args(settings.wrapper_args())
        .env("ETCD_CONFIG_PATH", &layout.milvus_etcd_config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: survives xtask's exit and a Ctrl-C in the terminal.
        .process_group(0);
    println!("$ {}", crate::process::describe(&cmd));
    let mut wrapper = cmd.spawn().context("could not start milvus-server")?;
    let wrapper_pid = i32::try_from(wrapper.id())?;

    let mut server_pid = None;
    // The first start unpacks the Milvus binary (about 10 s on 2 cores).
    let seen = wait_for_or_exit(
        &mut wrapper,
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            server_pid = children_of(wrapper_pid)
                .into_iter()
                .find(|pid| is_alive(*pid, SERVER_MARKER));
            server_pid.is_some()
        },
    );
    // The Child handle is dropped without waiting: the wrapper outlives this process.
    drop(wrapper);
    let mut state = MilvusState {
        port: ports.grpc,
        wrapper_pid,
        server_pid,
        metrics_port: None,
    };
    let why = match seen {
        ChildWait::Found => {
            state.metrics_port = server_pid
                .and_then(|pid| environ_var(pid, "METRICS_PORT"))
                .and_then(|p| p.parse().ok());
            return Ok(state);
        }
        ChildWait::Exited(status) => {
            format!("milvus-server exited ({status}) before starting Milvus")
        }
        ChildWait::TimedOut => "milvus-server did not start Milvus within 120 s".to_string(),
    };
    stop(&state).ok();
    bail!("{why}\n{}", logs_tail(layout))
}

/// Serving: the gRPC port accepts connections and /healthz on the metrics port says OK.
pub fn is_ready(state: &MilvusState) -> bool {
    port_answers(state.port)
        && state
            .metrics_port
            .and_then(|p| http_get(p, "/healthz"))
            .is_some_and(|body| body.contains("OK"))
}

pub fn is_running(state: &MilvusState) -> bool {
    is_alive(state.wrapper_pid, WRAPPER_MARKER)
        && state.server_pid.is_some_and(|p| is_alive(p, SERVER_MARKER))
        && is_ready(state)
}

/// Waits (bounded) until Milvus serves; on timeout or exit, fails with its logs' tails.
pub fn wait_ready(layout: &Layout, state: &MilvusState, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let server_pid = state.server_pid.context("Milvus server pid unknown")?;
    let mut exited = false;
    let ready = wait_until(timeout, Duration::from_millis(250), || {
        exited = !is_alive(server_pid, SERVER_MARKER);
        exited || is_ready(state)
    });
    if exited {
        bail!(
            "Milvus (pid {server_pid}) exited while starting\n{}",
            logs_tail(layout)
        );
    }
    if !ready {
        bail!(
            "Milvus did not become ready on port {} (health on {:?}) within {} s\n{}",
            state.port,
            state.metrics_port,
            timeout.as_secs(),
            logs_tail(layout)
        );
    }
    println!(
        "Milvus ready on 127.0.0.1:{} (pid {}, health port {}) after {:.1} s",
        state.port,
        server_pid,
        state.metrics_port.unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Stops the server then the wrapper, by recorded pid: SIGTERM, a bounded wait (the
/// server's graceful stop is not waited for, see `SERVER_GRACE`), then SIGKILL. The wrapper
/// does not notice its child's death, so it is stopped too.
pub fn stop(state: &MilvusState) -> Result<()> {
    let server_pids: Vec<i32> = match state.server_pid {
        Some(pid) => vec![pid],
        None => children_of(state.wrapper_pid)
            .into_iter()
            .filter(|p| is_alive(*p, SERVER_MARKER))
            .collect(),
    };
    for pid in server_pids {
        stop_pid(pid, SERVER_MARKER, "Milvus server", SERVER_GRACE)?;
    }
    stop_pid(
        state.wrapper_pid,
        WRAPPER_MARKER,
        "milvus-server wrapper",
        Duration::from_secs(5),
    )
}

/// The bytes under Milvus's data folder (binlogs, etcd, logs).
pub fn data_bytes(layout: &Layout) -> u64 {
    fn walk(dir: &std::path::Path) -> u64 {
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => 0,
            })
            .sum()
    }
    walk(&layout.milvus_dir)
}

pub fn logs_tail(layout: &Layout) -> String {
    let logs = layout.milvus_dir.join("logs");
    [
        tail(&layout.milvus_wrapper_log, 20),
        tail(&logs.join("milvus-stderr.log"), 30),
        tail(&logs.join("milvus-stdout.log"), 30),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_flag_moves_every_port_into_a_block_around_the_grpc_port() {
        let ports = MilvusPorts::new(19630).unwrap();
        let mut all: Vec<u16> = ports.all().iter().map(|(_, p)| *p).collect();
        all.sort_unstable();
        assert_eq!(all, (19629..=19639).collect::<Vec<u16>>());
        let args = ports.wrapper_args();
        for (flag, port) in [
            ("--proxy-port", "19630"),
            ("--proxy-internal-port", "19629"),
            ("--query-coord-port", "19631"),
            ("--etcd-port", "19638"),
        ] {
            let at = args.iter().position(|a| a == flag).unwrap();
            assert_eq!(args[at + 1], port, "{flag}");
        }
        // Every wrapper port flag is set, so none falls back to the wrapper's defaults.
        assert_eq!(args.len(), 2 * 10);
    }

    #[test]
    fn the_embedded_etcd_is_moved_off_its_default_ports() {
        let config = MilvusPorts::new(19530).unwrap().etcd_config();
        assert!(config.contains("listen-client-urls: http://127.0.0.1:19538\n"));
        assert!(config.contains("listen-peer-urls: http://127.0.0.1:19539\n"));
        assert!(!config.contains(":2379") && !config.contains(":2380"));
    }

    #[test]
    fn every_server_searches_growing_segments_exactly_and_tls_is_opt_in() {
        let plain = ServerSettings::default().wrapper_args();
        assert_eq!(
            plain,
            [
                "--extra-config",
                "queryNode.segcore.interimIndex.enableIndex=false"
            ]
        );
        let tls = ServerSettings {
            tls: Some(ServerTls {
                mode: 2,
                server_pem: "/p/server.pem".into(),
                server_key: "/p/server.key".into(),
                ca_pem: "/p/ca.pem".into(),
            }),
            authorization: true,
        }
        .wrapper_args();
        let at = tls.iter().position(|a| a == "--tls-mode").unwrap();
        assert_eq!(tls[at + 1], "2");
        let at = tls.iter().position(|a| a == "--ca-pem-path").unwrap();
        assert_eq!(tls[at + 1], "/p/ca.pem");
        assert!(tls.contains(&"common.security.authorizationEnabled=true".to_string()));
        assert!(!plain.iter().any(|a| a.contains("authorizationEnabled")));
    }

    #[test]
    fn ports_outside_the_usable_range_are_refused_with_the_reason() {
        let err = MilvusPorts::new(65530).unwrap_err().to_string();
        assert!(err.contains("65529 to 65539"), "{err}");
        assert!(MilvusPorts::new(1024).is_err());
        assert!(MilvusPorts::new(65526).is_ok());
    }
}
