//! The load harness: measurement (closed and open loop, rounds, CPU per thread).

use super::*;

/// CPU time of the server's threads and of the whole process, from `/proc`.
#[derive(Clone, Copy, Default)]
pub(crate) struct Cpu {
    pub(crate) server_ns: u64,
    pub(crate) total_ns: u64,
}

pub(crate) fn thread_cpu_ns(tid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

pub(crate) fn cpu_now(server_tids: &Mutex<Vec<String>>) -> Cpu {
    let server = server_tids.lock().unwrap_or_else(|p| p.into_inner());
    let mut cpu = Cpu::default();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let tid = task.file_name().to_string_lossy().into_owned();
            let ns = thread_cpu_ns(&tid).unwrap_or(0);
            cpu.total_ns += ns;
            if server.contains(&tid) {
                cpu.server_ns += ns;
            }
        }
    }
    cpu
}

/// Closed loop (as fast as answers come) or open loop at a rate, in requests per second.
#[derive(Clone, Copy)]
pub(crate) enum Load {
    Saturation,
    Rate(f64),
}

/// Latencies in nanoseconds in bounded memory, however long the run: 1 ns to 60 s at
/// three significant digits (HdrHistogram).
pub(crate) struct Latencies(hdrhistogram::Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("the bounds are valid"),
        )
    }
}

impl Latencies {
    pub(crate) fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1));
    }

    pub(crate) fn add(&mut self, other: &Latencies) {
        self.0
            .add(&other.0)
            .expect("histograms of the same bounds add");
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len() as usize
    }

    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }
}

/// What one worker saw.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) latencies_ns: Latencies,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) late: u64,
}

/// The outcome of one phase.
pub(crate) struct Phase {
    pub(crate) load: Load,
    pub(crate) requests: usize,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) late: u64,
    pub(crate) duration: Duration,
    /// Requests per second of each round, when the phase ran in several.
    pub(crate) round_rates: Vec<f64>,
    /// 99th percentile latency of each round, when the phase ran in several.
    pub(crate) round_p99s_ns: Vec<u64>,
    pub(crate) latencies_ns: Latencies,
    pub(crate) cpu: Cpu,
}

impl Phase {
    /// Requests per second: the median of the rounds', so that a round disturbed by
    /// something else on the machine does not move it.
    pub(crate) fn rate(&self) -> f64 {
        let mut rates = self.round_rates.clone();
        rates.sort_by(f64::total_cmp);
        match rates.len() {
            0 => self.requests as f64 / self.duration.as_secs_f64(),
            n if n % 2 == 1 => rates[n / 2],
            n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
        }
    }

    /// (slowest − fastest) / median of the rounds' throughputs: how much the machine
    /// alone moved this phase.
    pub(crate) fn round_spread(&self) -> f64 {
        let (min, max) = self
            .round_rates
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), &r| {
                (lo.min(r), hi.max(r))
            });
        if self.round_rates.len() < 2 {
            0.0
        } else {
            (max - min) / self.rate()
        }
    }

    /// The median of the rounds' 99th percentile latencies: unlike the pooled one, not
    /// moved by a few milliseconds' stall of the machine in one round.
    pub(crate) fn median_round_p99_ns(&self) -> u64 {
        let mut p99s = self.round_p99s_ns.clone();
        p99s.sort_unstable();
        match p99s.len() {
            0 => self.percentile_ns(0.99),
            n => p99s[(n - 1) / 2],
        }
    }

    /// One phase out of several rounds of the same route and load: latencies and CPU
    /// pooled, throughput the median round's.
    pub(crate) fn merge(rounds: Vec<Phase>) -> Option<Phase> {
        let mut rounds = rounds.into_iter();
        let mut all = rounds.next()?;
        all.round_rates = vec![all.requests as f64 / all.duration.as_secs_f64()];
        all.round_p99s_ns = vec![all.percentile_ns(0.99)];
        for round in rounds {
            all.round_rates
                .push(round.requests as f64 / round.duration.as_secs_f64());
            all.round_p99s_ns.push(round.percentile_ns(0.99));
            all.requests += round.requests;
            all.errors += round.errors;
            all.first_error = all.first_error.or(round.first_error);
            all.late += round.late;
            all.duration += round.duration;
            all.latencies_ns.add(&round.latencies_ns);
            all.cpu.server_ns += round.cpu.server_ns;
            all.cpu.total_ns += round.cpu.total_ns;
        }
        Some(all)
    }

    pub(crate) fn percentile_ns(&self, q: f64) -> u64 {
        self.latencies_ns.quantile(q)
    }

    pub(crate) fn cpu_per_request_ns(&self) -> (u64, u64) {
        let n = self.requests.max(1) as u64;
        (self.cpu.server_ns / n, self.cpu.total_ns / n)
    }
}

