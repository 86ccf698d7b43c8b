"""Runs small stateful streaming jobs on a local Flink MiniCluster (PyPI `apache-flink`,
1.20.x or 2.x) and has Flink write real snapshots under OUT_DIR, then reads each back
with Flink's own `Checkpoints.loadCheckpointMetadata` and reports what it references.

Usage: python take_savepoints.py [--no-many] OUT_DIR

Both jobs use the RocksDB state backend with incremental checkpoints and an inline
threshold of 1 KiB, so state lands in files of its own (RocksDB's `.sst` files, shared
between checkpoints under `checkpoints/<job-id>/shared/`), and only small pieces stay in
`_metadata` as inline handles.

  * `main`, parallelism 2: a datagen source and a keyed aggregate. After a few
    checkpoints Flink writes a CANONICAL and a NATIVE savepoint under
    `OUT_DIR/savepoints/`; after some more the job is cancelled and its latest
    checkpoint stays (RETAIN_ON_CANCELLATION) under `OUT_DIR/checkpoints/<job-id>/chk-<n>`,
    referencing `.sst` files uploaded by earlier checkpoints.
  * `many`, parallelism 8 (left out with --no-many): one source feeding four stateful
    operators (a keyed aggregate, a distinct count, a deduplication and a tumbling
    window); its retained checkpoint references a few hundred files, for timing readers.

Prints one JSON object on stdout (progress and timings go to stderr):

  {"flink_version": "2.2.1",
   "canonical": SNAPSHOT, "native": SNAPSHOT, "retained": SNAPSHOT, "many": SNAPSHOT}

where each SNAPSHOT is

  {"path": "file:/.../savepoint-1a2b3c-4d5e6f7a8b9c",   # as Flink reports it
   "job_id": "8f1e...",                                # hex JobID of the job that wrote it
   "checkpoint_id": 7,                # CheckpointMetadata.getCheckpointId()
   "metadata_version": 6,             # the big-endian int after the magic in _metadata
   "properties": {                    # getCheckpointProperties(); null if the release has none
     "type": "SAVEPOINT" | "CHECKPOINT",
     "format": "CANONICAL" | "NATIVE" | null,   # getFormatType(); null for checkpoints
     "name": "Savepoint",             # SnapshotType.getName()
     "sharing_files_strategy": "NO_SHARING" | "FORWARD_BACKWARD" | ...,
     "unclaimed": false},
   "operators": [                     # one per OperatorState, in metadata order
     {"id": "<32 hex digits>",        # OperatorID.toHexString()
      "name": "..." | null, "uid": "..." | null,   # null where the release has none (1.20)
      "parallelism": 2, "max_parallelism": 128,
      "subtask_count": 2,             # entries in getSubtaskStates()
      "state_size": 123456,           # OperatorState.getStateSize()
      "coordinator_state": true}],    # whether it has operator-coordinator state
   "files": [                         # one per state handle that names a file
     {"path": "file:/.../shared/1f0c...",   # getFilePath(), absolute, as Flink reports it
      "size": 4096,                   # getStateSize(): bytes this handle covers
      "handle": "RelativeFileStateHandle",  # Java class simple name of the file handle
      "role": "managed_keyed/shared", # where it hangs, below
      "operator": "<hex id>", "subtask": 0,
      "relative_path": "...",         # only for RelativeFileStateHandle (savepoints)
      "local_path": "000012.sst",     # only for RocksDB's shared/private files
      "offset": 0,                    # only for SegmentFileStateHandle (file merging)
      "key_groups": [0, 63]}],        # only below a keyed handle: its key-group range
   "inline_handles": [                # ByteStreamStateHandle: bytes inside _metadata
     {"name": "...", "size": 312, "role": "...", "operator": "<hex id>",
      "subtask": 1 | null}],          # null for coordinator state
   "placeholders": [...],             # PlaceholderStreamStateHandle, same keys as files
                                      # without path (none expected in _metadata)
   "handle_types": {"KeyGroupsStateHandle": 2, ...}}   # count per Java class simple name

`role` is the OperatorSubtaskState collection the handle was found in (`managed_keyed`,
`raw_keyed`, `managed_operator`, `raw_operator`, `input_channel`, `result_subpartition`)
or `coordinator`, then, below an IncrementalRemoteKeyedStateHandle, `/shared`, `/private`
or `/metadata`, and below a changelog handle `/materialized` or `/changelog`. The walk
follows each known handle type's getters (KeyGroupsStateHandle, OperatorStreamStateHandle,
IncrementalRemoteKeyedStateHandle, channel state, changelog handles, FileStateHandle,
RelativeFileStateHandle, SegmentFileStateHandle, ByteStreamStateHandle); any other state
object is walked by reflection over its getters and named on stderr, never skipped.

Before printing, the script checks that every referenced file is on disk with the size its
handle reports, that the retained checkpoints reference files under `shared/`, and that
each snapshot's properties say what it was taken as; a failed check exits non-zero.

Savepoints are triggered through the Java `JobClient.triggerSavepoint(String,
SavepointFormatType)` over py4j (PyFlink's wrapper lacks the format type). Config keys
are read from Flink's own ConfigOption constants, so each release gets its own names.
"""

