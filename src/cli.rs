//! The command line: one subcommand per job; the doc comments are the `--help` text.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::location::{DEFAULT_MAX_LEN, LocationRules};
use crate::domain::{Policy, ReferenceScope, SharedDelete, TenantLocations};
use crate::duration::parse_duration;
use crate::index::HoldLimits;
use crate::logging::LogFormat;

/// Admission webhook for Ververica-style Flink Savepoint resources.
#[derive(Debug, Parser)]
#[command(name = "savepoint-webhook", version)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SAVEPOINT_WEBHOOK_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// [`crate::domain::location::DEFAULT_SCHEMES`] as `--schemes` takes them.
pub const DEFAULT_SCHEMES_FLAG: &str = "s3,s3a,s3p,gs,hdfs,viewfs,wasb,wasbs,abfs,abfss,oss,file";

/// Writes `text` to stdout; a reader that has gone away (`| head`) is not an error, so
/// the rest of the output is dropped quietly.
pub fn print_out(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve /mutate and /validate over TLS, fed by the cluster or a state directory.
    Serve(Box<ServeArgs>),
    /// Review manifests or AdmissionReviews offline and print the answers; exit 1 if any is denied.
    Review(ReviewArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crds(CrdsArgs),
    /// Write or renew the CA and serving certificate for the webhook's Service; print the caBundle.
    Certs(CertsArgs),
    /// List stored Savepoints that break a rule or would warn at admission; exit 1 if any.
    Audit(AuditArgs),
    /// Smoke-test a running webhook with built-in AdmissionReviews; exit 1 on any mismatch.
    Probe(ProbeArgs),
    /// Read a snapshot's whole _metadata and print what it says and what a restore would
    /// hit; exit 1 if any location has an error.
    Inspect(InspectArgs),
}

/// Flags of `inspect`.
#[derive(Clone, Debug, Args)]
#[command(mut_arg("verify_depth", |arg| arg.default_value("full").hide(true)))]
#[command(mut_arg("verify_location", |arg| arg.default_value("warn").hide(true)))]
pub struct InspectArgs {
    /// Snapshot locations (the directory holding _metadata), as a Savepoint names them.
    #[arg(required = true, value_name = "LOCATION")]
    pub locations: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = InspectOutput::Text)]
    pub output: InspectOutput,
    /// Print every referenced file, not only the counts.
    #[arg(long)]
    pub files: bool,
    /// The location rules (as `serve` takes them).
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Where and how to read (as `serve` takes it).
    #[command(flatten)]
    pub verify: crate::verify::VerifyArgs,
}

/// Output formats of `inspect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InspectOutput {
    /// For people.
    Text,
    /// One JSON object per location, in an array.
    Json,
}

/// Flags of `crds`.
#[derive(Clone, Debug, Args)]
pub struct CrdsArgs {
    /// Add the Savepoint's field rules as CEL (`x-kubernetes-validations`), for API servers
    /// from 1.25, under the location settings below; older servers and their kubectl
    /// refuse the field.
    #[arg(long)]
    pub cel: bool,
    /// Print only this CRD, as stored in `deploy/crds/<NAME>.yaml`; both when unset.
    #[arg(long, value_enum, value_name = "NAME")]
    pub only: Option<CrdName>,
    /// The location rules the CEL states (as `serve` takes them).
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// One of the CRDs, by its plural name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CrdName {
    /// `savepoints.appmanager.dataartisans.com`, which the webhook guards.
    Savepoints,
    /// `deployments.appmanager.dataartisans.com`, a permissive stand-in for the platform's.
    Deployments,
}

impl CrdName {
    /// The CRD's `spec.names.plural`.
    pub fn plural(self) -> &'static str {
        match self {
            CrdName::Savepoints => "savepoints",
            CrdName::Deployments => "deployments",
        }
    }
}

/// Decision settings shared by `serve` and `review`.
#[derive(Clone, Debug, Args)]
pub struct PolicyArgs {
    /// Which Savepoints make a location "already referenced": those in the same
    /// namespace, or in any namespace.
    #[arg(long, value_enum, default_value_t = ReferenceScope::Namespace, env = "SAVEPOINT_WEBHOOK_SCOPE")]
    pub scope: ReferenceScope,
    /// Accepted location schemes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_SCHEMES_FLAG)]
    pub schemes: Vec<String>,
    /// Longest accepted location, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
    pub max_location_length: usize,
    /// The platform has Universal Blob Storage configured: do not warn about Deployments
    /// without state.savepoints.dir.
    #[arg(long)]
    pub universal_blob_storage: bool,
    /// DELETE of a Savepoint whose location other Savepoints hold: allowed with a warning
    /// naming them, or refused.
    #[arg(long, value_enum, default_value_t = SharedDelete::Warn)]
    pub shared_location_delete: SharedDelete,
    /// YAML map of namespace to the location prefixes its Savepoints may use ("*": every
    /// namespace not listed); a namespace with no entry may use none. Unset: any location.
    #[arg(long, value_name = "FILE")]
    pub tenant_locations: Option<PathBuf>,
}