/// The moments of one phase: requests started in `[measure, end)` are measured.
#[derive(Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) measure: Instant,
    pub(crate) end: Instant,
}

/// Where an open-loop worker's requests come from: the times they are due, sent by the
/// pacer. `None` in the closed loop.
pub(crate) type Tokens = Option<tokio::sync::mpsc::UnboundedReceiver<Instant>>;

/// How late a request may be sent before it counts as held back.
pub(crate) const LATE: Duration = Duration::from_micros(100);

/// The pacer's slack: requests due within it are released together.
pub(crate) const SLACK: Duration = Duration::from_micros(50);

#[allow(clippy::too_many_arguments)]
pub(crate) async fn worker(
    mut conn: Conn,
    target: Arc<Target>,
    proto: Proto,
    route: Route,
    bodies: Arc<Vec<Bytes>>,
    number: usize,
    workers: usize,
    mut tokens: Tokens,
    window: Window,
) -> Tally {
    let mut tally = Tally::default();
    let mut i = number;
    let mut checked = false;
    loop {
        // Latency counts from the moment a request is due, or from when it is sent if the
        // pacer released it a little early. In the open loop a request that waited for
        // its worker (still awaiting the previous answer) is due at its schedule, so the
        // wait counts (no coordinated omission).
        let due = match &mut tokens {
            None => Instant::now(),
            Some(tokens) => match tokens.recv().await {
                Some(due) => due,
                None => break,
            },
        };
        let sent = Instant::now();
        if tokens.is_none() && sent >= window.end {
            break;
        }
        let origin = due.min(sent);
        let measured = due >= window.measure && due < window.end;
        if measured && sent > due + LATE {
            tally.late += 1;
        }
        let body = bodies[i % bodies.len()].clone();
        i += workers;
        let outcome = match target.request(proto, route, body) {
            Ok(request) => conn.call(request).await,
            Err(err) => Err(err),
        };
        let done = Instant::now();
        let error = match outcome {
            Ok((StatusCode::OK, body)) => {
                if !checked && !contains(&body, br#""allowed":true"#) {
                    Some(format!(
                        "{} answered: {}",
                        route.name(),
                        String::from_utf8_lossy(&body)
                    ))
                } else {
                    checked = true;
                    None
                }
            }
            Ok((status, body)) => Some(format!(
                "{} answered {status}: {}",
                route.name(),
                String::from_utf8_lossy(&body)
            )),
            Err(err) => Some(format!("{}: {err:#}", route.name())),
        };
        if let Some(error) = error {
            tally.errors += 1;
            tally.first_error.get_or_insert(error);
            if tally.errors > 100 {
                break;
            }
        } else if measured {
            tally
                .latencies_ns
                .record(u64::try_from((done - origin).as_nanos()).unwrap_or(u64::MAX));
        }
    }
    tally
}

