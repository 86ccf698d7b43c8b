//! A throw-away Kubernetes control plane (etcd + kube-apiserver) for
//! end-to-end tests, using only `std`.
//!
//! Binaries come from `SAVEPOINT_WEBHOOK_KUBE_APISERVER` and
//! `SAVEPOINT_WEBHOOK_ETCD` (default `/usr/bin/etcd`); run
//! `eval "$(tests/provision.sh --print-env)"` to build/install them. The
//! `openssl` and `curl` commands must be on `PATH`.
//!
//! Each process is started through a tiny `sh` wrapper that `exec`s the real
//! binary, leaving behind a watchdog subshell that blocks reading a pipe whose
//! only write end lives in the test process. When the test process exits --
//! even by SIGKILL -- the pipe closes, and the watchdog SIGKILLs the process
//! (and, for etcd, removes the temp dir a second later). `Drop` does the
//! same cleanup directly.

#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long to wait for etcd / kube-apiserver to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `sh -c` script: `$1` is a directory to remove after the process has been
/// killed by the watchdog (may be empty), the rest is the command to exec.
const WATCHDOG_SCRIPT: &str = r#"dir=$1; shift
exec 3<&0 </dev/null
(
  trap '' INT HUP TERM QUIT
  read -r _ <&3
  kill -KILL $$ 2>/dev/null
  if [ -n "$dir" ]; then sleep 1; rm -rf "$dir"; fi
) >/dev/null 2>&1 &
exec 3<&-
exec "$@"
"#;

/// A running process plus the write end of its watchdog pipe.
pub struct Guarded {
    child: Child,
    /// Dropping this makes the watchdog SIGKILL the process.
    lifeline: Option<ChildStdin>,
}

impl Guarded {
    /// Starts `program` with `args` (and `env` added to the inherited
    /// environment), appending its stdout and stderr to `log`. The watchdog
    /// removes `cleanup_dir` after killing it.
    pub fn spawn(
        program: &Path,
        args: &[OsString],
        env: &[(&str, &std::ffi::OsStr)],
        log: &Path,
        cleanup_dir: Option<&Path>,
    ) -> Guarded {
        let open_log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap_or_else(|e| panic!("cannot open log file {}: {e}", log.display()))
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("sh")
            .arg(
                cleanup_dir
                    .map(|d| d.as_os_str().to_owned())
                    .unwrap_or_default(),
            )
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::from(open_log()))
            .stderr(Stdio::from(open_log()))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", program.display()));
        let lifeline = child.stdin.take();
        Guarded { child, lifeline }
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(mut self) {
        self.lifeline.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit (SIGKILL after
    /// that); returns its exit status.
    pub fn terminate(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }

    /// Sends `signal` (`TERM`, `INT`, ...) without waiting for the process to react.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -{signal}: {e}"));
        assert!(
            status.success(),
            "kill -{signal} {} failed",
            self.child.id()
        );
    }

    /// The process id (the program's own: the watchdog `exec`s it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// The version a kube-apiserver binary reports (`Kubernetes v1.37.2` → `v1.37.2`).
fn server_version(bin: &Path) -> String {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", bin.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|word| word.starts_with('v'))
        .unwrap_or("unknown")
        .to_string()
}

/// An etcd + kube-apiserver pair listening on free loopback ports, living in
/// a fresh temp dir. Everything is stopped and removed on drop.
pub struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    token: String,
    apiserver_port: u16,
    apiserver_bin: PathBuf,
    apiserver_args: Vec<OsString>,
    /// What `kube-apiserver --version` printed, e.g. `v1.37.2`.
    version: String,
    /// `http://127.0.0.1:PORT` of etcd's client port.
    etcd_url: String,
    etcd: Option<Guarded>,
    apiserver: Option<Guarded>,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports in a fresh temp
    /// dir and waits until `/readyz` answers `ok` (timeout 60 s).
    ///
    /// Panics if the binaries are missing (pointing at `tests/provision.sh`)
    /// or a component fails to become ready (with the tail of its log).
    pub fn start() -> ControlPlane {
        Self::start_with(&[])
    }

    /// [`ControlPlane::start`], with `extra` flags for kube-apiserver.
    pub fn start_with(extra: &[&str]) -> ControlPlane {
        let hint =
            "run `eval \"$(tests/provision.sh --print-env)\"` (or the README's test command) first";
        let apiserver_bin = match std::env::var_os("SAVEPOINT_WEBHOOK_KUBE_APISERVER") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => panic!("SAVEPOINT_WEBHOOK_KUBE_APISERVER is not set; {hint}"),
        };
        if !apiserver_bin.is_file() {
            panic!(
                "SAVEPOINT_WEBHOOK_KUBE_APISERVER={} does not exist; {hint}",
                apiserver_bin.display()
            );
        }
        let etcd_bin = PathBuf::from(
            std::env::var_os("SAVEPOINT_WEBHOOK_ETCD")
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/usr/bin/etcd".into()),
        );
        if !etcd_bin.is_file() {
            panic!("etcd binary {} does not exist; {hint}", etcd_bin.display());
        }

        let dir = make_temp_dir();
        let token = random_hex(32);
        let apiserver_port = free_port();
        let (etcd_port, etcd_peer_port) = (free_port(), free_port());
        let kubeconfig = dir.join("kubeconfig");

        // From here on, a panic drops `cp`, which cleans up.
        let mut cp = ControlPlane {
            dir: dir.clone(),
            kubeconfig: kubeconfig.clone(),
            token: token.clone(),
            apiserver_port,
            version: server_version(&apiserver_bin),
            etcd_url: format!("http://127.0.0.1:{etcd_port}"),
            apiserver_bin,
            apiserver_args: Vec::new(),
            etcd: None,
            apiserver: None,
        };

        let sa_key = dir.join("sa.key");
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&sa_key)
            .arg("2048")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run openssl (is it installed? {hint}): {e}"));
        assert!(status.success(), "openssl genrsa failed: {status}");

