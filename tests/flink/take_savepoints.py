"""Runs a small stateful streaming job on a local Flink MiniCluster and has Flink write a
canonical savepoint, a native savepoint and a retained checkpoint under OUT_DIR.

Usage: python take_savepoints.py OUT_DIR

Prints one JSON object on stdout:
  {"flink_version": "2.2.1",
   "canonical": {"path": "file:/...", "checkpoint_id": 3},
   "native":    {"path": "file:/...", "checkpoint_id": 5},
   "retained":  {"path": "file:/.../chk-7", "checkpoint_id": 7}}

Paths are as Flink reports them (`file:/...`). Each checkpoint id is what Flink's own
`Checkpoints.loadCheckpointMetadata` reads back from the `_metadata` file, an oracle
independent of the webhook's reader. Savepoints are triggered through the Java
`JobClient.triggerSavepoint(String, SavepointFormatType)` over py4j (PyFlink's wrapper
lacks the format type).
"""

import glob
import json
import os
import sys
import time

from pyflink.common import Configuration
from pyflink.java_gateway import get_gateway
from pyflink.table import EnvironmentSettings, TableEnvironment

DEADLINE_S = 120


def wait_for(what, predicate):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise SystemExit(f"take_savepoints: timed out waiting for {what}")


def flink_checkpoint_id(gateway, path):
    """The checkpoint id as Flink itself reads it from PATH/_metadata."""
    jvm = gateway.jvm
    local = path.removeprefix("file:")
    stream = jvm.java.io.DataInputStream(
        jvm.java.io.FileInputStream(os.path.join(local, "_metadata"))
    )
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        metadata = jvm.org.apache.flink.runtime.checkpoint.Checkpoints.loadCheckpointMetadata(
            stream, loader, path
        )
        return int(metadata.getCheckpointId())
    finally:
        stream.close()


def completed_checkpoints(checkpoints):
    return sorted(
        (os.path.dirname(m) for m in glob.glob(f"{checkpoints}/*/chk-*/_metadata")),
        key=lambda d: int(d.rsplit("-", 1)[1]),
    )


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: take_savepoints.py OUT_DIR")
    out = os.path.abspath(sys.argv[1])
    checkpoints = os.path.join(out, "checkpoints")
    savepoints = os.path.join(out, "savepoints")
    os.makedirs(checkpoints, exist_ok=True)
    os.makedirs(savepoints, exist_ok=True)

    config = Configuration()
    for key, value in {
        "parallelism.default": "1",
        "execution.checkpointing.interval": "300 ms",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.dir": f"file://{checkpoints}",
        "execution.checkpointing.savepoint-dir": f"file://{savepoints}",
        "rest.bind-port": "0",
    }.items():
        config.set_string(key, value)
    settings = (
        EnvironmentSettings.new_instance()
        .in_streaming_mode()
        .with_configuration(config)
        .build()
    )
    tables = TableEnvironment.create(settings)
    # Java-only operators: an unbounded generator and a keyed count (keyed state).
    tables.execute_sql(
        "CREATE TABLE ticks (k INT) WITH ("
        " 'connector' = 'datagen', 'rows-per-second' = '200',"
        " 'fields.k.min' = '0', 'fields.k.max' = '15')"
    )
    tables.execute_sql(
        "CREATE TABLE counts (k INT, n BIGINT) WITH ('connector' = 'blackhole')"
    )
    result = tables.execute_sql(
        "INSERT INTO counts SELECT k, COUNT(*) FROM ticks GROUP BY k"
    )
    job = result.get_job_client()._j_job_client
    gateway = get_gateway()
    formats = gateway.jvm.org.apache.flink.core.execution.SavepointFormatType

    wait_for("a first completed checkpoint", lambda: completed_checkpoints(checkpoints))
    canonical = job.triggerSavepoint(f"file://{savepoints}", formats.CANONICAL).get()
    native = job.triggerSavepoint(f"file://{savepoints}", formats.NATIVE).get()
    # Let one more checkpoint complete after the savepoints, then cancel: with
    # RETAIN_ON_CANCELLATION the latest completed checkpoint stays on disk.
    last = completed_checkpoints(checkpoints)[-1]
    wait_for(
        "a checkpoint after the savepoints",
        lambda: completed_checkpoints(checkpoints)[-1] != last or None,
    )
    job.cancel().get()
    retained = wait_for("a retained checkpoint", lambda: completed_checkpoints(checkpoints))[-1]

    info = gateway.jvm.org.apache.flink.runtime.util.EnvironmentInformation
    report = {"flink_version": info.getVersion()}
    for name, path in [
        ("canonical", canonical),
        ("native", native),
        ("retained", f"file:{retained}"),
    ]:
        report[name] = {"path": path, "checkpoint_id": flink_checkpoint_id(gateway, path)}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