import glob
import json
import os
import struct
import sys
import tempfile
import time

from py4j.java_gateway import JavaObject
from pyflink.common import Configuration
from pyflink.java_gateway import get_gateway
from pyflink.table import EnvironmentSettings, TableEnvironment

DEADLINE_S = 120
INLINE_THRESHOLD = "1 kb"


def log(message):
    print(f"take_savepoints: {message}", file=sys.stderr, flush=True)


def wait_for(what, predicate):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise SystemExit(f"take_savepoints: timed out waiting for {what}")


def option_key(jvm, field, *holders):
    """The key of Flink's ConfigOption HOLDER.FIELD in the running release, from the first
    of HOLDERS this release has."""
    for holder in holders:
        try:
            cls = jvm.java.lang.Class.forName(holder)
        except Exception:
            continue
        return cls.getField(field).get(None).key()
    raise SystemExit(f"take_savepoints: no {field} in {holders}")


def flink_config(jvm, checkpoints, savepoints, scratch, parallelism):
    checkpointing = "org.apache.flink.configuration.CheckpointingOptions"
    rocksdb = [
        f"org.apache.flink.{p}.RocksDBConfigurableOptions"
        for p in ("state.rocksdb", "contrib.streaming.state")
    ]

    def key(field, *holders):
        return option_key(jvm, field, *(holders or [checkpointing]))

    config = Configuration()
    for k, value in {
        "parallelism.default": str(parallelism),
        "rest.bind-port": "0",
        key("STATE_BACKEND", "org.apache.flink.configuration.StateBackendOptions"): "rocksdb",
        key("INCREMENTAL_CHECKPOINTS"): "true",
        key("FS_SMALL_FILE_THRESHOLD"): INLINE_THRESHOLD,
        key("CHECKPOINTS_DIRECTORY"): f"file://{checkpoints}",
        key("SAVEPOINT_DIRECTORY"): f"file://{savepoints}",
        key("CHECKPOINTING_INTERVAL"): "500 ms",
        key("EXTERNALIZED_CHECKPOINT_RETENTION"): "RETAIN_ON_CANCELLATION",
        # RocksDB's own log goes to Flink's log directory (inside the venv) by default.
        key("LOG_DIR", *rocksdb): scratch,
        key("LOG_LEVEL", *rocksdb): "HEADER_LEVEL",
    }.items():
        config.set_string(k, value)
    return config


def completed_checkpoints(checkpoints, job_id):
    return sorted(
        (
            os.path.dirname(m)
            for m in glob.glob(f"{checkpoints}/{job_id}/chk-*/_metadata")
        ),
        key=checkpoint_id,
    )


def checkpoint_id(directory):
    return int(directory.rsplit("-", 1)[1])


def wait_for_checkpoints(checkpoints, job_id, count, after=0):
    """Waits until the latest completed checkpoint is the `count`-th after id `after`
    (only the latest stays on disk); returns its directory."""

    def done():
        found = completed_checkpoints(checkpoints, job_id)
        return found[-1] if found and checkpoint_id(found[-1]) >= after + count else None

    return wait_for(f"checkpoint {after + count} of job {job_id}", done)


