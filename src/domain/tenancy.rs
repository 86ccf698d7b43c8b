//! Which locations each namespace may point its Savepoints at: [`TenantLocations`], so a
//! tenant cannot register another tenant's snapshot as its own and restore from it.
//! Prefixes are normalized like every location and match at segment boundaries only:
//! `s3://state/team-a` allows `s3://state/team-a/sp-1`, never `s3://state/team-ab`.

use std::collections::BTreeMap;

use super::location::{LocationRules, NormalizedLocation};

/// The entry that applies to namespaces without one of their own.
pub const ANY_NAMESPACE: &str = "*";

/// Allowed location prefixes by namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantLocations {
    by_namespace: BTreeMap<String, Vec<NormalizedLocation>>,
}

impl TenantLocations {
    /// Parses a YAML (or JSON) map of namespace to a list of location prefixes, with
    /// [`ANY_NAMESPACE`] for every namespace not listed, each prefix under `rules`.
    pub fn parse(text: &str, rules: &LocationRules) -> Result<Self, String> {
        let raw: BTreeMap<String, Vec<String>> = serde_saphyr::from_str(text).map_err(|e| {
            format!("expected a map of namespace to a list of location prefixes: {e}")
        })?;
        let mut by_namespace = BTreeMap::new();
        for (namespace, prefixes) in raw {
            let parsed = prefixes
                .iter()
                .map(|prefix| {
                    NormalizedLocation::parse(prefix, rules)
                        .map_err(|err| format!("{namespace}: prefix {prefix:?} {err}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            by_namespace.insert(namespace, parsed);
        }
        Ok(Self { by_namespace })
    }

    /// The prefixes that apply to `namespace`, if any entry does.
    fn prefixes(&self, namespace: &str) -> Option<&[NormalizedLocation]> {
        self.by_namespace
            .get(namespace)
            .or_else(|| self.by_namespace.get(ANY_NAMESPACE))
            .map(Vec::as_slice)
    }

    /// Whether `namespace` may use `location`; `Err` says why not, for the person who
    /// ran kubectl.
    pub fn check(&self, namespace: &str, location: &NormalizedLocation) -> Result<(), String> {
        let Some(prefixes) = self.prefixes(namespace) else {
            return Err(format!(
                "namespace {namespace:?} may use no location: the webhook's tenant locations list neither it nor {ANY_NAMESPACE:?}"
            ));
        };
        if prefixes.iter().any(|prefix| within(location, prefix)) {
            return Ok(());
        }
        let allowed = prefixes
            .iter()
            .map(|p| format!("{p}/..."))
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!(
            "{location:?} is outside the locations namespace {namespace:?} may use; accepted: {}",
            if allowed.is_empty() { "none" } else { &allowed }
        ))
    }
}

/// Whether `location` is `prefix` or below it, at a segment boundary.
fn within(location: &NormalizedLocation, prefix: &NormalizedLocation) -> bool {
    let (location, prefix) = (location.as_str(), prefix.as_str());
    location
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> NormalizedLocation {
        NormalizedLocation::parse(raw, &LocationRules::default()).expect(raw)
    }

    #[test]
    fn prefixes_match_at_segment_boundaries_on_normalized_locations() {
        let tenants = TenantLocations::parse(
            "team-a: [s3a://state/team-a/]\n\"*\": [s3://state/shared]\nlocked: []\n",
            &LocationRules::default(),
        )
        .unwrap();
        assert!(
            tenants
                .check("team-a", &norm("s3://state/team-a/sp-1"))
                .is_ok()
        );
        assert!(
            tenants
                .check("team-a", &norm("s3p://state//team-a/sp-1/_metadata"))
                .is_ok()
        );
        let err = tenants
            .check("team-a", &norm("s3://state/team-ab/sp-1"))
            .unwrap_err();
        assert!(err.contains("s3://state/team-a/..."), "{err}");
        assert!(
            tenants
                .check("team-a", &norm("s3://state/shared/x"))
                .is_err()
        );
        assert!(
            tenants
                .check("team-b", &norm("s3://state/shared/x"))
                .is_ok()
        );
        assert!(
            tenants
                .check("team-b", &norm("s3://state/team-a/x"))
                .is_err()
        );
        assert!(
            tenants
                .check("locked", &norm("s3://state/shared/x"))
                .is_err()
        );
        let strict =
            TenantLocations::parse("team-a: [s3://state/team-a]", &LocationRules::default())
                .unwrap();
        let err = strict
            .check("team-b", &norm("s3://state/team-a/x"))
            .unwrap_err();
        assert!(err.contains("may use no location"), "{err}");
    }

    #[test]
    fn a_bad_file_is_refused_with_the_entry_named() {
        let err = TenantLocations::parse("team-a: [\"ftp://x/y\"]", &LocationRules::default())
            .unwrap_err();
        assert!(err.contains("team-a: prefix \"ftp://x/y\""), "{err}");
        assert!(TenantLocations::parse("- a\n- b\n", &LocationRules::default()).is_err());
    }
}
