//! The full read of `_metadata` beside the header read it extends, on files Flink wrote
//! (`tests/fixtures/metadata/`): a header parse, and a full parse of a savepoint and of a
//! retained checkpoint with about 200 state files, for Flink 1.20 (format 4) and 2.2
//! (format 6). The baseline is the header parse, measured in the same run.
//!
//! `cargo bench --bench metadata`; `-- --test` runs each once (what CI does).
#![allow(clippy::unwrap_used)] // tests may unwrap (see [lints] in Cargo.toml)

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use savepoint_webhook::verify::{header, metadata};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/metadata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn reads(c: &mut Criterion) {
    for release in ["1.20.5", "2.2.1"] {
        let mut group = c.benchmark_group(format!("metadata/flink-{release}"));
        for snapshot in ["rocksdb-native", "rocksdb-many"] {
            let bytes = fixture(&format!("flink-{release}-{snapshot}"));
            let files = metadata::parse(&bytes).unwrap().files.len();
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_function(format!("{snapshot}/header"), |b| {
                b.iter(|| header::parse(black_box(&bytes[..header::HEADER_LEN])))
            });
            group.bench_function(format!("{snapshot}/full ({files} files)"), |b| {
                b.iter(|| metadata::parse(black_box(&bytes)).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, reads);
criterion_main!(benches);