impl PolicyArgs {
    /// The location rules these flags describe.
    pub fn location_rules(&self) -> LocationRules {
        LocationRules {
            schemes: self
                .schemes
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            max_len: self.max_location_length,
        }
    }

    /// The decision policy these flags describe; reads --tenant-locations.
    pub fn policy(&self) -> anyhow::Result<Policy> {
        let locations = self.location_rules();
        let tenant_locations = match &self.tenant_locations {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read --tenant-locations {}", path.display())
                })?;
                let parsed = TenantLocations::parse(&text, &locations).map_err(|err| {
                    anyhow::anyhow!("--tenant-locations {}: {err}", path.display())
                })?;
                Some(Arc::new(parsed))
            }
        };
        Ok(Policy {
            locations,
            scope: self.scope,
            universal_blob_storage: self.universal_blob_storage,
            shared_delete: self.shared_location_delete,
            tenant_locations,
        })
    }
}

/// The identity of a replica not given one: host name and process id.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// Flags of `serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS port.
    #[arg(long, default_value = "0.0.0.0:8443", env = "SAVEPOINT_WEBHOOK_LISTEN")]
    pub listen: SocketAddr,
    /// Also serve GET /metrics, and nothing else, over plain HTTP on this address [default:
    /// off; /metrics is always on the HTTPS port]
    #[arg(long, env = "SAVEPOINT_WEBHOOK_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Read Deployments and Savepoints from this directory of manifests instead of the
    /// cluster (no Kubernetes API needed).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// PEM certificate chain of the serving certificate (reloaded when it changes).
    #[arg(long, requires = "tls_key", conflicts_with = "self_signed")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the serving certificate (reloaded when it changes).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Generate a throwaway CA and certificate for localhost into --self-signed-dir.
    #[arg(long)]
    pub self_signed: bool,
    /// Where --self-signed writes ca.crt, tls.crt and tls.key [default: TMPDIR/savepoint-webhook]
    #[arg(long, requires = "self_signed")]
    pub self_signed_dir: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA bundle (mutual TLS).
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,
    /// How long a just-admitted location counts as referenced before the watch confirms it.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub provisional_ttl: Duration,
    /// Admit a Savepoint create only when its user may update the Deployment it restores
    /// (a SubjectAccessReview to the API server; needs create on subjectaccessreviews).
    #[arg(long)]
    pub authorize_restores: bool,
    /// How long an --authorize-restores answer is reused for the same user and Deployment.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authorization_cache_ttl: Duration,
    /// Most provisional holds kept; past it the oldest unconfirmed ones are dropped first.
    #[arg(long, default_value_t = HoldLimits::default().max_holds)]
    pub max_holds: usize,
    /// Most bytes of names and locations the provisional holds may keep.
    #[arg(long, default_value_t = HoldLimits::default().max_bytes)]
    pub max_hold_bytes: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest time for one request when the API server sends no ?timeout=.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Time a client has for the TLS handshake and for sending request headers.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Ask every connection to close this long after its TLS handshake (HTTP/2 GOAWAY,
    /// HTTP/1.1 close after the answer in progress; no request is lost), so that clients
    /// handshake again, meeting a renewed certificate, and spread over new replicas.
    /// Unset: connections stay open while used.
    #[arg(long, value_parser = parse_duration)]
    pub max_connection_age: Option<Duration>,
    /// Most open connections.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection.
    #[arg(long, default_value_t = 128)]
    pub max_concurrent_streams: u32,
    /// Time between SIGTERM and closing the listener: /readyz answers 503 at once, but
    /// requests are still accepted and answered until the endpoints no longer route here
    /// (a second signal skips the rest).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Time in-flight requests get to finish once the listener is closed.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Objects per page of the initial list from the Kubernetes API.
    #[arg(long, default_value_t = crate::state::cluster::DEFAULT_PAGE_SIZE)]
    pub page_size: u32,
    /// Run the leader-elected reconciler that repairs stored Savepoints (cluster mode).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub reconcile: bool,
    /// Time between reconcile and audit passes.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub reconcile_interval: Duration,
    /// Namespace of the reconciler's Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "savepoint-webhook")]
    pub lease_namespace: String,
    /// Name of the reconciler's Lease.
    #[arg(long, default_value = "savepoint-webhook")]
    pub lease_name: String,
    /// How long a leader keeps the Lease without renewing it.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// This replica's identity in the Lease and in Events [default: HOSTNAME-PID]
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Keep one openreports.io Report per namespace of the reconciler's findings (written
    /// by the leader; needs --reconcile and the Report CRD).
    #[arg(long)]
    pub reports: bool,
    /// Least time between two writes of the Reports.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub report_interval: Duration,
    /// Most results per Report, failures first; its summary still counts every finding.
    #[arg(long, default_value_t = crate::reconcile::report::DEFAULT_MAX_RESULTS)]
    pub report_max_results: usize,
    /// Decision settings.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Location verification settings.
    #[command(flatten)]
    pub verify: crate::verify::VerifyArgs,
}

