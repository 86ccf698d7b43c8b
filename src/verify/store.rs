//! The I/O of a check: [`Stores`] builds (and keeps) one `object_store` client per bucket
//! from the webhook's own configuration and environment, and [`Stores::read_header`] reads
//! the first bytes of a [`Target`]: through that client, or for a `file` target through the
//! bounded [`FileReader`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::ObjectStore;
#[cfg(feature = "object-stores")]
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
#[cfg(feature = "object-stores")]
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
#[cfg(feature = "object-stores")]
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as ObjectPath;
#[cfg(feature = "object-stores")]
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};

use super::files::{FileReader, FileRoot};
use super::header::{FileKind, HEADER_LEN};
use super::target::Target;

/// Most store clients kept at once (one per bucket or container).
const MAX_STORES: usize = 256;
/// Longest error text quoted in a message.
const MAX_ERROR_TEXT: usize = 300;

/// How S3 requests are addressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum S3Addressing {
    /// `https://ENDPOINT/BUCKET/KEY`.
    #[default]
    Path,
    /// `https://BUCKET.ENDPOINT/KEY`.
    VirtualHosted,
}

/// Store settings from the webhook's flags; credentials come only from its environment.
#[derive(Clone, Debug, Default)]
pub struct StoreSettings {
    /// S3 endpoint URL (default: `AWS_ENDPOINT`, else AWS for the region).
    pub s3_endpoint: Option<String>,
    /// S3 region (default: `AWS_REGION`/`AWS_DEFAULT_REGION`, else us-east-1).
    pub s3_region: Option<String>,
    /// Path-style or virtual-hosted-style requests.
    pub s3_addressing: S3Addressing,
    /// Allow plain HTTP to the S3 endpoint (a loopback test endpoint).
    pub s3_allow_http: bool,
    /// Use the cloud's instance metadata service for credentials when the environment
    /// holds none.
    pub instance_metadata: bool,
    /// Time one request may take (connect and response).
    pub timeout: Duration,
}

/// Why a header could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// There is no such file or object.
    Missing,
    /// The path names something other than a regular file, which was not read.
    NotRegular(FileKind),
    /// The store could not be asked or did not answer usefully.
    Failed(String),
    /// The object is longer than the read may be.
    TooLarge {
        /// The most bytes the read may take.
        limit: u64,
    },
}

/// Where a [`Target`] is read from.
enum Source<'t> {
    /// An object in a store: its client and path.
    Object(Arc<dyn ObjectStore>, ObjectPath),
    /// A local file, read through the [`FileReader`].
    File(&'t std::path::Path),
}

/// A store error as a [`ReadError`].
fn store_error(err: object_store::Error) -> ReadError {
    match err {
        object_store::Error::NotFound { .. } => ReadError::Missing,
        err @ (object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }) => {
            ReadError::Failed(format!("the store refused access: {}", error_text(&err)))
        }
        err => ReadError::Failed(format!("the store failed: {}", error_text(&err))),
    }
}

/// Store clients by bucket, built on first use, and the reader of local files.
pub struct Stores {
    settings: StoreSettings,
    clients: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    files: FileReader,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("settings", &self.settings)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Stores {
    /// Stores with these settings; `file` reads must resolve under `file_roots`.
    pub fn new(settings: StoreSettings, file_roots: Vec<FileRoot>) -> Self {
        Self {
            settings,
            clients: Mutex::new(HashMap::new()),
            files: FileReader::new(file_roots),
        }
    }

    /// Reads the first [`HEADER_LEN`] bytes of `target` (fewer when it is shorter). A
    /// `file` read gives up at `deadline` (see [`FileReader`]); the clients of object
    /// stores have timeouts of their own.
    pub async fn read_header(
        &self,
        target: &Target,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<u8>, ReadError> {
        let (store, path) = match self.source(target)? {
            Source::Object(store, path) => (store, path),
            Source::File(path) => return self.files.read_header(path, deadline).await,
        };
        match store.get_range(&path, 0..HEADER_LEN as u64).await {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(object_store::Error::NotFound { .. }) => Err(ReadError::Missing),
            Err(
                err @ (object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }),
            ) => Err(ReadError::Failed(format!(
                "the store refused access: {}",
                error_text(&err)
            ))),
            // A range read of an empty object fails (416 / "start beyond the end"): ask
            // for its size before calling it a failure.
            Err(err) => match store.head(&path).await {
                Ok(meta) if meta.size == 0 => Ok(Vec::new()),
                Err(object_store::Error::NotFound { .. }) => Err(ReadError::Missing),
                _ => Err(ReadError::Failed(format!(
                    "the store failed: {}",
                    error_text(&err)
                ))),
            },
        }
    }

    /// Reads all of `target` if it is at most `limit` bytes long; a longer one is
    /// [`ReadError::TooLarge`] and is not read.
    pub async fn read_all(
        &self,
        target: &Target,
        limit: u64,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<u8>, ReadError> {
        let (store, path) = match self.source(target)? {
            Source::Object(store, path) => (store, path),
            Source::File(path) => {
                let bytes = self.files.read_prefix(path, limit + 1, deadline).await?;
                return match bytes.len() as u64 > limit {
                    true => Err(ReadError::TooLarge { limit }),
                    false => Ok(bytes),
                };
            }
        };
        let found = store.get(&path).await.map_err(store_error)?;
        if found.meta.size > limit {
            return Err(ReadError::TooLarge { limit });
        }
        let bytes = found.bytes().await.map_err(store_error)?;
        Ok(bytes.to_vec())
    }

    /// The size of `target`, or why it has none.
    pub async fn size(
        &self,
        target: &Target,
        deadline: tokio::time::Instant,
    ) -> Result<u64, ReadError> {
        match self.source(target)? {
            Source::Object(store, path) => store
                .head(&path)
                .await
                .map(|meta| meta.size)
                .map_err(store_error),
            Source::File(path) => self.files.size(path, deadline).await,
        }
    }

    /// Where `target` is read from: an object-store client and path, or a local file.
    fn source<'t>(&self, target: &'t Target) -> Result<Source<'t>, ReadError> {
        Ok(match target {
            Target::File { path } => Source::File(path),
            Target::S3 { bucket, key } => Source::Object(
                self.client("s3", bucket, || self.s3(bucket))?,
                ObjectPath::from(key.as_str()),
            ),
            Target::Gcs { bucket, key } => Source::Object(
                self.client("gs", bucket, || self.gcs(bucket))?,
                ObjectPath::from(key.as_str()),
            ),
            Target::Azure { container, key } => Source::Object(
                self.client("azure", container, || self.azure(container))?,
                ObjectPath::from(key.as_str()),
            ),
        })
    }

