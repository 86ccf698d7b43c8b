//! The load harness: the data set (index contents and the pool of requests).

use super::*;

pub(crate) const NAMESPACES: usize = 100;
/// Requests in the pool each route cycles through.
pub(crate) const POOL: usize = 4096;
pub(crate) const WORDS: &[&str] = &[
    "orders-enrichment",
    "clickstream-sessionizer",
    "fraud-scoring",
    "inventory-sync",
    "payments-ledger",
    "top-speed-windowing",
    "ad-attribution",
    "sensor-aggregation",
];

/// A deterministic 64-bit mix (splitmix64).
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A UUID-shaped string, deterministic in `(stream, i)`.
pub(crate) fn uuid_like(stream: u64, i: u64) -> String {
    let a = mix(stream << 40 ^ i);
    let b = mix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

pub(crate) fn namespace(i: usize) -> String {
    format!("team-{:02}", i % NAMESPACES)
}

pub(crate) fn deployment(i: usize) -> DeploymentFacts {
    DeploymentFacts {
        namespace: namespace(i),
        name: format!("{}-{i:05}", WORDS[i % WORDS.len()]),
        uid: uuid_like(1, i as u64),
        spec_version: Some("3".into()),
        has_savepoints_dir: true,
        restore_kind: Some(RestoreKind::LatestState),
        ..DeploymentFacts::default()
    }
}

/// The `i`th Savepoint of the bulk: a UUID name (as the platform names them) and a
/// savepoint directory under its Deployment's prefix, already in normalized form.
pub(crate) fn bulk_savepoint(i: usize, deployments: &[DeploymentFacts]) -> SavepointFacts {
    let d = &deployments[i % deployments.len()];
    let h = mix(i as u64 ^ 0x5a5a);
    SavepointFacts {
        namespace: d.namespace.clone(),
        name: uuid_like(2, i as u64),
        location: format!(
            "s3://flink-state/{}/{}/savepoints/savepoint-{:06x}-{:012x}",
            d.namespace,
            d.uid,
            h >> 40,
            h & 0xffff_ffff_ffff
        ),
    }
}

/// The request bodies the routes cycle through, and the Savepoints the index must hold
/// for half of the `/mutate` requests to find their location already referenced.
pub(crate) struct Pool {
    pub(crate) mutate: Vec<Bytes>,
    pub(crate) validate: Vec<Bytes>,
    pub(crate) referenced: Vec<SavepointFacts>,
}

/// Rewrites a captured AdmissionReview for another Savepoint.
pub(crate) fn rewrite(
    template: &Value,
    uid: &str,
    name: &str,
    d: &DeploymentFacts,
    location: &str,
    with_id: bool,
) -> Result<Bytes> {
    let mut review = template.clone();
    let request = review
        .get_mut("request")
        .context("fixture has no request")?;
    request["uid"] = uid.into();
    request["name"] = name.into();
    request["namespace"] = d.namespace.as_str().into();
    for which in ["object", "oldObject"] {
        let Some(object) = request.get_mut(which).filter(|o| o.is_object()) else {
            continue;
        };
        object["metadata"]["name"] = name.into();
        object["metadata"]["namespace"] = d.namespace.as_str().into();
        let spec = &mut object["spec"];
        spec["deploymentName"] = d.name.as_str().into();
        spec["savepointLocation"] = location.into();
        match spec.as_object_mut() {
            Some(spec) if with_id => {
                spec.insert("deploymentId".into(), d.uid.as_str().into());
            }
            Some(spec) => {
                spec.remove("deploymentId");
            }
            None => bail!("fixture's {which} has no spec"),
        }
    }
    Ok(serde_json::to_vec(&review)?.into())
}

pub(crate) fn pool(deployments: &[DeploymentFacts]) -> Result<Pool> {
    let create = read_fixture("savepoint-create.json")?;
    let dry_run = read_fixture("savepoint-dryrun.json")?;
    let update = read_fixture("savepoint-update.json")?;
    let mut validate_create = create.clone();
    validate_create["request"]["object"]["metadata"]["annotations"] = serde_json::json!({
        savepoint_webhook::resources::SPEC_VERSION_ANNOTATION: "3"
    });
    let mut out = Pool {
        mutate: Vec::with_capacity(POOL),
        validate: Vec::with_capacity(POOL),
        referenced: Vec::new(),
    };
    for j in 0..POOL {
        let d = &deployments[(j * 7919) % deployments.len()];
        let name = format!("restore-{}", uuid_like(3, j as u64));
        let h = mix(j as u64 ^ 0xa5a5);
        let location = if j % 2 == 0 {
            let location = format!(
                "s3://flink-state/{}/{}/checkpoints/{:032x}/chk-{}",
                d.namespace,
                d.uid,
                h as u128 * 0x1_0000_0001,
                j + 1
            );
            out.referenced.push(SavepointFacts {
                namespace: d.namespace.clone(),
                name: format!("retained-{}", uuid_like(4, j as u64)),
                location: location.clone(),
            });
            location
        } else {
            format!(
                "s3a://flink-state/{}/{}/savepoints/savepoint-{:06x}-{:012x}/_metadata",
                d.namespace,
                d.uid,
                h >> 40,
                h & 0xffff_ffff_ffff
            )
        };
        let template = if j % 8 == 7 { &dry_run } else { &create };
        let uid = uuid_like(5, j as u64);
        out.mutate
            .push(rewrite(template, &uid, &name, d, &location, j % 3 != 0)?);
        let template = if j % 2 == 0 {
            &validate_create
        } else {
            &update
        };
        out.validate
            .push(rewrite(template, &uid, &name, d, &location, true)?);
    }
    Ok(out)
}
