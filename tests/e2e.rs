//! End to end: the real webhook binary behind a real kube-apiserver 1.20.2 (etcd and
//! kube-apiserver from `tests/provision.sh`), registered with Mutating- and
//! ValidatingWebhookConfigurations, checked by what the API server answers and stores.
//!
//! Run with `tests/run-all.sh`, or after `eval "$(tests/provision.sh --print-env)"` with
//! `cargo test --features e2e --test e2e`. Each case is a test of its own (libtest-mimic
//! trials: `cargo test --features e2e --test e2e -- copied` runs the matching ones,
//! `-- --list` lists them); one control plane, started with the first case that runs,
//! serves them one at a time, each in its own namespace. A failed case is reported with
//! the webhook's log lines written during it, and the remaining cases still run. Set
//! `SAVEPOINT_WEBHOOK_KEEP_CONTROL_PLANE_DIR=1` to keep the logs of etcd, kube-apiserver
//! and the webhook (the path is printed at the end).
//!
//! The webhook runs as the ServiceAccount of `deploy/base` (impersonated, with
//! `deploy/base/rbac.yaml` applied) and is registered with `deploy/base/webhooks.yaml`,
//! only `clientConfig` swapped for `https://127.0.0.1:PORT` and the caBundle printed by
//! its own `certs` command.
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)
#![cfg_attr(not(feature = "e2e"), allow(dead_code, unused_imports))]

#[cfg(feature = "e2e")]
mod common;

/// Without the `e2e` feature there is no control plane to run against.
#[cfg(not(feature = "e2e"))]
fn main() {
    eprintln!("e2e: skipped; run with --features e2e (see tests/run-all.sh)");
}

#[cfg(feature = "e2e")]
fn main() -> std::process::ExitCode {
    suite::main()
}

#[cfg(feature = "e2e")]
mod suite {

    use std::future::Future;
    use std::panic::AssertUnwindSafe;
    use std::path::Path;
    use std::process::ExitCode;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::common;
    use common::control_plane::ControlPlane;
    use common::{
        Certs, Cluster, Webhook, free_port, mk_deployment, mk_savepoint, spec_version,
        write_webhook_kubeconfig,
    };
    use futures::FutureExt;
    use futures::future::LocalBoxFuture;
    use libtest_mimic::{Arguments, Failed, Trial};
    use savepoint_webhook::resources::{Origin, SPEC_VERSION_ANNOTATION};
    use serde_json::json;

    /// The shared fixture: the cluster, the webhook and the number of Deployments created
    /// (the webhook must have seen them all before a case relies on them).
    struct Env {
        cluster: Cluster,
        /// Dropped before `cp`: its log lives in the control plane's directory.
        webhook: Webhook,
        /// The webhook's certificate files, which its restarts read again.
        _certs: Certs,
        cp: ControlPlane,
        deployments: u64,
        started: Instant,
    }

    impl Env {
        fn step(&self, text: &str) {
            eprintln!("e2e [{:6.2}s] {text}", self.started.elapsed().as_secs_f64());
        }

        /// Creates a namespace and a Deployment `app` in it with `spec_version`; waits until
        /// the webhook has seen it. Returns the Deployment's uid.
        async fn namespace_with_deployment(
            &mut self,
            namespace: &str,
            spec_version: Option<&str>,
        ) -> String {
            self.cluster.create_namespace(namespace).await;
            self.deployment(namespace, "app", spec_version).await
        }

        /// Creates a Deployment and waits until the webhook has seen it.
        async fn deployment(
            &mut self,
            namespace: &str,
            name: &str,
            spec_version: Option<&str>,
        ) -> String {
            let uid = self
                .cluster
                .create_deployment(mk_deployment(namespace, name, spec_version))
                .await;
            self.deployments += 1;
            self.webhook
                .wait_index("deployments", self.deployments)
                .await;
            uid
        }
    }

    /// Whether admission found the location already referenced (its COPIED warning).
    fn referenced(reply: &common::Reply) -> bool {
        reply
            .warnings
            .iter()
            .any(|w| w.contains("is already referenced by"))
    }

    fn assert_contains(text: &str, needle: &str, what: &str) {
        assert!(
            text.contains(needle),
            "{what}: expected {needle:?} in:\n{text}"
        );
    }

