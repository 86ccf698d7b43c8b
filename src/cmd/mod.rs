//! Wiring of each subcommand; the logic lives in the library.

pub mod audit;
pub mod certs;
pub mod inspect;
pub mod probe;
pub mod review;
pub mod serve;
