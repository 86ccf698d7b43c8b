//! The flood harness: the binary under test as a child process, and its memory sampler.

use super::*;

/// How long the server gets to start answering `/readyz`.
const STARTUP: Duration = Duration::from_secs(30);

/// A `serve --state deploy/examples/state --self-signed` child on a free loopback port,
/// killed on drop.
pub(crate) struct Served {
    child: Child,
    pub(crate) pid: u32,
    dir: tempfile::TempDir,
}

impl Served {
    /// Starts the server and waits until it is ready; where and how to reach it.
    pub(crate) async fn start(binary: &Path) -> Result<(Self, Arc<Target>)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let log = std::fs::File::create(dir.path().join("serve.log"))?;
        let child = Command::new(binary)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["serve", "--state", "deploy/examples/state", "--self-signed"])
            .arg("--self-signed-dir")
            .arg(dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            // Memory, not object-store latency: no location is read.
            .args(["--verify-location", "off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let mut served = Self { child, pid, dir };
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = served.child.try_wait()? {
                bail!("the server exited with {status}: {}", served.log_tail());
            }
            ensure!(
                Instant::now() < deadline,
                "the server was not ready within {STARTUP:?}: {}",
                served.log_tail()
            );
            if let Ok(ca) = std::fs::read_to_string(served.dir.path().join("ca.crt")) {
                if let Ok(target) = Target::new(SocketAddr::from(([127, 0, 0, 1], port)), &ca) {
                    if ready(&target).await {
                        return Ok((served, Arc::new(target)));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines the server logged.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Whether the process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /readyz` answers 200.
async fn ready(target: &Target) -> bool {
    let attempt = async {
        let mut conn = Conn::open(target).await?;
        let request = Request::get(target.uri("/readyz")).body(Full::new(Bytes::new()))?;
        anyhow::Ok(conn.call(request).await?.0 == StatusCode::OK)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

/// The figures of `/proc/PID/status` in KiB, read every [`Memory::PERIOD`] on a thread of
/// its own.
pub(crate) struct Memory {
    pid: u32,
    /// VmRSS of the last sample.
    rss_kib: Arc<AtomicU64>,
    /// VmHWM of the last sample: the kernel's peak, which sees between the samples.
    hwm_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Memory {
    pub(crate) const PERIOD: Duration = Duration::from_millis(50);

    pub(crate) fn sample(pid: u32) -> Result<Self> {
        let rss_kib = Arc::new(AtomicU64::new(0));
        let hwm_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let read = move |rss: &AtomicU64, hwm: &AtomicU64| {
            if let Some((r, h)) = status_kib(pid) {
                rss.store(r, Ordering::Relaxed);
                hwm.store(h, Ordering::Relaxed);
            }
        };
        read(&rss_kib, &hwm_kib);
        let thread = {
            let (rss_kib, hwm_kib, stop) = (rss_kib.clone(), hwm_kib.clone(), stop.clone());
            std::thread::Builder::new()
                .name("rss".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        read(&rss_kib, &hwm_kib);
                        std::thread::sleep(Self::PERIOD);
                    }
                })?
        };
        Ok(Self {
            pid,
            rss_kib,
            hwm_kib,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn rss_mib(&self) -> f64 {
        self.rss_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }

    pub(crate) fn hwm_mib(&self) -> f64 {
        self.hwm_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }

    /// VmRSS read now, not from the last sample.
    pub(crate) fn now_mib(&self) -> Option<f64> {
        status_kib(self.pid).map(|(rss, _)| rss as f64 / 1024.0)
    }

    /// VmHWM read now.
    pub(crate) fn now_hwm_mib(&self) -> Option<f64> {
        status_kib(self.pid).map(|(_, hwm)| hwm as f64 / 1024.0)
    }

    /// A handle that tells whether the RSS has passed `limit_mib`.
    pub(crate) fn over(&self, limit_mib: u64) -> OverLimit {
        OverLimit {
            rss_kib: self.rss_kib.clone(),
            limit_kib: limit_mib.saturating_mul(1024),
        }
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether the server's last sampled RSS is past the limit.
#[derive(Clone)]
pub(crate) struct OverLimit {
    rss_kib: Arc<AtomicU64>,
    limit_kib: u64,
}

impl OverLimit {
    pub(crate) fn now(&self) -> bool {
        self.rss_kib.load(Ordering::Relaxed) > self.limit_kib
    }
}

/// VmRSS and VmHWM of `pid`, in KiB.
fn status_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