        fs::write(
            dir.join("tokens.csv"),
            format!("{token},admin,admin,\"system:masters\"\n"),
        )
        .expect("cannot write tokens.csv");
        fs::write(
            &kubeconfig,
            kubeconfig_yaml(&cp.server_url(), &token, &ADMIN),
        )
        .expect("cannot write kubeconfig");

        // etcd
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd_args: Vec<OsString> = vec![
            "--name=default".into(),
            arg("--data-dir=", dir.join("etcd")),
            format!("--listen-client-urls={etcd_url}").into(),
            format!("--advertise-client-urls={etcd_url}").into(),
            format!("--listen-peer-urls={peer_url}").into(),
            format!("--initial-advertise-peer-urls={peer_url}").into(),
            format!("--initial-cluster=default={peer_url}").into(),
        ];
        let etcd_log = dir.join("etcd.log");
        cp.etcd = Some(Guarded::spawn(
            &etcd_bin,
            &etcd_args,
            &[],
            &etcd_log,
            Some(&dir),
        ));
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, etcd_port)).is_err() {
            if let Some(status) = cp.etcd.as_mut().and_then(Guarded::exited) {
                panic!(
                    "etcd exited early ({status}); log tail:\n{}",
                    log_tail(&etcd_log, 40)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd not listening after {READY_TIMEOUT:?}; log tail:\n{}",
                    log_tail(&etcd_log, 40)
                );
            }
            sleep(Duration::from_millis(100));
        }

        // kube-apiserver
        eprintln!("control plane: kube-apiserver {}", cp.version);
        cp.apiserver_args = vec![
            format!("--etcd-servers={etcd_url}").into(),
            format!("--secure-port={apiserver_port}").into(),
            "--bind-address=127.0.0.1".into(),
            arg("--cert-dir=", dir.join("certs")),
            arg("--token-auth-file=", dir.join("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            arg("--service-account-key-file=", &sa_key),
            arg("--service-account-signing-key-file=", &sa_key),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            "--service-cluster-ip-range=10.96.0.0/24".into(),
            // No controller-manager creates `default` service accounts, so the
            // ServiceAccount admission plugin would reject every Pod.
            "--disable-admission-plugins=ServiceAccount".into(),
        ];
        // The insecure port is off by default from 1.20 and the flag is gone from 1.24.
        if cp.minor() < 24 {
            cp.apiserver_args.push("--insecure-port=0".into());
        }
        cp.apiserver_args
            .extend(extra.iter().map(|flag| OsString::from(*flag)));
        cp.start_apiserver();
        cp
    }

    /// etcd's client URL (`http://127.0.0.1:PORT`), for tests that talk to etcd itself.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// The kube-apiserver's version, e.g. `v1.37.2`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The minor version (`37` for `v1.37.2`); 0 when it cannot be read.
    pub fn minor(&self) -> u32 {
        self.version
            .trim_start_matches('v')
            .split('.')
            .nth(1)
            .and_then(|minor| minor.parse().ok())
            .unwrap_or(0)
    }

    /// Path of a kubeconfig for this cluster (bearer token with
    /// `system:masters`, `insecure-skip-tls-verify`, current context set).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT` of the kube-apiserver.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// The bearer token of the cluster-admin user.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The process ids of kube-apiserver (while it runs) and etcd.
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.apiserver.as_ref().map(Guarded::pid),
            self.etcd.as_ref().map(Guarded::pid),
        )
    }

    /// The temp dir holding data, certs, logs (`etcd.log`,
    /// `kube-apiserver.log`) and the kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills kube-apiserver (SIGKILL) and waits for it; etcd keeps running.
    /// No-op if it is not running.
    pub fn stop_apiserver(&mut self) {
        if let Some(apiserver) = self.apiserver.take() {
            apiserver.kill();
        }
    }

    /// (Re)starts kube-apiserver with the same flags, port and etcd, and
    /// waits until `/readyz` answers `ok` (timeout 60 s). No-op if running.
    pub fn start_apiserver(&mut self) {
        if self.apiserver.is_some() {
            return;
        }
        let log = self.dir.join("kube-apiserver.log");
        self.apiserver = Some(Guarded::spawn(
            &self.apiserver_bin,
            &self.apiserver_args,
            &[],
            &log,
            None,
        ));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.readyz() {
                return;
            }
            if let Some(status) = self.apiserver.as_mut().and_then(Guarded::exited) {
                self.apiserver = None;
                panic!(
                    "kube-apiserver {} exited early ({status}); log tail:\n{}",
                    self.version,
                    log_tail(&log, 40)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "kube-apiserver {} not ready after {READY_TIMEOUT:?}; log tail:\n{}",
                    self.version,
                    log_tail(&log, 40)
                );
            }
            sleep(Duration::from_millis(250));
        }
    }

    /// Whether GET /readyz answers `ok`.
    fn readyz(&self) -> bool {
        Command::new("curl")
            .args(["-sk", "--max-time", "2", "-H"])
            .arg(format!("Authorization: Bearer {}", self.token))
            .arg(format!("{}/readyz", self.server_url()))
            .stderr(Stdio::null())
            .output()
            .map(|out| out.status.success() && out.stdout.trim_ascii() == b"ok")
            .unwrap_or_else(|e| panic!("cannot run curl (is it installed?): {e}"))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_apiserver();
        if let Some(etcd) = self.etcd.take() {
            etcd.kill();
        }
        if std::env::var_os("SAVEPOINT_WEBHOOK_KEEP_CONTROL_PLANE_DIR").is_some() {
            eprintln!("control plane: keeping {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn arg(flag: &str, path: impl AsRef<Path>) -> OsString {
    let mut s = OsString::from(flag);
    s.push(path.as_ref());
    s
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("cannot bind 127.0.0.1:0")
        .port()
}

fn make_temp_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "savepoint-webhook-cp-{}-{n}-{nanos}",
        std::process::id()
    ));
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// `len` random hex chars (from std's randomly keyed hasher).
fn random_hex(len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(s.len());
        s.push_str(&format!("{:016x}", h.finish()));
    }
    s.truncate(len);
    s
}

