//! Convergence beyond admission: [`plan`] finds what breaks the contract among stored
//! Savepoints and the repairs that fix it; [`runner`] applies them on the one replica that
//! holds the [`lease`]; the `audit` command prints the same findings. [`report`] turns
//! the findings into `openreports.io` Reports, which [`publish`] writes.

pub mod lease;
pub mod metrics;
pub mod plan;
pub mod publish;
pub mod report;
pub mod runner;
