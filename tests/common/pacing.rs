//! A steady client of the test cluster: [`every`] sends one request per period until told
//! to stop, as the rolling-restart and renewal tests load the API server.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::MissedTickBehavior;

/// Calls `send(0)`, `send(1)`, ... one `period` apart, the first after `first_after`,
/// until `stop` is set; returns what each call gave, in order. A call that outlasts its
/// period delays the next rather than bunching calls up.
pub async fn every<T, F, Fut>(
    first_after: Duration,
    period: Duration,
    stop: &AtomicBool,
    mut send: F,
) -> Vec<T>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = T>,
{
    tokio::time::sleep(first_after).await;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut answers = Vec::new();
    for seq in 0.. {
        ticker.tick().await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        answers.push(send(seq).await);
    }
    answers
}