def header_checkpoint_id(path):
    """The checkpoint id in the header of PATH/_metadata (magic, version, id)."""
    with open(os.path.join(path.removeprefix("file:"), "_metadata"), "rb") as f:
        return struct.unpack(">IIq", f.read(16))[2]


class Job:
    """One streaming job submitted from SQL, with a handle on its Java JobClient."""

    def __init__(self, jvm, out, scratch, parallelism, ddl, inserts):
        self.checkpoints = os.path.join(out, "checkpoints")
        self.savepoints = os.path.join(out, "savepoints")
        os.makedirs(self.checkpoints, exist_ok=True)
        os.makedirs(self.savepoints, exist_ok=True)
        config = flink_config(jvm, self.checkpoints, self.savepoints, scratch, parallelism)
        settings = (
            EnvironmentSettings.new_instance()
            .in_streaming_mode()
            .with_configuration(config)
            .build()
        )
        tables = TableEnvironment.create(settings)
        for statement in ddl:
            tables.execute_sql(statement)
        statements = tables.create_statement_set()
        for insert in inserts:
            statements.add_insert_sql(insert)
        result = statements.execute()
        self.client = result.get_job_client()._j_job_client
        self.id = self.client.getJobID().toHexString()

    def savepoint(self, format_type):
        return self.client.triggerSavepoint(f"file://{self.savepoints}", format_type).get()

    def checkpoints_after(self, count, after=0):
        return wait_for_checkpoints(self.checkpoints, self.id, count, after)

    def cancel_and_retain(self):
        """Cancels the job; returns its latest checkpoint, which Flink keeps."""
        self.client.cancel().get()
        retained = completed_checkpoints(self.checkpoints, self.id)[-1]
        return f"file:{retained}"


# ---------------------------------------------------------------------------------------
# Reading a snapshot back with Flink's own classes
# ---------------------------------------------------------------------------------------

# Handle kinds the walk knows, most specific first: (Java class, kind).
KINDS = [
    ("org.apache.flink.runtime.state.KeyGroupsStateHandle", "key_groups"),
    ("org.apache.flink.runtime.state.OperatorStreamStateHandle", "operator_stream"),
    ("org.apache.flink.runtime.state.IncrementalRemoteKeyedStateHandle", "incremental"),
    (
        "org.apache.flink.runtime.state.changelog.ChangelogStateBackendHandle",
        "changelog_backend",
    ),
    (
        "org.apache.flink.runtime.state.changelog.ChangelogStateHandleStreamImpl",
        "changelog_stream",
    ),
    ("org.apache.flink.runtime.state.AbstractChannelStateHandle", "channel"),
    ("org.apache.flink.runtime.state.AbstractMergedChannelStateHandle", "channel"),
    ("org.apache.flink.runtime.state.filemerging.SegmentFileStateHandle", "segment"),
    ("org.apache.flink.runtime.state.filesystem.FileStateHandle", "file"),
    ("org.apache.flink.runtime.state.memory.ByteStreamStateHandle", "inline"),
    (
        "org.apache.flink.runtime.state.changelog.inmemory.InMemoryChangelogStateHandle",
        "inline_changelog",
    ),
    ("org.apache.flink.runtime.state.PlaceholderStreamStateHandle", "placeholder"),
    ("org.apache.flink.runtime.state.StateObject", "other"),
]

SUBTASK_COLLECTIONS = [
    ("getManagedKeyedState", "managed_keyed"),
    ("getRawKeyedState", "raw_keyed"),
    ("getManagedOperatorState", "managed_operator"),
    ("getRawOperatorState", "raw_operator"),
    ("getInputChannelState", "input_channel"),
    ("getResultSubpartitionState", "result_subpartition"),
]


