//! The flags of location verification, shared by `serve` and `review`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{
    Depth, FullReadLimits, Mode, S3Addressing, StoreSettings, Verifier, VerifyConfig, VerifyError,
};
use crate::duration::parse_duration;

/// Location verification flags.
#[derive(Clone, Debug, Args)]
pub struct VerifyArgs {
    /// Check that a new Savepoint's location holds a Flink savepoint (LOCATION/_metadata):
    /// off; warn (any finding but "verified" is a warning); deny (refuse a location
    /// without a readable Flink savepoint; "could not check" stays a warning).
    #[arg(long, value_enum, default_value_t = Mode::Warn, env = "SAVEPOINT_WEBHOOK_VERIFY_LOCATION")]
    pub verify_location: Mode,
    /// How much of _metadata a check reads: header (format, checkpoint id) or full (the
    /// whole file, and whether every state file it references is there; a full read past
    /// the time left is "could not check" and finishes in the background for the next
    /// check).
    #[arg(long, value_enum, default_value_t = Depth::Header, env = "SAVEPOINT_WEBHOOK_VERIFY_DEPTH")]
    pub verify_depth: Depth,
    /// Longest time one location check may take (less when the API server's timeout
    /// leaves less); past it the location is "could not check".
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub verify_timeout: Duration,
    /// How long a verified location is remembered.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub verify_cache_ttl: Duration,
    /// How long any other finding is remembered.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub verify_failure_ttl: Duration,
    /// A directory under which file: locations are read (repeatable); file locations
    /// elsewhere are "could not check".
    #[arg(long = "verify-file-root", value_name = "DIR")]
    pub verify_file_roots: Vec<PathBuf>,
    /// S3 endpoint for s3/s3a/s3p locations, e.g. https://minio.storage:9000 [default:
    /// AWS_ENDPOINT, else AWS]
    #[arg(long, value_name = "URL")]
    pub verify_s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION or AWS_DEFAULT_REGION, else us-east-1]
    #[arg(long, value_name = "REGION")]
    pub verify_s3_region: Option<String>,
    /// S3 request style: ENDPOINT/BUCKET/KEY or BUCKET.ENDPOINT/KEY.
    #[arg(long, value_enum, default_value_t = S3Addressing::Path)]
    pub verify_s3_addressing: S3Addressing,
    /// Allow plain HTTP to the S3 endpoint (a test endpoint on loopback).
    #[arg(long)]
    pub verify_s3_allow_http: bool,
    /// Get store credentials from the cloud's instance metadata service (EC2 instance
    /// role, GKE workload identity, Azure managed identity) when the environment holds
    /// none.
    #[arg(long)]
    pub verify_instance_metadata: bool,
}

impl VerifyArgs {
    /// The settings these flags describe.
    pub fn config(&self) -> VerifyConfig {
        VerifyConfig {
            mode: self.verify_location,
            timeout: self.verify_timeout,
            verified_ttl: self.verify_cache_ttl,
            failure_ttl: self.verify_failure_ttl,
            file_roots: self.verify_file_roots.clone(),
            stores: StoreSettings {
                s3_endpoint: self.verify_s3_endpoint.clone(),
                s3_region: self.verify_s3_region.clone(),
                s3_addressing: self.verify_s3_addressing,
                s3_allow_http: self.verify_s3_allow_http,
                instance_metadata: self.verify_instance_metadata,
                timeout: self.verify_timeout,
            },
            depth: self.verify_depth,
            full: FullReadLimits::default(),
        }
    }

    /// The verifier these flags describe; `None` when verification is off.
    pub fn verifier(&self) -> Result<Option<Verifier>, VerifyError> {
        if self.verify_location == Mode::Off {
            return Ok(None);
        }
        Verifier::new(self.config()).map(Some)
    }
}
