//! The flood harness: the floods, one function each.

use super::*;

/// What every flood is given.
pub(crate) struct Ctx {
    pub(crate) target: Arc<Target>,
    /// When the flood ends.
    pub(crate) deadline: Instant,
    /// Ends a request flood early, before the server takes the machine's memory.
    pub(crate) over: OverLimit,
    pub(crate) connections: u64,
    pub(crate) streams: u64,
}

/// What a flood sent and was answered.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) sent: u64,
    /// Answers by status; `error` for a failed exchange, `cut` for one unanswered when
    /// the flood ended.
    pub(crate) answers: BTreeMap<String, u64>,
    /// The largest answer body, where the flood looks at them.
    pub(crate) largest_answer: Option<usize>,
    pub(crate) first_error: Option<String>,
    /// When it stopped at the RSS limit, if it did.
    pub(crate) limited: Option<Instant>,
    /// Anything else worth reporting.
    pub(crate) notes: Vec<String>,
}

impl Tally {
    fn answer(&mut self, label: impl Into<String>) {
        *self.answers.entry(label.into()).or_default() += 1;
    }

    fn error(&mut self, err: impl std::fmt::Display) {
        self.answer("error");
        if self.first_error.is_none() {
            self.first_error = Some(err.to_string());
        }
    }

    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        for (label, n) in other.answers {
            *self.answers.entry(label).or_default() += n;
        }
        self.largest_answer = self.largest_answer.max(other.largest_answer);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.limited = match (self.limited, other.limited) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.notes.extend(other.notes);
    }
}

/// A flood's tally, and what it keeps open until the end has been measured.
pub(crate) struct Run {
    pub(crate) tally: Tally,
    pub(crate) hold: Box<dyn Send>,
}

impl From<Tally> for Run {
    fn from(tally: Tally) -> Self {
        Self {
            tally,
            hold: Box::new(()),
        }
    }
}

pub(crate) async fn run(kind: Which, ctx: &Ctx) -> Result<Run> {
    Ok(match kind {
        Which::GenerateName => generate_name(ctx).await?.into(),
        Which::UniqueLocations => unique_locations(ctx).await?.into(),
        Which::CopiedWarning => copied_warning(ctx).await?.into(),
        Which::H2Unread => h2_unread(ctx).await?,
        Which::IdleSlots => idle_slots(ctx).await?,
        Which::ErrorEcho => error_echo(ctx).await?.into(),
        Which::All => bail!("`all` is not a flood of its own"),
    })
}

/// Renders the body of the `i`th request.
type Bodies = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;

/// Requests at full speed (each worker sends its next when the answer arrives) over
/// `connections × streams` workers, until the deadline, the RSS limit, or `limit`
/// requests.
async fn flood(ctx: &Ctx, bodies: Bodies, limit: Option<u64>) -> Result<Tally> {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..ctx.connections {
        let conn = Conn::open(&ctx.target).await?;
        for _ in 0..ctx.streams {
            workers.push(tokio::spawn(worker(
                conn.clone(),
                ctx.target.clone(),
                bodies.clone(),
                next.clone(),
                limit,
                ctx.deadline,
                ctx.over.clone(),
            )));
        }
    }
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.await?);
    }
    Ok(tally)
}

async fn worker(
    mut conn: Conn,
    target: Arc<Target>,
    bodies: Bodies,
    next: Arc<AtomicU64>,
    limit: Option<u64>,
    deadline: Instant,
    over: OverLimit,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        if Instant::now() >= deadline {
            break;
        }
        if over.now() {
            tally.limited = Some(Instant::now());
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|limit| i >= limit) {
            break;
        }
        let request = match target.mutate(bodies(i)) {
            Ok(request) => request,
            Err(err) => {
                tally.error(err);
                break;
            }
        };
        tally.sent += 1;
        match tokio::time::timeout_at(deadline.into(), conn.call(request)).await {
            Err(_) => tally.answer("cut"),
            Ok(Ok((status, body))) => {
                tally.answer(status.as_u16().to_string());
                tally.largest_answer = tally.largest_answer.max(Some(body.len()));
            }
            Ok(Err(err)) => {
                tally.error(format!("{err:#}"));
                match reconnect(&target, deadline).await {
                    Some(fresh) => conn = fresh,
                    None => break,
                }
            }
        }
    }
    tally
}