/// Who a kubeconfig acts as: the admin token itself, or a user it impersonates.
pub struct KubeconfigUser<'a> {
    /// Name of the kubeconfig user entry.
    pub name: &'a str,
    /// Impersonated user and groups (`as`, `as-groups`), if any.
    pub impersonate: Option<(&'a str, &'a [&'a str])>,
    /// Default namespace of the context.
    pub namespace: &'a str,
}

/// The admin of the test control plane.
pub const ADMIN: KubeconfigUser<'static> = KubeconfigUser {
    name: "admin",
    impersonate: None,
    namespace: "default",
};

/// A kubeconfig for the API server at `server` with the admin `token`, acting as `user`.
pub fn kubeconfig_yaml(server: &str, token: &str, user: &KubeconfigUser<'_>) -> String {
    let mut impersonation = String::new();
    if let Some((who, groups)) = user.impersonate {
        impersonation.push_str(&format!("    as: {who}\n    as-groups:\n"));
        for group in groups {
            impersonation.push_str(&format!("    - {group}\n"));
        }
    }
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: savepoint-test
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: {name}
  user:
    token: {token}
{impersonation}contexts:
- name: savepoint-test
  context:
    cluster: savepoint-test
    user: {name}
    namespace: {namespace}
current-context: savepoint-test
",
        name = user.name,
        namespace = user.namespace,
    )
}

/// The last `n` lines of a log file (best effort).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return format!("<cannot read {}: {e}>", path.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
