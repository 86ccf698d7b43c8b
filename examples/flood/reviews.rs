//! The flood harness: AdmissionReviews, rewritten from the captured create of
//! `tests/fixtures/` and rendered from templates (a flood renders thousands a second).

use super::*;

/// The uid of the captured create.
pub(crate) const FIXTURE_UID: &str = "d81cc643-c6b4-4e2b-a381-04dcf48d5e02";
/// Where the floods' Savepoints point, under the example Deployment's savepoints dir.
const LOCATIONS: &str = "s3://flink-state/savepoints/flood";
const UID_HOLE: &str = "@@uid@@";
const NAME_HOLE: &str = "@@name@@";
const LOCATION_HOLE: &str = "@@location@@";

/// The captured create, compact, as the API server sends it.
pub(crate) fn fixture_create() -> Result<Bytes> {
    Ok(serde_json::to_vec(&read_fixture("savepoint-create.json")?)?.into())
}

/// A unique, UUID-shaped request uid.
pub(crate) fn uid(i: u64) -> String {
    format!("f100d000-0000-4000-8000-{:012x}", i & 0xffff_ffff_ffff)
}

/// The `i`th unique location.
pub(crate) fn location(i: u64) -> String {
    format!("{LOCATIONS}/savepoint-{i:012}")
}

/// The location every `copied-warning` request names.
pub(crate) fn shared_location() -> String {
    format!("{LOCATIONS}/shared")
}

/// A serialized AdmissionReview with holes for the request uid, the Savepoint's name and
/// its location; the values filled in must need no JSON escaping.
pub(crate) struct Template {
    /// The bytes around the holes, one more than `holes`.
    pieces: Vec<Vec<u8>>,
    holes: Vec<Hole>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hole {
    Uid,
    Name,
    Location,
}

/// What fills a template's holes.
pub(crate) struct Fill<'a> {
    pub(crate) uid: &'a str,
    pub(crate) name: &'a str,
    pub(crate) location: &'a str,
}

impl Template {
    /// A create of a Savepoint of the example Deployment; `generate_name` leaves the name
    /// empty (`Fill::name` then fills nothing).
    pub(crate) fn create(dry_run: bool, generate_name: Option<&str>) -> Result<Self> {
        let mut review = read_fixture("savepoint-create.json")?;
        let request = review
            .get_mut("request")
            .context("fixture has no request")?;
        request["uid"] = UID_HOLE.into();
        request["dryRun"] = dry_run.into();
        let object = &mut request["object"];
        object["spec"]["savepointLocation"] = LOCATION_HOLE.into();
        match generate_name {
            Some(prefix) => {
                object["metadata"]["name"] = "".into();
                object["metadata"]["generateName"] = prefix.into();
                request["name"] = "".into();
            }
            None => {
                object["metadata"]["name"] = NAME_HOLE.into();
                request["name"] = NAME_HOLE.into();
            }
        }
        Self::split(&serde_json::to_vec(&review)?)
    }

    fn split(bytes: &[u8]) -> Result<Self> {
        let marks = [
            (UID_HOLE, Hole::Uid),
            (NAME_HOLE, Hole::Name),
            (LOCATION_HOLE, Hole::Location),
        ];
        let mut pieces = Vec::new();
        let mut holes = Vec::new();
        let mut rest = bytes;
        loop {
            let next = marks
                .iter()
                .filter_map(|(mark, hole)| Some((find(rest, mark.as_bytes())?, mark.len(), *hole)))
                .min_by_key(|(at, _, _)| *at);
            let Some((at, len, hole)) = next else {
                pieces.push(rest.to_vec());
                break;
            };
            pieces.push(rest[..at].to_vec());
            holes.push(hole);
            rest = &rest[at + len..];
        }
        ensure!(holes.contains(&Hole::Uid), "the template has no uid");
        Ok(Self { pieces, holes })
    }

    pub(crate) fn render(&self, fill: &Fill<'_>) -> Bytes {
        let size = self.pieces.iter().map(Vec::len).sum::<usize>()
            + fill.uid.len().max(fill.name.len()).max(fill.location.len()) * self.holes.len();
        let mut out = Vec::with_capacity(size);
        for (piece, hole) in self.pieces.iter().zip(&self.holes) {
            out.extend_from_slice(piece);
            out.extend_from_slice(
                match hole {
                    Hole::Uid => fill.uid,
                    Hole::Name => fill.name,
                    Hole::Location => fill.location,
                }
                .as_bytes(),
            );
        }
        if let Some(last) = self.pieces.last() {
            out.extend_from_slice(last);
        }
        out.into()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The captured create with a top-level `kind` of `size` bytes, which the 400 answer
/// names.
pub(crate) fn long_kind(size: usize) -> Result<Bytes> {
    let mut review = read_fixture("savepoint-create.json")?;
    review["kind"] = "K".repeat(size).into();
    Ok(serde_json::to_vec(&review)?.into())
}