    /// The shared control plane and webhook, registered and called by the API server.
    async fn setup() -> Env {
        common::install_crypto_provider();
        let started = Instant::now();
        eprintln!("e2e: starting etcd and kube-apiserver");
        let cp = ControlPlane::start();
        eprintln!(
            "e2e [{:6.2}s] control plane ready at {}",
            started.elapsed().as_secs_f64(),
            cp.server_url()
        );
        let cluster = Cluster::connect(&cp).await;
        cluster.apply_crds().await;

        // Before the webhook exists: a Savepoint the webhook must learn from its initial list.
        cluster.create_namespace("pre").await;
        cluster
            .create_deployment(mk_deployment("pre", "app", Some("3")))
            .await;
        let old = cluster
            .create_savepoint(
                &mk_savepoint(
                    "pre",
                    "old",
                    "app",
                    "s3://flink-state/pre/savepoint-0a0b0c-0123456789ab",
                ),
                false,
            )
            .await;
        old.savepoint("creating pre/old before the webhook");

        // What deploy/base installs besides the Deployment: the webhook's namespace (labelled
        // to be skipped), its ServiceAccount and least-privilege RBAC, which the webhook
        // runs under here (impersonated).
        cluster.create_webhook_identity().await;
        let webhook_kubeconfig = cp.dir().join("webhook-kubeconfig");
        write_webhook_kubeconfig(&cp, &webhook_kubeconfig);

        let certs = Certs::generate();
        let webhook = Webhook::start(
            &webhook_kubeconfig,
            &certs,
            free_port(),
            cp.dir().join("webhook.log"),
        )
        .await;
        let ca_bundle = certs.ca_bundle.clone();
        let mut env = Env {
            cluster,
            webhook,
            _certs: certs,
            cp,
            deployments: 1,
            started,
        };
        env.step(&format!("webhook ready at {}", env.webhook.url()));
        env.webhook.wait_index("deployments", 1).await;
        env.webhook.wait_index("savepoints", 1).await;
        env.cluster
            .register_shipped_webhooks(&env.webhook.url(), &ca_bundle)
            .await;
        wait_until_webhooks_are_called(&mut env).await;
        env
    }