    fn client(
        &self,
        kind: &str,
        bucket: &str,
        build: impl FnOnce() -> Result<Arc<dyn ObjectStore>, String>,
    ) -> Result<Arc<dyn ObjectStore>, ReadError> {
        let key = format!("{kind}:{bucket}");
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = build().map_err(ReadError::Failed)?;
        if clients.len() >= MAX_STORES {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    #[cfg(feature = "object-stores")]
    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: self.settings.timeout / 4,
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: self.settings.timeout,
        }
    }

    #[cfg(feature = "object-stores")]
    fn timeout_text(&self) -> String {
        format!("{}ms", self.settings.timeout.as_millis().max(1))
    }

    #[cfg(feature = "object-stores")]
    fn s3(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        let settings = &self.settings;
        let mut builder = AmazonS3Builder::from_env();
        if !settings.instance_metadata && !aws_credentials_configured(&builder, env_var) {
            return Err(NO_AWS_CREDENTIALS.to_string());
        }
        if let Some(region) = &settings.s3_region {
            builder = builder.with_region(region);
        }
        let endpoint = settings
            .s3_endpoint
            .clone()
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
        let virtual_hosted = settings.s3_addressing == S3Addressing::VirtualHosted;
        if let Some(endpoint) = endpoint {
            let endpoint = if virtual_hosted {
                bucket_endpoint(&endpoint, bucket)?
            } else {
                endpoint
            };
            builder = builder.with_endpoint(endpoint);
        }
        if settings.s3_allow_http {
            builder = builder.with_allow_http(true);
        }
        let timeout = self.timeout_text();
        let store = builder
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(virtual_hosted)
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                &timeout,
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                &timeout,
            )
            .with_retry(self.retry())
            .build()
            .map_err(|e| format!("S3 is not usable: {}", error_text(&e)))?;
        Ok(Arc::new(store))
    }

    #[cfg(feature = "object-stores")]
    fn gcs(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        let builder = GoogleCloudStorageBuilder::from_env();
        if !self.settings.instance_metadata && !gcp_credentials_configured(&builder) {
            return Err(NO_GCP_CREDENTIALS.to_string());
        }
        let timeout = self.timeout_text();
        let store = builder
            .with_bucket_name(bucket)
            .with_config(GoogleConfigKey::Client(ClientConfigKey::Timeout), &timeout)
            .with_config(
                GoogleConfigKey::Client(ClientConfigKey::ConnectTimeout),
                &timeout,
            )
            .with_retry(self.retry())
            .build()
            .map_err(|e| format!("GCS is not usable: {}", error_text(&e)))?;
        Ok(Arc::new(store))
    }

    #[cfg(feature = "object-stores")]
    fn azure(&self, container: &str) -> Result<Arc<dyn ObjectStore>, String> {
        let builder = MicrosoftAzureBuilder::from_env();
        if !self.settings.instance_metadata && !azure_credentials_configured(&builder) {
            return Err(NO_AZURE_CREDENTIALS.to_string());
        }
        let timeout = self.timeout_text();
        let store = builder
            .with_container_name(container)
            .with_config(AzureConfigKey::Client(ClientConfigKey::Timeout), &timeout)
            .with_config(
                AzureConfigKey::Client(ClientConfigKey::ConnectTimeout),
                &timeout,
            )
            .with_retry(self.retry())
            .build()
            .map_err(|e| format!("Azure is not usable: {}", error_text(&e)))?;
        Ok(Arc::new(store))
    }

    #[cfg(not(feature = "object-stores"))]
    fn s3(&self, _bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        Err(NO_OBJECT_STORES.to_string())
    }

    #[cfg(not(feature = "object-stores"))]
    fn gcs(&self, _bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        Err(NO_OBJECT_STORES.to_string())
    }

    #[cfg(not(feature = "object-stores"))]
    fn azure(&self, _container: &str) -> Result<Arc<dyn ObjectStore>, String> {
        Err(NO_OBJECT_STORES.to_string())
    }
}