class Walker:
    """Collects every file, inline handle and handle type one snapshot references."""

    def __init__(self, gateway, java):
        self.gateway = gateway
        self.java = java
        self.kinds = []
        for name, kind in KINDS:
            try:
                self.kinds.append((java.cls(name), kind))
            except Exception:  # not in this release (e.g. merged channel state in 1.20)
                pass
        self.kind_of = {}
        self.getters_of = {}
        self.files = []
        self.inline = []
        self.placeholders = []
        self.types = {}

    def classify(self, obj):
        cls = obj.getClass()
        name = cls.getName()
        if name not in self.kind_of:
            kind = next((k for c, k in self.kinds if c.isAssignableFrom(cls)), None)
            self.kind_of[name] = (kind, cls.getSimpleName())
        return self.kind_of[name]

    def walk_subtask(self, subtask_state, operator, subtask):
        for getter, role in SUBTASK_COLLECTIONS:
            if not self.java.has(subtask_state, getter):
                continue
            for handle in self.java.iterate(getattr(subtask_state, getter)()):
                self.walk(handle, {"role": role, "operator": operator, "subtask": subtask})

    def walk(self, obj, where):
        if obj is None:
            return
        kind, simple = self.classify(obj)
        if kind is None:
            name = obj.getClass().getName()
            raise SystemExit(f"take_savepoints: not a state object: {name}")
        self.types[simple] = self.types.get(simple, 0) + 1
        iterate = self.java.iterate

        def below(role, **more):
            return {**where, "role": f"{where['role']}/{role}", **more}

        if kind in ("key_groups", "incremental"):
            key_groups = obj.getKeyGroupRange()
            where = {
                **where,
                "key_groups": [key_groups.getStartKeyGroup(), key_groups.getEndKeyGroup()],
            }
        if kind in ("key_groups", "operator_stream"):
            self.walk(obj.getDelegateStateHandle(), where)
        elif kind == "incremental":
            for role, entries in [
                ("shared", obj.getSharedState()),
                ("private", obj.getPrivateState()),
            ]:
                for entry in iterate(entries):
                    self.walk(entry.getHandle(), below(role, local_path=entry.getLocalPath()))
            self.walk(obj.getMetaDataStateHandle(), below("metadata"))
        elif kind == "changelog_backend":
            for handle in iterate(obj.getMaterializedStateHandles()):
                self.walk(handle, below("materialized"))
            for handle in iterate(obj.getNonMaterializedStateHandles()):
                self.walk(handle, below("changelog"))
        elif kind == "changelog_stream":
            for pair in iterate(obj.getHandlesAndOffsets()):
                self.walk(self.gateway.get_field(pair, "f0"), where)
        elif kind == "channel":
            self.walk(obj.getDelegate(), where)
        elif kind in ("segment", "file"):
            entry = {
                "path": obj.getFilePath().toString(),
                "size": obj.getStateSize(),
                "handle": simple,
                **where,
            }
            if kind == "segment":
                entry["offset"] = obj.getStartPos()
            elif self.java.has(obj, "getRelativePath"):
                entry["relative_path"] = obj.getRelativePath()
            self.files.append(entry)
        elif kind == "inline":
            self.inline.append(
                {"name": obj.getHandleName(), "size": obj.getStateSize(), **where}
            )
        elif kind == "inline_changelog":
            self.inline.append({"name": simple, "size": obj.getStateSize(), **where})
        elif kind == "placeholder":
            self.placeholders.append({"size": obj.getStateSize(), "handle": simple, **where})
        else:
            self.walk_unknown(obj, where)

    def walk_unknown(self, obj, where):
        """A state object of a type the walk does not know: follow its getters that return
        state objects, collections or Optionals of them (RocksDB's HandleAndLocalPath and
        Tuple2 pairs unwrapped), each child once even when two getters return it."""
        java = self.java
        cls = obj.getClass()
        name = cls.getName()
        if name not in self.getters_of:
            log(f"walking {name} by reflection over its getters")
            followed = [
                java.cls(c)
                for c in (
                    "org.apache.flink.runtime.state.StateObject",
                    "java.util.Collection",
                    "java.util.Optional",
                )
            ]
            self.getters_of[name] = sorted(
                m.getName()
                for m in cls.getMethods()
                if m.getParameterCount() == 0
                and m.getName().startswith("get")
                and m.getName() != "getDiscardables"
                and any(c.isAssignableFrom(m.getReturnType()) for c in followed)
            )
        state_object = "org.apache.flink.runtime.state.StateObject"
        seen = set()
        for getter in self.getters_of[name]:
            for value in java.iterate(getattr(obj, getter)()):
                if not isinstance(value, JavaObject):
                    continue
                if java.isinstance(value, "org.apache.flink.api.java.tuple.Tuple2"):
                    value = self.gateway.get_field(value, "f0")
                elif not java.isinstance(value, state_object) and java.has(value, "getHandle"):
                    value = value.getHandle()
                if not isinstance(value, JavaObject):
                    continue
                if not java.isinstance(value, state_object):
                    continue
                identity = java.jvm.java.lang.System.identityHashCode(value)
                if identity in seen:
                    continue
                seen.add(identity)
                self.walk(value, {**where, "role": f"{where['role']}/{getter[3:].lower()}"})


