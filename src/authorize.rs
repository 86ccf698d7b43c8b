//! Who may restore what: with `--authorize-restores`, a Savepoint create is admitted only
//! when its user may `update` the Deployment it restores, as the API server's own RBAC
//! (or other authorizer) answers a SubjectAccessReview. Answers are cached for a short
//! while per user and Deployment, and every review runs within the request's deadline;
//! an API server that cannot answer in time refuses the create (the check fails closed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::admission::decode::UserInfo;
use crate::admission::{Decision, Reason};
use crate::resources::GROUP;
use crate::text::clip;

/// Most answers cached; past it, expired ones are dropped, then all.
const MAX_CACHED: usize = 10_000;

/// What the authorizer said about one user and Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The user may update the Deployment.
    Allowed,
    /// The user may not; the authorizer's reason, if it gave one.
    Denied(String),
    /// No answer within the deadline, or an error.
    Unknown(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    user: UserInfo,
    namespace: String,
    deployment: String,
}

/// Asks the API server whether users may update Deployments, and remembers briefly.
pub struct Authorizer {
    client: Client,
    ttl: Duration,
    cache: Mutex<HashMap<Key, (Verdict, Instant)>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// An authorizer asking through `client`, caching each definite answer for `ttl`.
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `user` may update Deployment `namespace/deployment`, within `budget`.
    pub async fn check(
        &self,
        user: &UserInfo,
        namespace: &str,
        deployment: &str,
        budget: Duration,
    ) -> Verdict {
        let key = Key {
            user: user.clone(),
            namespace: namespace.to_string(),
            deployment: deployment.to_string(),
        };
        let now = Instant::now();
        if let Some((verdict, until)) = self.cached().get(&key)
            && *until > now
        {
            return verdict.clone();
        }
        let verdict = match tokio::time::timeout(budget, self.ask(&key)).await {
            Ok(verdict) => verdict,
            Err(_) => Verdict::Unknown(format!(
                "the API server did not answer within {} ms",
                budget.as_millis()
            )),
        };
        if !matches!(verdict, Verdict::Unknown(_)) {
            let mut cache = self.cached();
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(key, (verdict.clone(), now + self.ttl));
        }
        verdict
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Verdict, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ask(&self, key: &Key) -> Verdict {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(key.user.username.clone()),
                uid: Some(key.user.uid.clone()).filter(|uid| !uid.is_empty()),
                groups: Some(key.user.groups.clone()),
                extra: Some(key.user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(key.namespace.clone()),
                    verb: Some("update".into()),
                    group: Some(GROUP.into()),
                    resource: Some("deployments".into()),
                    name: Some(key.deployment.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &review).await {
            Ok(answer) => match answer.status {
                Some(status) if status.allowed => Verdict::Allowed,
                Some(status) => Verdict::Denied(status.reason.unwrap_or_default()),
                None => {
                    Verdict::Unknown("the SubjectAccessReview came back without a status".into())
                }
            },
            Err(err) => Verdict::Unknown(clip(&err.to_string(), 256)),
        }
    }
}

/// Applies `verdict` about `user` and Deployment `namespace/deployment` to an allowing
/// `decision`; a refusal stays as it is.
pub fn judge(
    decision: Decision,
    verdict: &Verdict,
    user: &UserInfo,
    namespace: &str,
    deployment: &str,
) -> Decision {
    if !decision.allowed {
        return decision;
    }
    let who = clip(&user.username, 256);
    match verdict {
        Verdict::Allowed => decision,
        Verdict::Denied(reason) => {
            let why = if reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", clip(reason, 256))
            };
            Decision::deny(
                Reason::RestoreNotAuthorized,
                format!(
                    "user {who:?} may not update Deployment {deployment:?} in namespace {namespace:?}{why}; creating a Savepoint for a Deployment needs that permission, because the Deployment may then restore from it"
                ),
            )
        }
        Verdict::Unknown(error) => Decision::deny(
            Reason::Unavailable,
            format!(
                "cannot check whether user {who:?} may update Deployment {deployment:?} in namespace {namespace:?}: {error}; retry shortly"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_user_the_deployment_and_the_permission() {
        let user = UserInfo {
            username: "bob".into(),
            ..UserInfo::default()
        };
        let allow = || Decision::allow(Reason::Allowed);
        assert!(judge(allow(), &Verdict::Allowed, &user, "team-a", "app").allowed);
        let denied = judge(
            allow(),
            &Verdict::Denied(String::new()),
            &user,
            "team-a",
            "app",
        );
        assert_eq!(denied.reason, Reason::RestoreNotAuthorized);
        let message = denied.message.unwrap();
        assert!(
            message.starts_with(
                "user \"bob\" may not update Deployment \"app\" in namespace \"team-a\""
            ),
            "{message}"
        );
        let unknown = judge(
            allow(),
            &Verdict::Unknown("timeout".into()),
            &user,
            "team-a",
            "app",
        );
        assert_eq!(unknown.reason, Reason::Unavailable);
        let refused = Decision::deny(Reason::Invalid, "bad");
        assert_eq!(
            judge(refused, &Verdict::Allowed, &user, "n", "d").reason,
            Reason::Invalid
        );
    }
}