/// The open loop's clock, on a thread of its own: tokio's timer has millisecond
/// granularity, which would release requests in bursts. Hands the times requests are due,
/// `rate` per second from `start` until `end`, to the workers in turn.
pub(crate) fn pace(
    workers: Vec<tokio::sync::mpsc::UnboundedSender<Instant>>,
    rate: f64,
    start: Instant,
    end: Instant,
) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut k: u32 = 0;
    loop {
        let due = start + interval * k;
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now + SLACK {
            std::thread::sleep(due - now - SLACK);
            continue;
        }
        if let Some(worker) = workers.get(k as usize % workers.len()) {
            let _ = worker.send(due);
        }
        k += 1;
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Settings shared by every phase.
pub(crate) struct Plan {
    /// Warm-up of each round.
    pub(crate) warmup: Duration,
    /// Measured time of each round.
    pub(crate) duration: Duration,
    /// Rounds of each route and load.
    pub(crate) rounds: u32,
    pub(crate) h1_connections: usize,
    pub(crate) h2_connections: usize,
    pub(crate) h2_streams: usize,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_phase(
    target: &Arc<Target>,
    plan: &Plan,
    proto: Proto,
    route: Route,
    bodies: &Arc<Vec<Bytes>>,
    load: Load,
    server_tids: &Arc<Mutex<Vec<String>>>,
) -> Result<Phase> {
    let (connections, streams) = match proto {
        Proto::Http1 => (plan.h1_connections, 1),
        Proto::Http2 => (plan.h2_connections, plan.h2_streams),
    };
    let workers = connections * streams;
    let mut conns = Vec::with_capacity(workers);
    for _ in 0..connections {
        let conn = Conn::open(target, proto)
            .await
            .with_context(|| format!("connecting over {}", proto.name()))?;
        for _ in 1..streams {
            conns.extend(conn.share());
        }
        conns.push(conn);
    }
    let start = Instant::now();
    let window = Window {
        start,
        measure: start + plan.warmup,
        end: start + plan.warmup + plan.duration,
    };
    let sampler = {
        let server_tids = server_tids.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(window.measure.into()).await;
            let (at, before) = (Instant::now(), cpu_now(&server_tids));
            tokio::time::sleep_until(window.end.into()).await;
            let (until, after) = (Instant::now(), cpu_now(&server_tids));
            (
                until - at,
                Cpu {
                    server_ns: after.server_ns - before.server_ns,
                    total_ns: after.total_ns - before.total_ns,
                },
            )
        })
    };
    let mut senders = Vec::new();
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(number, conn)| {
            let tokens = match load {
                Load::Saturation => None,
                Load::Rate(_) => {
                    let (send, receive) = tokio::sync::mpsc::unbounded_channel();
                    senders.push(send);
                    Some(receive)
                }
            };
            tokio::spawn(worker(
                conn,
                target.clone(),
                proto,
                route,
                bodies.clone(),
                number,
                workers,
                tokens,
                window,
            ))
        })
        .collect();
    let pacer = match load {
        Load::Saturation => None,
        Load::Rate(rate) => Some(
            std::thread::Builder::new()
                .name("pacer".into())
                .spawn(move || pace(senders, rate, window.start, window.end))?,
        ),
    };
    let mut tally = Tally::default();
    for handle in handles {
        let t = handle.await?;
        tally.latencies_ns.add(&t.latencies_ns);
        tally.errors += t.errors;
        tally.late += t.late;
        if tally.first_error.is_none() {
            tally.first_error = t.first_error;
        }
    }
    let (duration, cpu) = sampler.await?;
    if let Some(pacer) = pacer {
        // Done: the workers ran until it dropped their channels.
        let _ = pacer.join();
    }
    Ok(Phase {
        load,
        requests: tally.latencies_ns.len(),
        errors: tally.errors,
        first_error: tally.first_error,
        late: tally.late,
        duration,
        round_rates: Vec::new(),
        round_p99s_ns: Vec::new(),
        latencies_ns: tally.latencies_ns,
        cpu,
    })
}

/// Runs every route under `load`, interleaved in rounds (baseline, /mutate, /validate,
/// baseline, ...) so that a disturbance on the machine touches every route alike.
pub(crate) async fn run_rounds(
    target: &Arc<Target>,
    plan: &Plan,
    proto: Proto,
    bodies: &[(Route, Arc<Vec<Bytes>>)],
    load: Load,
    server_tids: &Arc<Mutex<Vec<String>>>,
) -> Result<Vec<(Route, Phase)>> {
    let mut rounds: Vec<Vec<Phase>> = bodies.iter().map(|_| Vec::new()).collect();
    for _ in 0..plan.rounds {
        for ((route, bodies), phases) in bodies.iter().zip(&mut rounds) {
            phases.push(run_phase(target, plan, proto, *route, bodies, load, server_tids).await?);
        }
    }
    Ok(bodies
        .iter()
        .zip(rounds)
        .filter_map(|((route, _), phases)| Some((*route, Phase::merge(phases)?)))
        .collect())
}

/// Sends the first requests of the `/mutate` pool once and checks the answers: every one
/// allowed, and exactly the ones naming a referenced location set to COPIED.
pub(crate) async fn check_answers(target: &Arc<Target>, pool: &Pool) -> Result<()> {
    let mut conn = Conn::open(target, Proto::Http1).await?;
    for (j, body) in pool.mutate.iter().take(64).enumerate() {
        let request = target.request(Proto::Http1, Route::Mutate, body.clone())?;
        let (status, answer) = conn.call(request).await?;
        ensure!(status == StatusCode::OK, "/mutate answered {status}");
        let review: Value = serde_json::from_slice(&answer)?;
        let response = &review["response"];
        ensure!(response["allowed"] == true, "/mutate denied: {review}");
        let copied = response["warnings"].as_array().is_some_and(|w| {
            w.iter()
                .any(|w| w.as_str().is_some_and(|w| w.contains("COPIED")))
        });
        ensure!(
            copied == (j % 2 == 0),
            "request {j}: expected COPIED {}, got {review}",
            j % 2 == 0
        );
    }
    Ok(())
}