class Java:
    """Type questions about Java objects (py4j answers any attribute, so `hasattr` cannot)."""

    def __init__(self, gateway):
        self.jvm = gateway.jvm
        self.classes = {}
        self.methods = {}

    def cls(self, name):
        if name not in self.classes:
            self.classes[name] = self.jvm.java.lang.Class.forName(name)
        return self.classes[name]

    def isinstance(self, obj, name):
        return self.cls(name).isInstance(obj)

    def has(self, obj, method):
        """Whether OBJ has a public method METHOD taking no arguments."""
        cls = obj.getClass()
        name = cls.getName()
        if name not in self.methods:
            self.methods[name] = {
                m.getName() for m in cls.getMethods() if m.getParameterCount() == 0
            }
        return method in self.methods[name]

    def iterate(self, value):
        """The elements of a Java Iterable or Optional, or [VALUE]; [] for null."""
        if value is None:
            return []
        if self.isinstance(value, "java.util.Optional"):
            return [value.get()] if value.isPresent() else []
        if self.isinstance(value, "java.lang.Iterable"):
            items = []
            it = value.iterator()
            while it.hasNext():
                items.append(it.next())
            return items
        return [value]

    def optional(self, obj, getter):
        """OBJ.GETTER() unwrapped from its Optional; None if absent or no such getter."""
        if not self.has(obj, getter):
            return None
        value = getattr(obj, getter)()
        return value.get() if value.isPresent() else None


def describe(gateway, path, job_id):
    """The oracle for the snapshot at PATH, read with Flink's own classes."""
    jvm = gateway.jvm
    local = path.removeprefix("file:")
    with open(os.path.join(local, "_metadata"), "rb") as f:
        magic, version = struct.unpack(">II", f.read(8))
    if magic != 0x4960672D:
        raise SystemExit(f"take_savepoints: {local}/_metadata has magic {magic:#x}")
    stream = jvm.java.io.DataInputStream(
        jvm.java.io.FileInputStream(os.path.join(local, "_metadata"))
    )
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        metadata = jvm.org.apache.flink.runtime.checkpoint.Checkpoints.loadCheckpointMetadata(
            stream, loader, path
        )
    finally:
        stream.close()

    java = Java(gateway)
    properties = None
    props = None
    if java.has(metadata, "getCheckpointProperties"):
        props = metadata.getCheckpointProperties()
    if props is not None:
        snapshot_type = props.getCheckpointType()
        format_type = (
            snapshot_type.getFormatType().name()
            if java.has(snapshot_type, "getFormatType")
            else None
        )
        properties = {
            "type": "SAVEPOINT" if props.isSavepoint() else "CHECKPOINT",
            "format": format_type,
            "name": snapshot_type.getName(),
            "sharing_files_strategy": snapshot_type.getSharingFilesStrategy().name(),
            "unclaimed": props.isUnclaimed(),
        }

    walker = Walker(gateway, java)
    operators = []
    for operator_state in java.iterate(metadata.getOperatorStates()):
        operator = operator_state.getOperatorID().toHexString()
        subtasks = operator_state.getSubtaskStates()
        coordinator = operator_state.getCoordinatorState()
        operators.append(
            {
                "id": operator,
                "name": java.optional(operator_state, "getOperatorName"),
                "uid": java.optional(operator_state, "getOperatorUid"),
                "parallelism": operator_state.getParallelism(),
                "max_parallelism": operator_state.getMaxParallelism(),
                "subtask_count": subtasks.size(),
                "state_size": operator_state.getStateSize(),
                "coordinator_state": coordinator is not None,
            }
        )
        where = {"role": "coordinator", "operator": operator, "subtask": None}
        walker.walk(coordinator, where)
        for index in sorted(int(i) for i in java.iterate(subtasks.keySet())):
            walker.walk_subtask(subtasks.get(index), operator, index)

    def order(e):
        subtask = -1 if e["subtask"] is None else e["subtask"]
        return (e["operator"], subtask, e["role"], e.get("path", e.get("name", "")))

    return {
        "path": path,
        "job_id": job_id,
        "checkpoint_id": int(metadata.getCheckpointId()),
        "metadata_version": version,
        "properties": properties,
        "operators": operators,
        "files": sorted(walker.files, key=order),
        "inline_handles": sorted(walker.inline, key=order),
        "placeholders": sorted(walker.placeholders, key=order),
        "handle_types": dict(sorted(walker.types.items())),
    }


