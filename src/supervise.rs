//! [`Supervisor`]: owns every long-lived task of `serve` (watches, reconciler, lease,
//! certificate reload, hold expiry). They are meant to run until the process stops, so
//! one that ends, by returning or by panicking, is a failure the process must not outlive:
//! [`Supervisor::first_exit`] names it and says why.

use std::future::Future;

use tokio::task::JoinSet;

/// Why a supervised task ended.
#[derive(Debug, thiserror::Error)]
pub enum TaskEnded {
    /// It returned, which a long-lived task never should.
    #[error("task {0:?} ended unexpectedly")]
    Returned(&'static str),
    /// It panicked.
    #[error("task {name:?} panicked: {message}")]
    Panicked {
        /// The task.
        name: &'static str,
        /// The panic message.
        message: String,
    },
}

/// Long-lived tasks, each with a name.
#[derive(Default)]
pub struct Supervisor {
    tasks: JoinSet<&'static str>,
    names: Vec<(tokio::task::Id, &'static str)>,
}

impl Supervisor {
    /// Spawns `task` under `name`.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.tasks.spawn(async move {
            task.await;
            name
        });
        self.names.push((handle.id(), name));
    }

    /// Waits for the first task to end and says which and why; pending forever when no
    /// task is supervised.
    pub async fn first_exit(&mut self) -> TaskEnded {
        match self.tasks.join_next_with_id().await {
            Some(Ok((_, name))) => TaskEnded::Returned(name),
            Some(Err(err)) => {
                let name = self
                    .names
                    .iter()
                    .find(|(id, _)| *id == err.id())
                    .map_or("unknown", |(_, name)| *name);
                let message = match err.try_into_panic() {
                    Ok(payload) => panic_message(payload.as_ref()),
                    Err(err) => err.to_string(),
                };
                TaskEnded::Panicked { name, message }
            }
            None => std::future::pending().await,
        }
    }

    /// Stops every task.
    pub async fn shutdown(&mut self) {
        self.tasks.shutdown().await;
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_returns_is_named() {
        let mut supervisor = Supervisor::default();
        supervisor.spawn("forever", std::future::pending());
        supervisor.spawn("short", async {});
        let ended = supervisor.first_exit().await;
        assert!(matches!(ended, TaskEnded::Returned("short")), "{ended}");
        supervisor.shutdown().await;
    }

    #[tokio::test]
    async fn a_task_that_panics_is_named_with_its_message() {
        let mut supervisor = Supervisor::default();
        supervisor.spawn("watch", async { panic!("stream broke") });
        let ended = supervisor.first_exit().await;
        assert_eq!(ended.to_string(), "task \"watch\" panicked: stream broke");
    }
}