    /// A case: a test of the suite, run on the shared [`Env`].
    type Case = for<'a> fn(&'a mut Env) -> LocalBoxFuture<'a, ()>;

    /// Every case, in the order they run: name, what it proves, the test.
    macro_rules! cases {
    ($($case:ident: $description:literal,)+) => {
        vec![$((stringify!($case), $description, {
            fn run(env: &mut Env) -> LocalBoxFuture<'_, ()> {
                $case(env).boxed_local()
            }
            run as Case
        }),)+]
    };
}

    fn cases() -> Vec<(&'static str, &'static str, Case)> {
        cases! {
            injects_spec_version: "a Savepoint without the annotation gets the Deployment's spec version and reference",
            copied_location: "a location another Savepoint holds (written another way) is COPIED, with a warning",
            back_to_back: "two back-to-back creates of one new location: the second is COPIED",
            malformed: "malformed specs are refused with the webhook's message and not stored",
            deployment_problems: "a missing or unversioned Deployment is refused",
            dry_run: "a server-side dry run gets the same answer and stores nothing",
            updates: "UPDATE: savepointLocation is immutable, labels are not",
            pre_existing: "a Savepoint created before the webhook started counts as referenced",
            restore_warnings: "warnings about restore reach the client",
            excluded_namespace: "namespaces are left alone by name only (from 1.21); the old label excludes nothing",
            refused_create_holds_nothing: "a refused create leaves no reference behind",
            apiserver_restart: "after an API server restart the webhook's watches resume",
            webhook_down: "webhook down with failurePolicy Fail: refused; after a restart: admitted",
        }
    }

    /// The runtime and, once the first case runs, the shared environment.
    struct Suite {
        runtime: tokio::runtime::Runtime,
        env: Mutex<Option<Env>>,
    }

    impl Suite {
        /// Runs `case` on the shared environment, starting it first if no case has yet.
        fn run(&self, name: &str, description: &str, case: Case) -> Result<(), Failed> {
            let mut env = self.env.lock().unwrap_or_else(|p| p.into_inner());
            let env = match &mut *env {
                Some(env) => env,
                none => none.insert(self.runtime.block_on(setup())),
            };
            let (started, log) = (env.started, env.webhook.log_path().to_path_buf());
            self.runtime
                .block_on(run_case(started, &log, name, description, case(env)))
                .map_err(Failed::from)
        }
    }

    pub fn main() -> ExitCode {
        let mut args = Arguments::from_args();
        // One control plane serves every case, one case at a time.
        args.test_threads = Some(1);
        let suite = Arc::new(Suite {
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime"),
            env: Mutex::new(None),
        });
        let trials = cases()
            .into_iter()
            .map(|(name, description, case)| {
                let suite = suite.clone();
                Trial::test(name, move || suite.run(name, description, case))
            })
            .collect();
        let conclusion = libtest_mimic::run(&args, trials);
        // Stop the webhook, then the control plane, before reporting.
        if let Ok(suite) = Arc::try_unwrap(suite)
            && let Some(env) = suite.env.into_inner().unwrap_or_else(|p| p.into_inner())
        {
            env.step("done");
            drop(env);
        }
        conclusion.exit_code()
    }

    /// Runs one case, catching its panic so the others still run; prints the webhook's log
    /// lines written during a failed case.
    async fn run_case(
        started: Instant,
        log: &Path,
        name: &str,
        description: &str,
        case: impl Future<Output = ()>,
    ) -> Result<(), String> {
        eprintln!(
            "e2e [{:6.2}s] CASE {name}: {description}",
            started.elapsed().as_secs_f64()
        );
        let case_started = Instant::now();
        let log_lines = |path: &Path| -> Vec<String> {
            std::fs::read(path)
                .map(|bytes| {
                    String::from_utf8_lossy(&bytes)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let lines_before = log_lines(log).len();
        match AssertUnwindSafe(case).catch_unwind().await {
            Ok(()) => {
                eprintln!(
                    "e2e [{:6.2}s] ok   {name} ({:.2}s)",
                    started.elapsed().as_secs_f64(),
                    case_started.elapsed().as_secs_f64()
                );
                Ok(())
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".to_string());
                let during: Vec<String> = log_lines(log).into_iter().skip(lines_before).collect();
                eprintln!(
                    "e2e FAILED {name}: {message}\nwebhook log during the case ({}):\n{}",
                    log.display(),
                    if during.is_empty() {
                        "(nothing)".to_string()
                    } else {
                        during.join("\n")
                    }
                );
                Err(format!("{name}: {message}"))
            }
        }
    }

    /// After registration the API server needs a moment to call the webhooks: create probe
    /// Savepoints until one is mutated, then change a probe's location until the validating
    /// webhook refuses it.
    async fn wait_until_webhooks_are_called(env: &mut Env) {
        env.step("waiting until the API server calls /mutate and /validate");
        env.namespace_with_deployment("probe", Some("1")).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut attempt = 0;
        let mutated = loop {
            attempt += 1;
            let name = format!("probe-{attempt}");
            let reply = env
                .cluster
                .create_savepoint(
                    &mk_savepoint(
                        "probe",
                        &name,
                        "app",
                        &format!("s3://probe/savepoint-{attempt}"),
                    ),
                    false,
                )
                .await;
            let stored = reply.savepoint("probe create");
            if spec_version(&stored) == Some("1") {
                break name;
            }
            assert!(
                Instant::now() < deadline,
                "the API server did not call /mutate within 30 s of registration"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let patch =
                json!({ "spec": { "savepointLocation": format!("s3://probe/moved-{attempt}") } });
            let reply = env.cluster.patch_savepoint("probe", &mutated, &patch).await;
            if !reply.ok() {
                assert_contains(reply.message(), "immutable", "probe update refusal");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the API server did not call /validate within 30 s of registration"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        env.step(&format!("webhooks are called (probe {mutated})"));
    }

    async fn injects_spec_version(env: &mut Env) {
        let ns = "inject";
        let uid = env.namespace_with_deployment(ns, Some("7")).await;

        env.step("create by deploymentName, without the annotation");
        let reply = env
            .cluster
            .create_savepoint(
                &mk_savepoint(
                    ns,
                    "by-name",
                    "app",
                    "s3://flink-state/savepoints/savepoint-1a2b3c-0123456789ab",
                ),
                false,
            )
            .await;
        reply.savepoint("create by-name");
        let stored = env
            .cluster
            .get_savepoint(ns, "by-name")
            .await
            .expect("by-name is stored");
        assert_eq!(
            spec_version(&stored),
            Some("7"),
            "stored annotations: {:?}",
            stored.metadata.annotations
        );
        assert_eq!(
            stored.spec.deployment_id.as_deref(),
            Some(uid.as_str()),
            "deploymentId filled in"
        );
        assert_eq!(stored.spec.deployment_name.as_deref(), Some("app"));
        assert_eq!(
            stored.spec.origin,
            Some(Origin::Copied),
            "a Savepoint added by hand without an origin is COPIED"
        );
        assert!(
            !referenced(&reply),
            "no warning for a new location: {:?}",
            reply.warnings
        );

        env.step("create by deploymentId only");
        let mut manifest = mk_savepoint(
            ns,
            "by-id",
            "app",
            "s3://flink-state/savepoints/savepoint-1a2b3c-0123456789ac",
        );
        manifest["spec"]
            .as_object_mut()
            .unwrap()
            .remove("deploymentName");
        manifest["spec"]["deploymentId"] = json!(uid);
        env.cluster
            .create_savepoint(&manifest, false)
            .await
            .savepoint("create by-id");
        let stored = env
            .cluster
            .get_savepoint(ns, "by-id")
            .await
            .expect("by-id is stored");
        assert_eq!(
            stored.spec.deployment_name.as_deref(),
            Some("app"),
            "deploymentName filled in"
        );
        assert_eq!(spec_version(&stored), Some("7"));

        env.step("a user-supplied annotation is kept, with a warning when it differs");
        let mut manifest = mk_savepoint(
            ns,
            "own-version",
            "app",
            "s3://flink-state/savepoints/savepoint-1a2b3c-0123456789ad",
        );
        manifest["metadata"]["annotations"] = json!({ SPEC_VERSION_ANNOTATION: "5" });
        let reply = env.cluster.create_savepoint(&manifest, false).await;
        reply.savepoint("create own-version");
        let stored = env
            .cluster
            .get_savepoint(ns, "own-version")
            .await
            .expect("own-version is stored");
        assert_eq!(
            spec_version(&stored),
            Some("5"),
            "a user-supplied annotation is not overwritten"
        );
        assert_contains(
            &reply.warnings.join("\n"),
            "spec version",
            "warning about the differing version",
        );
    }

    async fn copied_location(env: &mut Env) {
        let ns = "copied";
        env.namespace_with_deployment(ns, Some("2")).await;
        let location = "s3://flink-state/savepoints/savepoint-f35801-c840b0a020e8";

        env.step("the first Savepoint of a location keeps its origin");
        let mut manifest = mk_savepoint(ns, "first", "app", location);
        manifest["spec"]["origin"] = json!("USER_REQUEST");
        let reply = env.cluster.create_savepoint(&manifest, false).await;
        assert_eq!(
            reply.savepoint("create first").spec.origin,
            Some(Origin::UserRequest)
        );
        assert!(
            !reply.warnings.iter().any(|w| w.contains("COPIED")),
            "no COPIED warning expected for a new location: {:?}",
            reply.warnings
        );

        for (name, written) in [
            (
                "s3a-metadata",
                "s3a://flink-state/savepoints/savepoint-f35801-c840b0a020e8/_metadata",
            ),
            (
                "trailing-slash",
                "S3://flink-state//savepoints/savepoint-f35801-c840b0a020e8/",
            ),
        ] {
            env.step(&format!("{name}: {written}"));
            let mut manifest = mk_savepoint(ns, name, "app", written);
            manifest["spec"]["origin"] = json!("USER_REQUEST");
            let reply = env.cluster.create_savepoint(&manifest, false).await;
            reply.savepoint(name);
            let stored = env.cluster.get_savepoint(ns, name).await.expect("stored");
            assert_eq!(
                stored.spec.origin,
                Some(Origin::Copied),
                "{name}: stored origin"
            );
            assert_eq!(
                stored.spec.savepoint_location, written,
                "{name}: the location is stored as written"
            );
            let warnings = reply.warnings.join("\n");
            assert_contains(
                &warnings,
                "spec.origin set to COPIED (was USER_REQUEST)",
                name,
            );
            assert_contains(&warnings, "copied/first", name);
        }

        env.step("the same location in another namespace is not a copy (scope: namespace)");
        let other = "copied-elsewhere";
        env.namespace_with_deployment(other, Some("2")).await;
        let reply = env
            .cluster
            .create_savepoint(&mk_savepoint(other, "same-place", "app", location), false)
            .await;
        reply.savepoint("same-place");
        assert!(!referenced(&reply), "{:?}", reply.warnings);
    }

    async fn back_to_back(env: &mut Env) {
        let ns = "back-to-back";
        env.namespace_with_deployment(ns, Some("4")).await;

        env.step("two sequential creates, no pause");
        let location = "gs://flink-state/savepoints/savepoint-b2b000-000000000001";
        let first = env
            .cluster
            .create_savepoint(&mk_savepoint(ns, "one", "app", location), false)
            .await;
        let second = env
            .cluster
            .create_savepoint(&mk_savepoint(ns, "two", "app", location), false)
            .await;
        first.savepoint("one");
        assert!(!referenced(&first), "{:?}", first.warnings);
        assert!(referenced(&second), "{:?}", second.warnings);
        assert_eq!(
            second.savepoint("two").spec.origin,
            Some(Origin::Copied),
            "warnings: {:?}",
            second.warnings
        );
        let stored = env
            .cluster
            .get_savepoint(ns, "two")
            .await
            .expect("two is stored");
        assert_eq!(stored.spec.origin, Some(Origin::Copied));

        env.step("two concurrent creates: exactly one is COPIED");
        let location = "gs://flink-state/savepoints/savepoint-b2b000-000000000002";
        let a = mk_savepoint(ns, "racer-a", "app", location);
        let b = mk_savepoint(ns, "racer-b", "app", location);
        let (a, b) = tokio::join!(
            env.cluster.create_savepoint(&a, false),
            env.cluster.create_savepoint(&b, false)
        );
        a.savepoint("racer-a");
        b.savepoint("racer-b");
        assert_eq!(
            [&a, &b].iter().filter(|reply| referenced(reply)).count(),
            1,
            "of two concurrent creates exactly one finds the other: {:?} / {:?}",
            a.warnings,
            b.warnings
        );
    }

    async fn malformed(env: &mut Env) {
        let ns = "malformed";
        env.namespace_with_deployment(ns, Some("1")).await;

        env.step("three bad fields: one message listing all");
        let mut manifest = mk_savepoint(ns, "bad-fields", "app", "savepoints/relative");
        manifest["spec"]["jobId"] = json!("not-a-uuid");
        manifest["spec"]["flinkSavepointId"] = json!("1234");
        let reply = env.cluster.create_savepoint(&manifest, false).await;
        let message = reply.refusal("bad-fields");
        assert_eq!(
            reply.status, 422,
            "status of an invalid Savepoint: {}",
            reply.body
        );
        for needle in [
            "denied the request",
            "invalid Savepoint, 3 problems",
            "spec.savepointLocation",
            "spec.jobId: \"not-a-uuid\" is not a UUID",
            "spec.flinkSavepointId: \"1234\" is not a UUID",
        ] {
            assert_contains(message, needle, "bad-fields refusal");
        }

        env.step("no Deployment reference");
        let mut manifest = mk_savepoint(
            ns,
            "no-reference",
            "app",
            "s3://flink-state/savepoints/savepoint-000000-00000000000a",
        );
        manifest["spec"]
            .as_object_mut()
            .unwrap()
            .remove("deploymentName");
        let reply = env.cluster.create_savepoint(&manifest, false).await;
        assert_contains(
            reply.refusal("no-reference"),
            "spec.deploymentName: is required",
            "no-reference refusal",
        );

        env.step("an unknown origin and a non-numeric spec version");
        let mut manifest = mk_savepoint(
            ns,
            "bad-enum",
            "app",
            "s3://flink-state/savepoints/savepoint-000000-00000000000b",
        );
        manifest["spec"]["origin"] = json!("MAGIC");
        manifest["metadata"]["annotations"] = json!({ SPEC_VERSION_ANNOTATION: "v3" });
        let reply = env.cluster.create_savepoint(&manifest, false).await;
        let message = reply.refusal("bad-enum");
        assert_contains(
            message,
            "spec.origin: \"MAGIC\" is not accepted",
            "bad-enum refusal",
        );
        assert_contains(message, "is not a decimal integer", "bad-enum refusal");

        env.step("an unsupported scheme");
        let reply = env
            .cluster
            .create_savepoint(
                &mk_savepoint(ns, "ftp", "app", "ftp://host/savepoints/savepoint-1"),
                false,
            )
            .await;
        assert_contains(
            reply.refusal("ftp"),
            "spec.savepointLocation",
            "ftp refusal",
        );

        let stored = env.cluster.savepoint_names(ns).await;
        assert!(
            stored.is_empty(),
            "refused Savepoints were stored: {stored:?}"
        );
    }

    async fn deployment_problems(env: &mut Env) {
        let ns = "deployments";
        env.namespace_with_deployment(ns, None).await;

        env.step("a Deployment that does not exist");
        let reply = env
            .cluster
            .create_savepoint(
                &mk_savepoint(
                    ns,
                    "ghost",
                    "ghost",
                    "s3://flink-state/savepoints/savepoint-0d0d0d-000000000001",
                ),
                false,
            )
            .await;
        let message = reply.refusal("ghost");
        assert_contains(
            message,
            "Deployment \"ghost\" not found in namespace \"deployments\"",
            "ghost refusal",
        );

        env.step("a deploymentId that is no Deployment's uid");
        let mut manifest = mk_savepoint(
            ns,
            "ghost-id",
            "app",
            "s3://flink-state/savepoints/savepoint-0d0d0d-000000000002",
        );
        manifest["spec"]
            .as_object_mut()
            .unwrap()
            .remove("deploymentName");
        manifest["spec"]["deploymentId"] = json!("11111111-2222-3333-4444-555555555555");
        let reply = env.cluster.create_savepoint(&manifest, false).await;
        assert_contains(
            reply.refusal("ghost-id"),
            "spec.deploymentId",
            "ghost-id refusal",
        );

        env.step("a Deployment without the spec-version annotation");
        let reply = env
            .cluster
            .create_savepoint(
                &mk_savepoint(
                    ns,
                    "unversioned",
                    "app",
                    "s3://flink-state/savepoints/savepoint-0d0d0d-000000000003",
                ),
                false,
            )
            .await;
        let message = reply.refusal("unversioned");
        assert_contains(
            message,
            &format!("Deployment deployments/app has no {SPEC_VERSION_ANNOTATION} annotation"),
            "unversioned refusal",
        );

        let stored = env.cluster.savepoint_names(ns).await;
        assert!(
            stored.is_empty(),
            "refused Savepoints were stored: {stored:?}"
        );
    }

    async fn dry_run(env: &mut Env) {
        let ns = "dry-run";
        let uid = env.namespace_with_deployment(ns, Some("9")).await;
        let location = "s3://flink-state/savepoints/savepoint-d4d4d4-000000000001";

        env.step("a valid dry run: mutated answer, nothing stored");
        let reply = env
            .cluster
            .create_savepoint(&mk_savepoint(ns, "dry", "app", location), true)
            .await;
        let answered = reply.savepoint("dry run");
        assert_eq!(
            spec_version(&answered),
            Some("9"),
            "the dry run's answer carries the annotation"
        );
        assert_eq!(answered.spec.deployment_id.as_deref(), Some(uid.as_str()));
        assert!(
            env.cluster.get_savepoint(ns, "dry").await.is_none(),
            "a dry run stored the Savepoint"
        );

        env.step("a dry run holds no location: a real create of it is not COPIED");
        let reply = env
            .cluster
            .create_savepoint(&mk_savepoint(ns, "real", "app", location), false)
            .await;
        reply.savepoint("real after dry run");
        assert!(!referenced(&reply), "warnings: {:?}", reply.warnings);

        env.step("a dry run of a held location is answered COPIED with the warning");
        let reply = env
            .cluster
            .create_savepoint(&mk_savepoint(ns, "dry-copy", "app", location), true)
            .await;
        assert_eq!(
            reply.savepoint("dry-copy").spec.origin,
            Some(Origin::Copied)
        );
        assert_contains(
            &reply.warnings.join("\n"),
            "dry-run/real",
            "dry-copy warning",
        );

        env.step("a malformed dry run gets the same refusal");
        let mut manifest = mk_savepoint(ns, "dry-bad", "app", location);
        manifest["spec"]["jobId"] = json!("nope");
        let real = env.cluster.create_savepoint(&manifest, false).await;
        let dry = env.cluster.create_savepoint(&manifest, true).await;
        assert_eq!(
            dry.refusal("dry-bad dry run"),
            real.refusal("dry-bad"),
            "dry run and real refusals differ"
        );
        assert_eq!(dry.status, real.status);

        env.step("a dry run for a missing Deployment gets the same refusal");
        let manifest = mk_savepoint(
            ns,
            "dry-ghost",
            "ghost",
            "s3://flink-state/savepoints/savepoint-d4d4d4-000000000002",
        );
        let dry = env.cluster.create_savepoint(&manifest, true).await;
        assert_contains(
            dry.refusal("dry-ghost"),
            "Deployment \"ghost\" not found",
            "dry-ghost refusal",
        );

        let mut stored = env.cluster.savepoint_names(ns).await;
        stored.sort();
        assert_eq!(
            stored,
            vec!["real".to_string()],
            "only the real create is stored"
        );
    }

    async fn updates(env: &mut Env) {
        let ns = "updates";
        env.namespace_with_deployment(ns, Some("1")).await;
        let location = "s3://flink-state/savepoints/savepoint-e5e5e5-000000000001";
        env.cluster
            .create_savepoint(&mk_savepoint(ns, "sp", "app", location), false)
            .await
            .savepoint("create sp");

        env.step("changing savepointLocation is refused");
        let reply = env
            .cluster
            .patch_savepoint(
                ns,
                "sp",
                &json!({ "spec": { "savepointLocation": "s3://elsewhere/savepoint-2" } }),
            )
            .await;
        let message = reply.refusal("location change");
        assert_contains(message, "spec.savepointLocation", "location change refusal");
        assert_contains(message, "immutable", "location change refusal");
        let stored = env
            .cluster
            .get_savepoint(ns, "sp")
            .await
            .expect("sp is stored");
        assert_eq!(
            stored.spec.savepoint_location, location,
            "the refused update changed the location"
        );

        env.step("changing deploymentName is refused");
        let reply = env
            .cluster
            .patch_savepoint(ns, "sp", &json!({ "spec": { "deploymentName": "other" } }))
            .await;
        assert_contains(
            reply.refusal("deploymentName change"),
            "spec.deploymentName",
            "deploymentName change refusal",
        );

        env.step("a label change is allowed");
        let reply = env
            .cluster
            .patch_savepoint(
                ns,
                "sp",
                &json!({ "metadata": { "labels": { "team": "streaming" } } }),
            )
            .await;
        reply.savepoint("label change");
        let stored = env
            .cluster
            .get_savepoint(ns, "sp")
            .await
            .expect("sp is stored");
        assert_eq!(
            stored
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("team"))
                .map(String::as_str),
            Some("streaming")
        );

        env.step("a status change is allowed");
        let reply = env
            .cluster
            .patch_savepoint(
                ns,
                "sp",
                &json!({ "status": { "state": "PENDING_DELETION" } }),
            )
            .await;
        reply.savepoint("status change");
    }

    async fn pre_existing(env: &mut Env) {
        env.step("pre/old was created before the webhook; pre/new uses its location");
        let reply = env
            .cluster
            .create_savepoint(
                &mk_savepoint(
                    "pre",
                    "new",
                    "app",
                    "s3a://flink-state/pre/savepoint-0a0b0c-0123456789ab/",
                ),
                false,
            )
            .await;
        reply.savepoint("create pre/new");
        let stored = env
            .cluster
            .get_savepoint("pre", "new")
            .await
            .expect("pre/new is stored");
        assert_eq!(
            stored.spec.origin,
            Some(Origin::Copied),
            "warnings: {:?}",
            reply.warnings
        );
        assert_contains(&reply.warnings.join("\n"), "pre/old", "COPIED warning");
    }

    async fn restore_warnings(env: &mut Env) {
        let ns = "warnings";
        env.cluster.create_namespace(ns).await;
        let mut deployment = mk_deployment(ns, "app", Some("1"));
        deployment["spec"] = json!({ "restoreStrategy": { "kind": "NONE" } });
        env.cluster.create_deployment(deployment).await;
        env.deployments += 1;
        env.webhook.wait_index("deployments", env.deployments).await;

        env.step("no savepoints dir, restore NONE, state STARTED: three warnings, still admitted");
        let mut manifest = mk_savepoint(
            ns,
            "started",
            "app",
            "s3://flink-state/savepoints/savepoint-a1a1a1-000000000001",
        );
        manifest["status"]["state"] = json!("STARTED");
        let reply = env.cluster.create_savepoint(&manifest, false).await;
        reply.savepoint("create started");
        let warnings = reply.warnings.join("\n");
        for needle in [
            "sets no savepoint directory (execution.checkpointing.savepoint-dir or state.savepoints.dir",
            "status.state is STARTED; only COMPLETED Savepoints are used for restore",
            "spec.restoreStrategy.kind NONE",
        ] {
            assert_contains(&warnings, needle, "restore warnings");
        }
    }

    /// A Savepoint naming a Deployment that does not exist: refused where the webhook
    /// guards the namespace, stored unchanged where it does not.
    async fn create_unknown(env: &Env, ns: &str, name: &str) -> common::Reply {
        let location = format!("s3://flink-state/savepoints/{ns}/{name}");
        env.cluster
            .create_savepoint(&mk_savepoint(ns, name, "nowhere", &location), false)
            .await
    }

    async fn excluded_namespace(env: &mut Env) {
        let minor = env.cp.minor();
        env.step("the old opt-out label excludes nothing: that namespace is guarded");
        let labelled = "labelled";
        env.cluster
            .create_labelled_namespace(
                labelled,
                json!({ "savepoint-webhook.appmanager.dataartisans.com/exclude": "true" }),
            )
            .await;
        let refusal = create_unknown(env, labelled, "guarded").await;
        assert_contains(
            refusal.refusal("a create in a namespace labelled exclude=true"),
            "Deployment \"nowhere\" not found",
            "the webhook decided",
        );

        env.step("a namespace that writes kubernetes.io/metadata.name itself");
        let impostor = "impostor";
        env.cluster
            .create_labelled_namespace(
                impostor,
                json!({ "kubernetes.io/metadata.name": "savepoint-webhook" }),
            )
            .await;
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(env.cluster.client.clone());
        let stored = api.get(impostor).await.unwrap().metadata.labels.unwrap();
        let reply = create_unknown(env, impostor, "claims-a-listed-name").await;
        if minor >= 21 {
            assert_eq!(
                stored["kubernetes.io/metadata.name"], impostor,
                "the API server overwrites the name label"
            );
            reply.refusal("a create in a namespace claiming a listed name");
        } else {
            // 1.20 keeps whatever a client writes: the documented gap (SECURITY.md).
            assert_eq!(stored["kubernetes.io/metadata.name"], "savepoint-webhook");
            let kept = reply.savepoint("a create in a namespace claiming a listed name on 1.20");
            assert_eq!(spec_version(&kept), None);
        }

        env.step("the listed namespace (the webhook's own): left alone from 1.21 on");
        let reply = create_unknown(env, "savepoint-webhook", "listed").await;
        if minor >= 21 {
            let stored = reply.savepoint("a create in the listed namespace");
            assert_eq!(
                spec_version(&stored),
                None,
                "the webhook mutated a Savepoint in a listed namespace"
            );
            assert_eq!(stored.spec.deployment_id, None);
        } else {
            // No kubernetes.io/metadata.name on 1.20: every namespace is guarded.
            reply.refusal("a create in the listed namespace on 1.20");
        }
    }

    async fn refused_create_holds_nothing(env: &mut Env) {
        let ns = "refused";
        env.namespace_with_deployment(ns, Some("1")).await;

        env.step("a create refused by the API server after /mutate (name taken)");
        env.cluster
            .create_savepoint(
                &mk_savepoint(
                    ns,
                    "taken",
                    "app",
                    "s3://flink-state/savepoints/savepoint-f0f0f0-000000000001",
                ),
                false,
            )
            .await
            .savepoint("create taken");
        let location = "s3://flink-state/savepoints/savepoint-f0f0f0-000000000002";
        let reply = env
            .cluster
            .create_savepoint(&mk_savepoint(ns, "taken", "app", location), false)
            .await;
        assert_eq!(
            reply.status, 409,
            "a second create of one name: {}",
            reply.body
        );

        env.step("a create refused by the API server after /mutate (invalid metadata.name)");
        let other = "s3://flink-state/savepoints/savepoint-f0f0f0-000000000003";
        let reply = env
            .cluster
            .create_savepoint(&mk_savepoint(ns, "Not_A_Name", "app", other), false)
            .await;
        assert_contains(
            reply.refusal("create Not_A_Name"),
            "metadata.name",
            "invalid name refusal",
        );

        let mut wrong = Vec::new();
        for (name, location, refused) in [
            ("fresh", location, "taken (409)"),
            ("fresh-2", other, "Not_A_Name (422)"),
        ] {
            env.step(&format!(
                "{location}, named only by refused {refused}, is unreferenced"
            ));
            let reply = env
                .cluster
                .create_savepoint(&mk_savepoint(ns, name, "app", location), false)
                .await;
            reply.savepoint(name);
            if referenced(&reply) {
                wrong.push(format!(
                    "{name} after refused {refused}: COPIED, warnings {:?}",
                    reply.warnings
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "locations only refused creates named were treated as referenced:\n{}",
            wrong.join("\n")
        );
    }

    async fn apiserver_restart(env: &mut Env) {
        env.step("restarting kube-apiserver (etcd keeps the data)");
        env.cp.stop_apiserver();
        tokio::task::block_in_place(|| env.cp.start_apiserver());

        env.step("a Deployment created after the restart reaches the webhook");
        let ns = "after-restart";
        env.cluster.create_namespace(ns).await;
        env.cluster
            .create_deployment(mk_deployment(ns, "app", Some("8")))
            .await;
        env.deployments += 1;
        // The watches reconnect with kube's backoff (0.8 s doubling, jittered), which may
        // have grown while the API server was down.
        let waited = Instant::now();
        env.webhook
            .wait_index_within("deployments", env.deployments, Duration::from_secs(60))
            .await;
        env.step(&format!(
            "the webhook saw it {:.1}s after the API server was back",
            waited.elapsed().as_secs_f64()
        ));

        env.step("a Savepoint created after the restart reaches the webhook");
        let location = "s3://flink-state/savepoints/savepoint-ab0ab0-000000000001";
        let savepoints = common::index_entries(&env.webhook.metrics().await, "savepoints")
            .expect("the webhook reports its Savepoint index size");
        let reply = env
            .cluster
            .create_savepoint(&mk_savepoint(ns, "first", "app", location), false)
            .await;
        assert_eq!(
            spec_version(&reply.savepoint("first after restart")),
            Some("8")
        );
        env.webhook.wait_index("savepoints", savepoints + 1).await;
        let reply = env
            .cluster
            .create_savepoint(&mk_savepoint(ns, "second", "app", location), false)
            .await;
        assert_eq!(
            reply.savepoint("second after restart").spec.origin,
            Some(Origin::Copied)
        );
    }

    async fn webhook_down(env: &mut Env) {
        let ns = "down";
        env.namespace_with_deployment(ns, Some("6")).await;

        env.step("stopping the webhook");
        env.webhook.stop();
        let manifest = mk_savepoint(
            ns,
            "while-down",
            "app",
            "s3://flink-state/savepoints/savepoint-0f0f0f-000000000001",
        );
        let reply = env.cluster.create_savepoint(&manifest, false).await;
        let message = reply.refusal("create while the webhook is down");
        assert_contains(message, "failed calling webhook", "refusal while down");
        assert!(
            env.cluster.savepoint_names(ns).await.is_empty(),
            "a Savepoint was stored while the webhook was down"
        );

        env.step("restarting the webhook");
        env.webhook.restart().await;
        let reply = env.cluster.create_savepoint(&manifest, false).await;
        reply.savepoint("create after the restart");
        let stored = env
            .cluster
            .get_savepoint(ns, "while-down")
            .await
            .expect("stored after the restart");
        assert_eq!(
            spec_version(&stored),
            Some("6"),
            "mutated after the restart"
        );
    }
}