# ---------------------------------------------------------------------------------------
# The jobs
# ---------------------------------------------------------------------------------------

def source_ddl(out, rows_per_second, keys):
    """Two sources: random rows without state of their own, and CSV files read by a
    monitoring FileSource (split state per reader, the enumerator's state in the
    coordinator)."""
    seeds = os.path.join(out, "input")
    os.makedirs(seeds, exist_ok=True)
    for part in range(4):
        with open(os.path.join(seeds, f"part-{part}.csv"), "w") as f:
            for k in range(part, keys, 97):
                f.write(f"{k},seed-{k:08d}\n")
    return [
        "CREATE TABLE ticks (k INT, g INT, v STRING, pt AS PROCTIME()) WITH ("
        f" 'connector' = 'datagen', 'rows-per-second' = '{rows_per_second}',"
        f" 'fields.k.min' = '0', 'fields.k.max' = '{keys - 1}',"
        " 'fields.g.min' = '0', 'fields.g.max' = '99', 'fields.v.length' = '64')",
        "CREATE TABLE seeds (k INT, v STRING) WITH ("
        f" 'connector' = 'filesystem', 'path' = 'file://{seeds}', 'format' = 'csv',"
        " 'source.monitor-interval' = '1 s')",
    ]


BY_KEY = (
    "SELECT k, COUNT(*), MAX(v) FROM"
    " (SELECT k, v FROM ticks UNION ALL SELECT k, v FROM seeds) GROUP BY k"
)


def run_main(jvm, out, scratch, formats):
    """Parallelism 2, one keyed aggregate: canonical, native, retained."""
    job = Job(
        jvm,
        out,
        scratch,
        2,
        source_ddl(out, 500, 5000)
        + ["CREATE TABLE counts (k INT, n BIGINT, v STRING) WITH ('connector' = 'blackhole')"],
        [f"INSERT INTO counts {BY_KEY}"],
    )
    first = job.checkpoints_after(3)
    log(f"main job {job.id}: {os.path.basename(first)} completed")
    canonical = job.savepoint(formats.CANONICAL)
    native = job.savepoint(formats.NATIVE)
    log(f"main job {job.id}: savepoints written")
    # Several more checkpoints after the savepoints, so that the retained one builds on
    # RocksDB files uploaded by its predecessors, then cancel: with
    # RETAIN_ON_CANCELLATION the latest completed checkpoint stays on disk.
    job.checkpoints_after(3, after=header_checkpoint_id(native))
    retained = job.cancel_and_retain()
    return job, {"canonical": canonical, "native": native, "retained": retained}


def run_many(jvm, out, scratch):
    """Parallelism 8, four stateful operators: a retained checkpoint with many files."""
    job = Job(
        jvm,
        out,
        scratch,
        8,
        source_ddl(out, 400, 20000)
        + [
            "CREATE TABLE by_key (k INT, n BIGINT, v STRING) WITH ('connector' = 'blackhole')",
            "CREATE TABLE distinct_keys (g INT, n BIGINT) WITH ('connector' = 'blackhole')",
            "CREATE TABLE latest (k INT, g INT, v STRING) WITH ('connector' = 'blackhole')",
            "CREATE TABLE windows (w TIMESTAMP(3), g INT, n BIGINT)"
            " WITH ('connector' = 'blackhole')",
        ],
        [
            f"INSERT INTO by_key {BY_KEY}",
            "INSERT INTO distinct_keys SELECT g, COUNT(DISTINCT k) FROM ticks GROUP BY g",
            "INSERT INTO latest SELECT k, g, v FROM ("
            " SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY pt DESC) AS rn FROM ticks"
            ") WHERE rn = 1",
            "INSERT INTO windows SELECT window_start, g, COUNT(*) FROM TABLE("
            " TUMBLE(TABLE ticks, DESCRIPTOR(pt), INTERVAL '1' HOUR))"
            " GROUP BY window_start, window_end, g",
        ],
    )
    last = job.checkpoints_after(4)
    log(f"many job {job.id}: {os.path.basename(last)} completed")
    return job, job.cancel_and_retain()