#[cfg(not(feature = "object-stores"))]
const NO_OBJECT_STORES: &str =
    "this build reads no object stores (built without the cargo feature object-stores)";

#[cfg(feature = "object-stores")]
const NO_AWS_CREDENTIALS: &str = "no credentials for S3 in the webhook's environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or container credentials; or --verify-instance-metadata)";
#[cfg(feature = "object-stores")]
const NO_GCP_CREDENTIALS: &str = "no credentials for GCS in the webhook's environment (GOOGLE_SERVICE_ACCOUNT, GOOGLE_APPLICATION_CREDENTIALS or application default credentials; or --verify-instance-metadata for workload identity)";
#[cfg(feature = "object-stores")]
const NO_AZURE_CREDENTIALS: &str = "no credentials for Azure in the webhook's environment (AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY, a client secret or AZURE_FEDERATED_TOKEN_FILE; or --verify-instance-metadata for a managed identity)";

#[cfg(feature = "object-stores")]
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(feature = "object-stores")]
/// Whether the environment (as read into `builder`) names S3 credentials other than the
/// instance metadata service: static keys, a web identity token (IRSA), container
/// credentials (ECS, EKS Pod Identity), or unsigned requests.
pub fn aws_credentials_configured(
    builder: &AmazonS3Builder,
    env: impl Fn(&str) -> Option<String>,
) -> bool {
    let has = |key: AmazonS3ConfigKey| {
        builder
            .get_config_value(&key)
            .is_some_and(|v| !v.is_empty())
    };
    let skip_signature = builder
        .get_config_value(&AmazonS3ConfigKey::SkipSignature)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    (has(AmazonS3ConfigKey::AccessKeyId) && has(AmazonS3ConfigKey::SecretAccessKey))
        || (env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() && env("AWS_ROLE_ARN").is_some())
        || has(AmazonS3ConfigKey::ContainerCredentialsRelativeUri)
        || (has(AmazonS3ConfigKey::ContainerCredentialsFullUri)
            && has(AmazonS3ConfigKey::ContainerAuthorizationTokenFile))
        || skip_signature
}

#[cfg(feature = "object-stores")]
fn gcp_credentials_configured(builder: &GoogleCloudStorageBuilder) -> bool {
    let has = |key: GoogleConfigKey| {
        builder
            .get_config_value(&key)
            .is_some_and(|v| !v.is_empty())
    };
    let default_credentials = std::env::var_os("HOME").is_some_and(|home| {
        std::path::Path::new(&home)
            .join(".config/gcloud/application_default_credentials.json")
            .is_file()
    });
    has(GoogleConfigKey::ServiceAccount)
        || has(GoogleConfigKey::ServiceAccountKey)
        || has(GoogleConfigKey::ApplicationCredentials)
        || default_credentials
}

#[cfg(feature = "object-stores")]
fn azure_credentials_configured(builder: &MicrosoftAzureBuilder) -> bool {
    let has = |key: AzureConfigKey| {
        builder
            .get_config_value(&key)
            .is_some_and(|v| !v.is_empty())
    };
    has(AzureConfigKey::AccountName)
        && (has(AzureConfigKey::AccessKey)
            || has(AzureConfigKey::SasKey)
            || has(AzureConfigKey::Token)
            || has(AzureConfigKey::ClientSecret)
            || has(AzureConfigKey::FederatedTokenFile)
            || builder
                .get_config_value(&AzureConfigKey::SkipSignature)
                .is_some_and(|v| v.eq_ignore_ascii_case("true")))
}

#[cfg(feature = "object-stores")]
/// The Azure storage account named by the webhook's environment.
pub fn azure_account_from_env() -> Option<String> {
    MicrosoftAzureBuilder::from_env()
        .get_config_value(&AzureConfigKey::AccountName)
        .filter(|v| !v.is_empty())
}

/// The Azure storage account named by the webhook's environment.
#[cfg(not(feature = "object-stores"))]
pub fn azure_account_from_env() -> Option<String> {
    None
}

/// `scheme://BUCKET.host[:port]` for virtual-hosted-style requests to a configured
/// endpoint.
pub fn bucket_endpoint(endpoint: &str, bucket: &str) -> Result<String, String> {
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or_else(|| format!("the S3 endpoint {endpoint:?} is not a URL"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("the S3 endpoint {endpoint:?} names no host"));
    }
    Ok(format!("{scheme}://{bucket}.{host}"))
}

/// An error's text, without line breaks and cut to a readable length.
pub fn error_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::truncate(text, MAX_ERROR_TEXT)
}