/// A new connection after the old one failed, retried until the deadline.
async fn reconnect(target: &Target, deadline: Instant) -> Option<Conn> {
    while Instant::now() < deadline {
        if let Ok(Ok(conn)) = tokio::time::timeout_at(deadline.into(), Conn::open(target)).await {
            return Some(conn);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Creates with an empty name and a ~700 KiB `generateName`, each of a new location.
async fn generate_name(ctx: &Ctx) -> Result<Tally> {
    let template = Template::create(false, Some(&"g".repeat(700 * 1024)))?;
    let bodies: Bodies = Arc::new(move |i| {
        template.render(&Fill {
            uid: &reviews::uid(i),
            name: "",
            location: &reviews::location(i),
        })
    });
    flood(ctx, bodies, None).await
}

/// Creates, each of a new location.
async fn unique_locations(ctx: &Ctx) -> Result<Tally> {
    let template = Template::create(false, None)?;
    let bodies: Bodies = Arc::new(move |i| {
        template.render(&Fill {
            uid: &reviews::uid(i),
            name: &format!("flood-{i}"),
            location: &reviews::location(i),
        })
    });
    flood(ctx, bodies, None).await
}

/// Savepoints of the shared location created before the dry runs.
const HOLDERS: u64 = 300;

/// [`HOLDERS`] creates of one location with 250-character names, then dry-run creates of
/// it (each answer's COPIED warning names every holder).
async fn copied_warning(ctx: &Ctx) -> Result<Tally> {
    let shared = Arc::new(reviews::shared_location());
    let holders: Bodies = {
        let template = Template::create(false, None)?;
        let shared = shared.clone();
        Arc::new(move |i| {
            template.render(&Fill {
                uid: &reviews::uid(i),
                name: &format!("{}-{i:05}", "n".repeat(244)),
                location: &shared,
            })
        })
    };
    let mut tally = flood(ctx, holders, Some(HOLDERS)).await?;
    let dry_runs: Bodies = {
        let template = Template::create(true, None)?;
        Arc::new(move |i| {
            template.render(&Fill {
                uid: &reviews::uid(HOLDERS + i),
                name: &format!("dry-run-{i}"),
                location: &shared,
            })
        })
    };
    tally.merge(flood(ctx, dry_runs, None).await?);
    Ok(tally)
}

/// HTTP/2 connections of the `h2-unread` flood.
const UNREAD_CONNECTIONS: usize = 2;
/// Streams on each: the server's default `--max-concurrent-streams`.
const UNREAD_STREAMS: usize = 128;

/// Dry-run creates with ~500 KiB uids (which every answer repeats) on streams whose
/// client advertised a zero window and never reads; held open until the end.
async fn h2_unread(ctx: &Ctx) -> Result<Run> {
    let template = Template::create(true, None)?;
    let long_uid = "u".repeat(500 * 1024);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (release, released) = tokio::sync::watch::channel(());
    for c in 0..UNREAD_CONNECTIONS {
        let send = ctx.target.raw_h2(0).await?;
        for s in 0..UNREAD_STREAMS {
            let i = (c * UNREAD_STREAMS + s) as u64;
            let body = template.render(&Fill {
                uid: &format!("{i:06}-{long_uid}"),
                name: &format!("unread-{i}"),
                location: &reviews::location(i),
            });
            let mut ready = send.clone().ready().await?;
            let request = Request::post(ctx.target.uri(MUTATE))
                .header(header::CONTENT_TYPE, "application/json")
                .body(())?;
            let (response, mut stream) = ready.send_request(request, false)?;
            stream.send_data(body, true)?;
            lock(&tally).sent += 1;
            let (tally, mut released, deadline) = (tally.clone(), released.clone(), ctx.deadline);
            tokio::spawn(async move {
                let _stream = stream;
                let _body = match tokio::time::timeout_at(deadline.into(), response).await {
                    Ok(Ok(response)) => {
                        lock(&tally).answer(response.status().as_u16().to_string());
                        Some(response.into_body())
                    }
                    Ok(Err(err)) => {
                        lock(&tally).error(err);
                        None
                    }
                    Err(_) => {
                        lock(&tally).answer("cut");
                        None
                    }
                };
                // Unread until the end has been measured.
                let _ = released.changed().await;
            });
        }
    }
    tokio::time::sleep_until(ctx.deadline.into()).await;
    let tally = std::mem::take(&mut *lock(&tally));
    Ok(Run {
        tally,
        hold: Box::new(release),
    })
}

/// The mutex's value, also after a holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connections of the `idle-slots` flood: the server's default `--max-connections`.
const IDLE_CONNECTIONS: usize = 1024;
/// Connections being opened at once.
const OPENING: usize = 16;

/// [`IDLE_CONNECTIONS`] HTTP/2 connections that each get one answer and then stay quiet,
/// held open until the end; a new client tries its luck once they are all open.
async fn idle_slots(ctx: &Ctx) -> Result<Run> {
    let body = Bytes::from(serde_json::to_vec(&read_fixture("savepoint-dryrun.json")?)?);
    let opening = Instant::now();
    let opened = futures::stream::iter(0..IDLE_CONNECTIONS)
        .map(|_| {
            let (target, body, deadline) = (ctx.target.clone(), body.clone(), ctx.deadline);
            async move {
                let exchange = async {
                    let mut conn = Conn::open(&target).await?;
                    let (status, _) = conn.call(target.mutate(body)?).await?;
                    anyhow::Ok((conn, status))
                };
                match tokio::time::timeout_at(deadline.into(), exchange).await {
                    Ok(Ok((conn, status))) => (Some(conn), status.as_u16().to_string()),
                    Ok(Err(err)) => (None, format!("error: {err:#}")),
                    Err(_) => (None, "cut".to_string()),
                }
            }
        })
        .buffer_unordered(OPENING)
        .collect::<Vec<_>>()
        .await;
    let mut tally = Tally {
        sent: opened.len() as u64,
        ..Tally::default()
    };
    let mut conns = Vec::new();
    for (conn, outcome) in opened {
        match outcome.strip_prefix("error: ") {
            Some(err) => tally.error(err),
            None => tally.answer(outcome),
        }
        conns.extend(conn);
    }
    let opened_in = opening.elapsed();
    let fresh = fresh_client(&ctx.target).await;
    tally.notes.push(format!(
        "with {} connections open (in {:.1} s), a new client: {}{}",
        conns.len(),
        opened_in.as_secs_f64(),
        fresh.cell(),
        if fresh.ok {
            String::new()
        } else {
            format!(" ({})", fresh.detail)
        }
    ));
    tokio::time::sleep_until(ctx.deadline.into()).await;
    Ok(Run {
        tally,
        hold: Box::new(conns),
    })
}

/// Posts with a ~900 KiB `kind`, which the 400 answer names.
async fn error_echo(ctx: &Ctx) -> Result<Tally> {
    let body = reviews::long_kind(900 * 1024)?;
    let bodies: Bodies = Arc::new(move |_| body.clone());
    flood(ctx, bodies, None).await
}