/// Admission operation to simulate in `review`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum ReviewOperation {
    /// A create: `/mutate`, then `/validate` on the patched object.
    Create,
    /// An update: `/validate` against `--old`.
    Update,
}

/// Output format of `review`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReviewOutput {
    /// One row per document, then each denial and warning in full.
    Table,
    /// One document: its AdmissionReview response; several: an array of
    /// {file, document, review}.
    Json,
    /// JUnit XML, one testcase per document, failed when denied (or warned, with
    /// --fail-on-warning).
    Junit,
}

/// Flags of `review`.
#[derive(Clone, Debug, Args)]
#[command(mut_arg("verify_location", |arg| arg.default_value("off")))]
#[command(mut_arg("verify_depth", |arg| arg.default_value("full")))]
pub struct ReviewArgs {
    /// Savepoint manifests (YAML or JSON, several documents each), AdmissionReviews, or
    /// directories of them (every *.yaml, *.yml and *.json directly inside).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format [default: json for one document, table for several]
    #[arg(long, value_enum)]
    pub output: Option<ReviewOutput>,
    /// Exit 1 also when an admitted document has warnings.
    #[arg(long)]
    pub fail_on_warning: bool,
    /// Directory of Deployment and Savepoint manifests the decision sees.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Operation to simulate for manifests (an AdmissionReview carries its own); UPDATE
    /// takes one manifest.
    #[arg(long, value_enum, default_value_t = ReviewOperation::Create)]
    pub operation: ReviewOperation,
    /// The stored object an UPDATE replaces.
    #[arg(long)]
    pub old: Option<PathBuf>,
    /// Also print the object after the patch (json output).
    #[arg(long)]
    pub patched: bool,
    /// Decision settings.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Location verification settings.
    #[command(flatten)]
    pub verify: crate::verify::VerifyArgs,
}

/// Flags of `certs`.
#[derive(Clone, Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, default_value = "savepoint-webhook")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, default_value = "savepoint-webhook")]
    pub namespace: String,
    /// Directory of ca.crt, ca.key, tls.crt and tls.key. A CA there (ca.crt with its key)
    /// signs a new serving certificate and stays; without one a new CA is made.
    #[arg(long)]
    pub out: PathBuf,
    /// Make a new CA even though one is there. While a serving certificate of the old CA
    /// is there, the new CA is only staged: the caBundle holds both, the serving
    /// certificate stays, and the next run issues one from the new CA.
    #[arg(long)]
    pub new_ca: bool,
    /// More DNS names for the serving certificate.
    #[arg(long = "dns")]
    pub extra_dns: Vec<String>,
    /// IP addresses for the serving certificate.
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    /// Validity of the serving certificate (the CA lives ten times as long).
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    pub validity: Duration,
}

/// Flags of `probe`.
#[derive(Clone, Debug, Args)]
pub struct ProbeArgs {
    /// Base URL of the webhook, e.g. https://savepoint-webhook.savepoint-webhook.svc:443
    #[arg(long)]
    pub url: String,
    /// PEM CA bundle that signed the webhook's certificate.
    #[arg(long)]
    pub ca: PathBuf,
    /// Namespace the probe's objects claim to be in.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// An existing, annotated Deployment in --namespace: the well-formed Savepoint must then
    /// be admitted with the annotation injected (otherwise it must be denied as not found).
    #[arg(long)]
    pub deployment: Option<String>,
    /// PEM client certificate, for webhooks that require mutual TLS.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM key of --client-cert.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Time each request may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Output format of `audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// JSON for tools.
    Json,
}

/// Flags of `audit`.
#[derive(Clone, Debug, Args)]
#[command(mut_arg("verify_location", |arg| arg.default_value("off")))]
#[command(mut_arg("verify_depth", |arg| arg.default_value("full")))]
pub struct AuditArgs {
    /// Audit the manifests in this directory instead of the cluster from the kubeconfig.
    #[arg(long, conflicts_with_all = ["kubeconfig", "context"])]
    pub state: Option<PathBuf>,
    /// Audit only the Savepoints of this namespace [default: every namespace]
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Kubeconfig file [default: KUBECONFIG, else ~/.kube/config, else in-cluster]
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: the current context]
    #[arg(long)]
    pub context: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Also write the findings as one openreports.io Report per namespace (server-side
    /// apply), and delete the reports of namespaces that no longer have Savepoints.
    #[arg(long, conflicts_with = "state")]
    pub report: bool,
    /// Most results per Report, failures first; its summary still counts every finding.
    #[arg(long, default_value_t = crate::reconcile::report::DEFAULT_MAX_RESULTS)]
    pub report_max_results: usize,
    /// Decision settings.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Read each Savepoint's snapshot (with --verify-location warn or deny): a location
    /// a restore would fail from is an `unrestorable-snapshot` finding.
    #[command(flatten)]
    pub verify: crate::verify::VerifyArgs,
}