# What each snapshot must be: (properties.type, properties.format).
EXPECTED = {
    "canonical": ("SAVEPOINT", "CANONICAL"),
    "native": ("SAVEPOINT", "NATIVE"),
    "retained": ("CHECKPOINT", None),
    "many": ("CHECKPOINT", None),
}


def check_files(name, report):
    """Every referenced file is on disk, as long as its handle says (segments of merged
    files aside), and the snapshot is of the kind it was taken as."""
    for f in report["files"]:
        local = f["path"].removeprefix("file:")
        if not os.path.isfile(local):
            raise SystemExit(f"take_savepoints: {name} references a missing file: {f}")
        if "offset" not in f and os.path.getsize(local) != f["size"]:
            raise SystemExit(
                f"take_savepoints: {name}: {local} has {os.path.getsize(local)} bytes: {f}"
            )
    props = report["properties"]
    if props is not None and (props["type"], props["format"]) != EXPECTED[name]:
        raise SystemExit(f"take_savepoints: {name} has properties {props}")


def check_shared(report, job):
    """The retained checkpoint references RocksDB files under <checkpoints>/<job>/shared/."""
    shared_dir = os.path.join(job.checkpoints, job.id, "shared")
    on_disk = {
        os.path.join(shared_dir, name)
        for name in (os.listdir(shared_dir) if os.path.isdir(shared_dir) else [])
    }
    referenced = {
        f["path"].removeprefix("file:")
        for f in report["files"]
        if f["role"].endswith("/shared")
    }
    if not on_disk or not referenced or not referenced <= on_disk:
        raise SystemExit(
            "take_savepoints: the retained checkpoint should reference files under "
            f"{shared_dir}: {len(on_disk)} there, {len(referenced)} referenced, "
            f"missing: {sorted(referenced - on_disk)[:5]}"
        )
    return len(referenced)


def main():
    args = sys.argv[1:]
    many = "--no-many" not in args
    args = [a for a in args if a != "--no-many"]
    if len(args) != 1:
        raise SystemExit("usage: take_savepoints.py [--no-many] OUT_DIR")
    out = os.path.abspath(args[0])
    started = time.monotonic()
    gateway = get_gateway()
    jvm = gateway.jvm
    formats = jvm.org.apache.flink.core.execution.SavepointFormatType
    version = jvm.org.apache.flink.runtime.util.EnvironmentInformation.getVersion()
    log(f"Flink {version} up in {time.monotonic() - started:.1f}s")

    with tempfile.TemporaryDirectory(prefix="take-savepoints-") as scratch:
        main_job, paths = run_main(jvm, out, scratch, formats)
        log(f"main job done at {time.monotonic() - started:.1f}s")
        jobs = {name: main_job for name in paths}
        if many:
            many_job, paths["many"] = run_many(jvm, out, scratch)
            jobs["many"] = many_job
            log(f"many job done at {time.monotonic() - started:.1f}s")

    report = {"flink_version": version}
    for name, path in paths.items():
        read = time.monotonic()
        report[name] = describe(gateway, path, jobs[name].id)
        log(
            f"{name}: checkpoint {report[name]['checkpoint_id']}, "
            f"version {report[name]['metadata_version']}, "
            f"{len(report[name]['files'])} files, "
            f"{len(report[name]['inline_handles'])} inline, "
            f"read in {time.monotonic() - read:.1f}s"
        )
    for name in paths:
        check_files(name, report[name])
    for name in ("retained", "many"):
        if name in report:
            log(f"{name}: {check_shared(report[name], jobs[name])} shared files referenced")
    log(f"done in {time.monotonic() - started:.1f}s")
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
