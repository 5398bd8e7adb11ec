"""Issue 5 fault test: SIGKILL the journal in the middle of a stream, restart, lose nothing.

Runs against the hidden `keyway journal-stress` command (JournalStress in Sources/keyway behind it):

    keyway journal-stress --db PATH [--sources N] [--count N] [--concurrency N] [--site S]
                          [--webhook URL --secret SECRET]

which prints one JSON line per *acknowledged* record — {"id", "source", "sequence", "position"} — only
after the record call returned (the event is durable), and, once --count events are recorded and (with
--webhook) all delivered, a final {"done": true, ...} line. Without --count it records until killed;
--count 0 records nothing and only delivers what the journal holds.

Checks, after each kill -9 at an arbitrary moment:
  * every acknowledged event is in the journal with the same id and sequence number;
  * per source, sequence numbers are 1..N without gaps or duplicates; ids are unique;
  * a restart continues each source's numbering and never reuses an id;
  * with a webhook: after a restart drains the journal, the receiver (standardwebhooks + cloudevents)
    has every event, duplicates only under the same id with the same body, never out of order per source.
"""
import json
import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from webhook_receiver import WebhookReceiver

ROOT = pathlib.Path(__file__).resolve().parents[2]
# KEYWAY_BIN runs the test against another build (e.g. .build/release/keyway).
KEYWAY = pathlib.Path(os.environ.get("KEYWAY_BIN", ROOT / ".build" / "debug" / "keyway"))


def _has_journal_stress() -> bool:
    if not KEYWAY.exists():
        return False
    try:
        r = subprocess.run([str(KEYWAY), "journal-stress", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "--db" in (r.stdout + r.stderr)


pytestmark = pytest.mark.skipif(not _has_journal_stress(),
                                reason="needs the hidden `keyway journal-stress` command in .build/debug/keyway")


class Stress:
    """Runs journal-stress, collecting its acknowledgement lines on a thread."""

    def __init__(self, db, *extra):
        self.acks = []
        self.done = None
        self.proc = subprocess.Popen([str(KEYWAY), "journal-stress", "--db", str(db), *map(str, extra)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by SIGKILL: never acknowledged
            if obj.get("done"):
                self.done = obj
            elif "id" in obj:
                self.acks.append(obj)

    def kill_after(self, min_acks, max_seconds):
        deadline = time.time() + max_seconds
        while time.time() < deadline and len(self.acks) < min_acks and self.proc.poll() is None:
            time.sleep(0.005)
        time.sleep(random.uniform(0, 0.05))  # land at an arbitrary point of a group commit
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL

    def wait(self, timeout):
        self.proc.wait(timeout=timeout)
        self.reader.join(timeout=30)
        return self.proc.returncode


def journal_rows(db):
    con = sqlite3.connect(str(db))
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return con.execute("SELECT id, source, seq FROM events ORDER BY position").fetchall()
    finally:
        con.close()


def check_journal(db, acks):
    rows = journal_rows(db)
    by_id = {r[0]: (r[1], r[2]) for r in rows}
    assert len(by_id) == len(rows), "ids are unique"
    for a in acks:
        assert by_id.get(a["id"]) == (a["source"], a["sequence"]), f"acknowledged event missing or renamed: {a}"
    per_source = {}
    for _, source, seq in rows:
        per_source.setdefault(source, []).append(seq)
    for source, seqs in per_source.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"{source}: gaps or duplicates"
    return rows, per_source


def test_kill9_during_recording_loses_nothing(tmp_path):
    db = tmp_path / "journal.db"
    acked = []
    for round_ in range(3):
        s = Stress(db, "--sources", 8, "--concurrency", 64)
        s.kill_after(min_acks=500 + 1000 * round_, max_seconds=20)
        assert s.acks, "journal-stress acknowledged nothing before the kill"
        acked += s.acks
        rows, _ = check_journal(db, acked)
        assert len(rows) >= len(acked)
    # A clean run after the kills continues every source's numbering.
    before = {src: max(seqs) for src, seqs in check_journal(db, acked)[1].items()}
    s = Stress(db, "--sources", 8, "--concurrency", 16, "--count", 400)
    assert s.wait(timeout=120) == 0
    assert s.done and s.done["recorded"] == 400
    old_ids = {r[0] for r in journal_rows(db)} - {a["id"] for a in s.acks}
    assert not old_ids & {a["id"] for a in s.acks}
    for a in s.acks:
        assert a["sequence"] > before.get(a["source"], 0)
    check_journal(db, acked + s.acks)


def test_kill9_mid_stream_then_every_event_arrives_once_per_id(tmp_path):
    receiver = WebhookReceiver(fail_first=20, workdir=tmp_path)
    secret, url = receiver.secret, receiver.url
    try:
        db = tmp_path / "journal.db"
        s = Stress(db, "--sources", 4, "--concurrency", 32, "--webhook", url, "--secret", secret)
        s.kill_after(min_acks=1500, max_seconds=20)
        check_journal(db, s.acks)
        drain = Stress(db, "--count", 0, "--webhook", url, "--secret", secret)
        assert drain.wait(timeout=180) == 0, "the restarted process must deliver everything"
        assert drain.done and drain.done["delivered"] is True
        time.sleep(0.1)
        rows = journal_rows(db)
        records = receiver.deliveries
        unverified = [r for r in records if not r["verified"]]
        assert not unverified, f"standardwebhooks rejected a signature: {unverified[:3]}"
        assert all(r["parsed"] for r in records), "cloudevents SDK could not parse a body"
        assert all(r["webhook_id"] == r["id"] for r in records)
        accepted = {r["id"] for r in records if 200 <= r["status"] < 300}
        assert accepted == {r[0] for r in rows}, "every journal event arrived"
        bodies = {}
        for r in records:
            assert bodies.setdefault(r["id"], r["body_sha256"]) == r["body_sha256"], "a duplicate changed its body"
        seq_of = {r[0]: (r[1], r[2]) for r in rows}
        acked_through = {}
        for r in sorted(records, key=lambda r: r["n"]):
            source, seq = seq_of[r["id"]]
            assert (r["source"], r["sequence"]) == (source, seq), "same id, same event"
            assert seq <= acked_through.get(source, 0) + 1, f"{source}: {seq} sent before its predecessor was acknowledged"
            if 200 <= r["status"] < 300:
                acked_through[source] = max(acked_through.get(source, 0), seq)
    finally:
        receiver.stop()
