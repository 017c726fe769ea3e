#!/usr/bin/python3
"""kafka_interop.py — a Kafka client that shares no code with choreo feeds a choreo service.

The envelopes are built by hand from docs/protocol.md ("The envelope") with msgpack only, and go
into Kafka through Debian's kcat (librdkafka's command-line client), as docs/kafka.md ("Topics
and records") says a record must look: the key is the correlation id, the value the envelope
bytes, nothing else. So the test fails if the C++ side drifts from the documents.

    /usr/bin/python3 kafka_interop.py --service path/to/kafka_interop_service \\
        --broker path/to/choreo-dev-kafka [--kcat /usr/bin/kcat]

(Debian's python3-msgpack imports only under /usr/bin/python3.)

choreo-dev-kafka runs the cluster: `choreo.ledger` (the service's topic, 4 partitions),
`choreo.ledger.1` (its instance topic) and `choreo.pyclient.1` (where replies to `pyclient/1`
go, 4 partitions so the reply's partition shows which partitioner the transport used). The
service `ledger/1` applies `deposit {round, amount}` and replies `deposited {round}`. The test:
  1. produces deposits before the service ever ran (the broker keeps them), one twice in one
     kcat call, then starts the service;
  2. produces deposits while it runs: a conversation of three under one key, one to the instance
     topic, one without a Kafka key, one with Kafka headers, one with its keys shuffled and an
     unknown key, one twice right away;
  3. produces late duplicates (copies of deposits already applied, one from step 1);
  4. produces records that must become dead letters with the reason the protocol names
     (undecodable values, an empty and a null value, misaddressed, unknown kind, handler
     refusals, ...), some of them twice, and a deposit behind them; then one deposit at the end
     of every partition, whose replies show that everything before them is committed;
  5. stops the service with SIGTERM and checks its summary: each round applied once, the balance,
     the dead letters, the outbox settled, each partition's stored offset at the partition's end;
  6. produces while it is down (a new deposit and late duplicates), starts it again on the same
     data, produces more, and checks that it read only the records it had not read before, and
     step 5's summary again;
  7. checks the replies a kcat consumer read meanwhile: one reply id per round, each answering
     its deposit, keyed by the correlation id, in the partition Kafka's Java client would pick.
Every wait is bounded and polls; on a failed check it prints why, stops every process it
started, and exits 1.
"""

import argparse
import collections
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import msgpack

SERVICE = "ledger"
SERVICE_TOPIC = "choreo.ledger"
INSTANCE_TOPIC = "choreo.ledger.1"
CLIENT = "pyclient/1"
REPLY_TOPIC = "choreo.pyclient.1"
PARTITIONS = 4          # of SERVICE_TOPIC and of REPLY_TOPIC
WAIT_S = 20             # the longest one expectation may take
RUN_S_MAX = 100         # the whole test, below the ctest TIMEOUT of 120 s
KCAT_TIMEOUT_S = 15     # one kcat call (its own metadata timeout is 5 s)
SERVICE_LIFETIME_MS = 110_000  # the service stops on its own after this, even without SIGTERM
REPLY_FORMAT = "%p %o %K %S\\n%k%s"  # kcat -f: binary-safe (lengths first, -1 for null)

RUN_END = time.monotonic() + RUN_S_MAX


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def deadline():
    """When the current expectation gives up: WAIT_S from now, never past the whole run's end."""
    return min(time.monotonic() + WAIT_S, RUN_END)


def left(end):
    return max(0.0, end - time.monotonic())


START = time.monotonic()


def log(message):
    """Progress on stdout, with the seconds since the start (ctest shows it on a failure)."""
    print(f"[{time.monotonic() - START:6.2f} s] {message}", flush=True)


# ---- envelopes, as docs/protocol.md describes them ----------------------------------------------

def uuid7():
    """A time-ordered UUID, version 7: 48-bit milliseconds, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = ((ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64)
             | (0b10 << 62) | (rand & ((1 << 62) - 1)))
    return str(uuid.UUID(int=value))


def now_ms():
    return time.time_ns() // 1_000_000


def pack(value):
    return msgpack.packb(value, use_bin_type=True)


def envelope_fields(kind, body, message_id, corr, to=SERVICE):
    return {
        "v": 1,
        "id": message_id,
        "kind": kind,
        "from": CLIENT,
        "to": to,
        "corr": corr,
        "cause": "",
        "sent_at": now_ms(),  # stamped once: copies resend these bytes
        "deadline": 0,
        "headers": {},
        "body": body,
    }


class Deposit:
    """One valid deposit, encoded once: every copy of it is these same bytes under the same id."""

    def __init__(self, round_number, corr=None, to=SERVICE, shuffled=False):
        self.round = round_number
        self.amount = 1000 + 7 * round_number
        self.id = uuid7()
        self.corr = corr or self.id
        fields = envelope_fields("deposit", pack({"round": round_number, "amount": self.amount}),
                                 self.id, self.corr, to)
        if shuffled:  # any key order, unknown keys ignored (nested ones too), optional keys left out
            fields = dict(reversed(list(fields.items())))
            fields["x-trace"] = {"span": [1, 2, {"deep": True}]}
            del fields["headers"], fields["cause"]
        self.envelope = pack(fields)


def bad_envelope(round_number=999, **changes):
    """A deposit envelope with keys changed (None removes the key). Returns (id, bytes)."""
    message_id = uuid7()
    fields = envelope_fields("deposit", pack({"round": round_number, "amount": 1_000_000}), message_id,
                             message_id)
    for key, value in changes.items():
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    return fields.get("id", message_id), pack(fields)


# ---- Kafka's partitioner, as the Java client computes it ----------------------------------------

def murmur2(data):
    """Kafka's murmur2 (the Java client's Utils.murmur2): 32 bits, seed 0x9747b28c."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) // 4 * 4
    for index in range(0, whole, 4):
        k = int.from_bytes(data[index:index + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def java_partition(key, partitions):
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


# ---- child processes ------------------------------------------------------------------------------

class Child:
    """A program whose stdout lines arrive on a queue (stderr passes through, for ctest's log)."""

    def __init__(self, name, command):
        self.name = name
        environment = dict(os.environ)
        # Under the sanitizer build, undefined behaviour ends the program (a failed exit status)
        # instead of scrolling past in its stderr.
        environment.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
        self.lines = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def next_line(self, what, end):
        try:
            line = self.lines.get(timeout=left(end))
        except queue.Empty:
            raise CheckFailed(f"{self.name} printed no {what} within {WAIT_S} s") from None
        check(line is not None, f"{self.name} closed its output before its {what} "
                                f"(exit status {self.process.poll()})")
        return line

    def running(self):
        return self.process.poll() is None

    def stop(self, end):
        """SIGTERM, then its exit status (killed and failed if it does not exit by `end`)."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=left(end))
        except subprocess.TimeoutExpired:
            self.kill()
            raise CheckFailed(f"{self.name} did not exit within {WAIT_S} s of SIGTERM") from None

    def kill(self):
        if self.running():
            self.process.kill()
        self.process.wait()


class Service(Child):
    """kafka_interop_service: follows its progress lines, ends with its summary."""

    def __init__(self, binary, brokers, data_dir, run):
        super().__init__(f"the service (run {run})",
                         [binary, "--brokers", brokers, "--data", data_dir,
                          "--lifetime-ms", str(SERVICE_LIFETIME_MS)])
        ready = self.next_line("ready line", deadline())
        check(ready == f"ready {SERVICE}/1", f"{self.name}: unexpected first line {ready!r}")
        self.progress = {"applied": 0, "duplicates": 0, "dead_lettered": 0, "confirmed": 0, "consumed": 0}

    def _take(self, line):
        check(line.startswith("progress "), f"{self.name}: unexpected line {line!r}")
        self.progress = json.loads(line[len("progress "):])

    def wait_until(self, predicate, what):
        """Reads progress lines until predicate(progress) holds; the service must stay up."""
        end = deadline()
        while not predicate(self.progress):
            check(time.monotonic() < end, f"timed out after {WAIT_S} s waiting for {what}; "
                                          f"the service's last progress: {self.progress}")
            try:
                line = self.lines.get(timeout=min(0.2, left(end)))
            except queue.Empty:
                continue
            if line is None:
                raise CheckFailed(f"{self.name} ended (exit status {self.process.wait()}) while waiting for {what}")
            self._take(line)

    def drain_progress(self):
        """Takes the progress lines printed so far, without waiting."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line is None:  # end of output: running() says so next
                self.lines.put(None)
                return
            self._take(line)

    def stop_and_report(self):
        end = deadline()
        status = self.stop(end)
        check(status == 0, f"{self.name} exited with status {status}")
        while True:  # progress lines may still come before the summary
            line = self.next_line("summary", end)
            if line.startswith("summary "):
                return json.loads(line[len("summary "):])
            self._take(line)


class Kafka:
    """The dev broker, and kcat to produce into it and read from it."""

    def __init__(self, broker_binary, kcat, workdir):
        self.kcat = kcat
        self.workdir = workdir
        self.files = 0
        self.produced = collections.Counter()  # topic -> records kcat reported produced
        self.broker = Child("choreo-dev-kafka",
                            [broker_binary, "--service", f"{SERVICE}:{PARTITIONS}", "--topic", INSTANCE_TOPIC,
                             "--topic", f"{REPLY_TOPIC}:{PARTITIONS}"])
        first = self.broker.next_line("bootstrap line", deadline())
        check(first.startswith("bootstrap: 127.0.0.1:"), f"choreo-dev-kafka: unexpected first line {first!r}")
        self.brokers = first[len("bootstrap: "):]

    def _kcat(self, arguments, what, data=None):
        end = min(time.monotonic() + KCAT_TIMEOUT_S, RUN_END)
        try:
            done = subprocess.run([self.kcat, "-b", self.brokers, *arguments], input=data,
                                  capture_output=True, timeout=left(end))
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"kcat did not finish {what} within {KCAT_TIMEOUT_S} s") from None
        check(done.returncode == 0, f"kcat {what}: exit status {done.returncode}: "
                                    f"{done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    def produce(self, topic, values, key=None, headers=()):
        """One kcat call: each value (bytes) is one record, in order, all under `key` (None: no
        key). A value is written to a file and kcat sends each file whole, so any bytes go
        through. Idempotent, so kcat's own retries add no record; murmur2_random, the
        partitioner the transport uses (docs/kafka.md)."""
        paths = []
        for value in values:
            check(len(value) > 0, "kcat sends no empty file: use produce_empty")
            self.files += 1
            path = os.path.join(self.workdir, f"record-{self.files:04d}.bin")
            with open(path, "wb") as out:
                out.write(value)
            paths.append(path)
        arguments = ["-P", "-t", topic, "-X", "partitioner=murmur2_random", "-X", "enable.idempotence=true"]
        if key is not None:
            arguments += ["-k", key]
        for header in headers:
            arguments += ["-H", header]
        self._kcat(arguments + paths, f"producing {len(values)} records to {topic}")
        self.produced[topic] += len(values)

    def produce_empty(self, topic, key, null):
        """One record with an empty value, or a null one (a tombstone): kcat reads it from stdin
        as "key:" and skips an empty file."""
        arguments = ["-P", "-t", topic, "-X", "partitioner=murmur2_random", "-X", "enable.idempotence=true",
                     "-K", ":"]
        if null:
            arguments.append("-Z")
        self._kcat(arguments, f"producing a {'null' if null else 'empty'} value to {topic}",
                   data=key.encode() + b":\n")
        self.produced[topic] += 1

    def read_topic(self, topic):
        """Every record in the topic, from the beginning to its end now."""
        raw = self._kcat(["-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", REPLY_FORMAT],
                         f"reading {topic}")
        return parse_records(raw)

    def stop(self):
        status = self.broker.stop(deadline())
        check(status == 0, f"choreo-dev-kafka exited with status {status}")


Record = collections.namedtuple("Record", "partition offset key value")


def parse_records(raw):
    """Records printed with REPLY_FORMAT. Returns (records, the unparsed rest)."""
    records = []
    position = 0
    while True:
        newline = raw.find(b"\n", position)
        if newline < 0:
            break
        partition, offset, key_size, value_size = (int(field) for field in raw[position:newline].split())
        start = newline + 1
        key_end = start + max(key_size, 0)
        value_end = key_end + max(value_size, 0)
        if value_end > len(raw):
            break
        key = raw[start:key_end].decode() if key_size >= 0 else None
        value = raw[key_end:value_end] if value_size >= 0 else None
        records.append(Record(partition, offset, key, value))
        position = value_end
    return records, raw[position:]


class ReplyWatcher:
    """A kcat consumer on the client's instance topic, from its beginning, for the whole test."""

    def __init__(self, kafka):
        self.records = []
        self.failure = None  # what the reader could not parse
        self.lock = threading.Lock()
        self.errors = open(os.path.join(kafka.workdir, "reply-watcher.err"), "wb")
        self.process = subprocess.Popen(
            [kafka.kcat, "-b", kafka.brokers, "-C", "-t", REPLY_TOPIC, "-o", "beginning", "-u", "-q",
             "-f", REPLY_FORMAT], stdout=subprocess.PIPE, stderr=self.errors)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        pending = b""
        while True:
            chunk = self.process.stdout.read1(65536)
            if not chunk:
                return
            try:
                records, pending = parse_records(pending + chunk)
            except ValueError as error:
                with self.lock:
                    self.failure = f"unparsable kcat output {pending + chunk!r}: {error}"
                return
            with self.lock:
                self.records.extend(records)

    def snapshot(self):
        with self.lock:
            check(self.failure is None, f"the kcat reply consumer: {self.failure}")
            return list(self.records)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.errors.close()


def reply_round(record):
    """The round a reply answers; None if it is not a reply (check_replies says why)."""
    try:
        envelope = msgpack.unpackb(record.value, raw=False)
        return msgpack.unpackb(envelope["body"], raw=False)["round"]
    except Exception:  # anything at all: a foreign record must not end the wait with a traceback
        return None


# ---- what the test sent and expects ---------------------------------------------------------------

class Expected:
    def __init__(self):
        self.deposits = {}                    # round -> Deposit, the valid ones
        self.rounds_of_run = set()            # rounds first produced for the current run
        self.duplicates_min = 0               # copies sent after their original was applied
        # Dead letters by what the store keys them on: the envelope's id when it decodes, else
        # its bytes (two equal undecodable records are one row, seen twice).
        self.letters = {}                     # key -> [reason, raw size, records]
        self.bad_records = 0

    def deposit(self, **options):
        """A new valid deposit, the next round."""
        deposit = Deposit(len(self.deposits) + 1, **options)
        self.deposits[deposit.round] = deposit
        self.rounds_of_run.add(deposit.round)
        return deposit

    def dead_letter(self, reason, envelope, message_id=None, copies=1):
        key = message_id if message_id is not None else envelope
        entry = self.letters.setdefault(key, [reason, len(envelope), 0])
        check(entry[0] == reason, f"test bug: one key, two reasons ({entry[0]}, {reason})")
        entry[2] += copies
        self.bad_records += copies


def key_in_partition(partition):
    """A fresh correlation id that Kafka's partitioner puts in `partition` of SERVICE_TOPIC."""
    while True:  # a quarter of the ids fit: a few tries
        corr = uuid7()
        if java_partition(corr, PARTITIONS) == partition:
            return corr


def wait_for_replies(service, replies, rounds, what):
    """Until the kcat consumer has read a reply to each round. A reply leaves the outbox only
    after the commit that applied its deposit, so it shows the deposit committed."""
    end = deadline()
    while True:
        seen = {reply_round(record) for record in replies.snapshot()}
        if rounds <= seen:
            return
        service.drain_progress()
        check(service.running(), f"{service.name} ended (exit status {service.process.poll()}) "
                                 f"while waiting for {what}")
        check(replies.process.poll() is None, f"the kcat reply consumer ended ({replies.process.returncode})")
        check(time.monotonic() < end, f"timed out after {WAIT_S} s waiting for {what}: no reply to "
                                      f"rounds {sorted(rounds - seen)}; the service's last progress: "
                                      f"{service.progress}")
        time.sleep(0.05)


def barrier(kafka, service, replies, expected, what):
    """A deposit behind everything produced so far in each partition the service reads, and
    their replies: Kafka keeps a partition's order and the service commits in that order, so
    once these are answered every earlier record is applied, dropped or dead-lettered for good,
    and each partition's last record is one that was applied."""
    rounds = set()
    for partition in range(PARTITIONS):
        deposit = expected.deposit(corr=key_in_partition(partition))
        kafka.produce(SERVICE_TOPIC, [deposit.envelope], key=deposit.corr)
        rounds.add(deposit.round)
    deposit = expected.deposit(to=f"{SERVICE}/1")
    kafka.produce(INSTANCE_TOPIC, [deposit.envelope], key=deposit.corr)
    rounds.add(deposit.round)
    wait_for_replies(service, replies, rounds, f"the replies behind {what}")
    return [expected.deposits[round_number] for round_number in sorted(rounds)]


def phase_before_the_service(kafka, expected):
    """Deposits while no service runs: the broker keeps them. One of them twice in one call."""
    deposits = [expected.deposit() for _ in range(4)]
    for deposit in deposits:
        copies = 2 if deposit is deposits[1] else 1
        kafka.produce(SERVICE_TOPIC, [deposit.envelope] * copies, key=deposit.corr)
    return deposits


def phase_while_running(kafka, service, replies, expected):
    """Deposits in the ways a foreign producer might send them."""
    conversation = uuid7()
    saga = [expected.deposit(corr=conversation) for _ in range(3)]
    kafka.produce(SERVICE_TOPIC, [deposit.envelope for deposit in saga], key=conversation)  # one key, in order
    shuffled = expected.deposit(shuffled=True)
    kafka.produce(SERVICE_TOPIC, [shuffled.envelope], key=shuffled.corr)
    twice = expected.deposit()
    kafka.produce(SERVICE_TOPIC, [twice.envelope], key=twice.corr)
    kafka.produce(SERVICE_TOPIC, [twice.envelope], key=twice.corr)  # a copy right away
    unicast = expected.deposit(to=f"{SERVICE}/1")
    kafka.produce(INSTANCE_TOPIC, [unicast.envelope], key=unicast.corr)
    keyless = expected.deposit()
    kafka.produce(SERVICE_TOPIC, [keyless.envelope], key=None)  # the value alone is the message
    with_headers = expected.deposit()
    kafka.produce(SERVICE_TOPIC, [with_headers.envelope], key=with_headers.corr,
                  headers=["traceparent=00-abc-def-01", "x-origin=kcat"])
    wait_for_replies(service, replies, set(expected.deposits), "replies to every deposit so far")
    return saga[0], twice


def phase_late_duplicates(kafka, service, copies_of, expected):
    """Copies of deposits already applied (their replies came), one from before the service ran:
    the dedup table drops them, and counts them as duplicates."""
    for deposit in copies_of:
        kafka.produce(SERVICE_TOPIC, [deposit.envelope], key=deposit.corr)
    expected.duplicates_min += len(copies_of)
    service.wait_until(lambda p: p["duplicates"] >= expected.duplicates_min, "the late duplicates dropped")


def phase_bad_input(kafka, expected):
    """Records that do not decode or are refused: dead letters, then valid deposits behind them."""
    garbage = b"\xc1 not msgpack at all"
    key = uuid7()  # the undecodable ones share one key, so one partition, in this order
    undecodable = [
        ("wrong_type", garbage, 2),                                      # twice: one row, seen twice
        ("wrong_type", pack(["deposit", 1]), 1),                         # not a map
        ("wrong_type", bad_envelope(body="a str body")[1], 1),
        ("missing_key", bad_envelope(body=None)[1], 1),
        ("missing_key", bad_envelope(to=None)[1], 1),
        ("unsupported_version", bad_envelope(v=2)[1], 1),
        ("invalid_id", bad_envelope(id="not-a-uuid")[1], 1),
        ("invalid_address", bad_envelope(to="ledger/1/x")[1], 1),
        ("truncated", Deposit(0).envelope[:40], 1),
        ("trailing_bytes", Deposit(0).envelope + b"\x00", 1),
    ]
    values = []
    for reason, value, copies in undecodable:
        expected.dead_letter(reason, value, copies=copies)
        values += [value] * copies
    kafka.produce(SERVICE_TOPIC, values, key=key)
    kafka.produce_empty(SERVICE_TOPIC, key, null=False)  # an empty value and a null one: the
    kafka.produce_empty(SERVICE_TOPIC, key, null=True)   # same empty input, one row seen twice
    expected.dead_letter("truncated", b"", copies=2)
    after_undecodable = expected.deposit(corr=key)        # same key: behind them, same partition
    kafka.produce(SERVICE_TOPIC, [after_undecodable.envelope], key=key)

    # Envelopes that decode but are refused: keyed by their id, each under its own Kafka key.
    refused = [
        ("misaddressed", bad_envelope(to="ledger/2")),
        ("misaddressed", bad_envelope(to="other")),
        ("unknown_kind", bad_envelope(kind="withdraw")),
        ("no_reply_address", bad_envelope(**{"from": ""})),              # the reply is refused
        ("round_out_of_range", bad_envelope(round_number=10_000)),       # the handler refuses it
        ("body_decode_failed", bad_envelope(body=pack({"round": "seven", "amount": 1}))),
        ("deadline_exceeded", bad_envelope(deadline=now_ms() - 60_000)),
        ("beyond_dedup_horizon", bad_envelope(sent_at=0)),
    ]
    for reason, (message_id, value) in refused:
        expected.dead_letter(reason, value, message_id=message_id)
        kafka.produce(SERVICE_TOPIC, [value], key=message_id)
    # The same refused envelope twice under one id: one row, whether they meet in one batch
    # (one attempt) or not (two).
    message_id, value = bad_envelope(kind="withdraw")
    kafka.produce(SERVICE_TOPIC, [value, value], key=message_id)
    expected.letters[message_id] = ["unknown_kind", len(value), None]  # 1 or 2 attempts
    expected.bad_records += 2
    return after_undecodable


def phase_while_down(kafka, expected, copies_of):
    """The service is stopped: a new deposit and late duplicates wait in the broker."""
    expected.rounds_of_run = set()
    fresh = expected.deposit()
    kafka.produce(SERVICE_TOPIC, [fresh.envelope], key=fresh.corr)
    for deposit in copies_of:
        kafka.produce(SERVICE_TOPIC, [deposit.envelope], key=deposit.corr)


def phase_after_restart(kafka, expected, copy_of):
    """Run 2 reads what waited and what comes now, and nothing it had read before."""
    fresh = expected.deposit(to=f"{SERVICE}/1")
    kafka.produce(INSTANCE_TOPIC, [fresh.envelope], key=fresh.corr)
    kafka.produce(SERVICE_TOPIC, [copy_of.envelope], key=copy_of.corr)


# ---- checks -----------------------------------------------------------------------------------

def check_ledger(summary, expected, rounds):
    applied = {int(round_number): count for round_number, count in summary["rounds"].items()}
    check(applied.keys() == rounds, f"rounds in the ledger {sorted(applied)}, want {sorted(rounds)}")
    twice = {round_number: count for round_number, count in applied.items() if count != 1}
    check(not twice, f"rounds not applied exactly once (round: applications): {twice}")
    balance = sum(expected.deposits[round_number].amount for round_number in rounds)
    check(summary["balance"] == balance, f"balance {summary['balance']}, want {balance}")


def check_dead_letters(summary, expected):
    letters = summary["dead_letters"]
    check(all(letter["detail"] for letter in letters), "a dead letter without a detail")
    # The store's key for undecodable input is its own content hash; match rows by what is visible.
    want = sorted((reason, size, records) for reason, size, records in expected.letters.values()
                  if records is not None)
    got = [(letter["reason"], letter["raw_size"], letter["attempts"]) for letter in letters]
    by_id = {letter["key"]: letter for letter in letters}
    for key, (reason, size, records) in expected.letters.items():
        if records is None:  # the refused envelope sent twice: its row is keyed by its id
            row = by_id.get(key)
            check(row is not None and row["reason"] == reason and row["attempts"] in (1, 2),
                  f"the refused envelope sent twice: row {row}, want {reason} with 1 or 2 attempts")
            got.remove((row["reason"], row["raw_size"], row["attempts"]))
    for key, (reason, _, _) in expected.letters.items():
        if isinstance(key, str):  # decodable: keyed by the envelope id
            check(key in by_id and by_id[key]["reason"] == reason,
                  f"no dead letter {reason} under the envelope's id {key}: {by_id.get(key)}")
    check(sorted(got) == want, "dead letters (reason, raw size, attempts):\n"
                               f"  got  {sorted(got)}\n  want {want}")


def check_positions(summary, kafka, run):
    """Each partition's stored next offset is its end: every record was applied, dropped or
    dead-lettered, and committed as read."""
    ends = {}
    for topic in (SERVICE_TOPIC, INSTANCE_TOPIC):
        records, rest = kafka.read_topic(topic)
        check(not rest, f"unparsed kcat output after the records of {topic}")
        check(len(records) == kafka.produced[topic],
              f"{topic} holds {len(records)} records, kcat produced {kafka.produced[topic]}")
        for record in records:
            stream = f"{topic}/{record.partition}"
            ends[stream] = max(ends.get(stream, 0), record.offset + 1)
            if topic == SERVICE_TOPIC and record.key is not None:
                check(record.partition == java_partition(record.key, PARTITIONS),
                      f"kcat put key {record.key} in partition {record.partition}: the test's murmur2 "
                      "does not match librdkafka's")
    positions = summary["positions"]
    want_streams = {f"{SERVICE_TOPIC}/{p}" for p in range(PARTITIONS)} | {f"{INSTANCE_TOPIC}/0"}
    check(positions.keys() == want_streams, f"run {run}: positions for {sorted(positions)}, want {sorted(want_streams)}")
    wrong = {stream: (positions[stream], ends.get(stream)) for stream in want_streams
             if positions[stream] != ends.get(stream)}
    check(not wrong, f"run {run}: stored positions differ from the partitions' ends (stream: (stored, end)): {wrong}")


def check_run(summary, expected, kafka, run, consumed):
    print(f"service summary (run {run}):", json.dumps(summary))  # shown by ctest --output-on-failure
    applied = len(expected.rounds_of_run)
    check(summary["applied"] == applied, f"run {run}: applied {summary['applied']}, want {applied}")
    check(summary["kafka"]["consumed"] == consumed,
          f"run {run}: the transport handed over {summary['kafka']['consumed']} records, want {consumed}")
    check(summary["confirmed"] == applied and summary["unsettled_sends"] == 0,
          f"run {run}: {summary['unsettled_sends']} replies unsettled, {summary['confirmed']} confirmed")
    check_ledger(summary, expected, set(expected.deposits))
    check_dead_letters(summary, expected)
    check_positions(summary, kafka, run)


def check_replies(replies, expected):
    """One reply id per round; each answers its deposit, keyed and partitioned as documented."""
    by_round = collections.defaultdict(set)
    for record in replies.snapshot():
        try:
            envelope = msgpack.unpackb(record.value, raw=False)
        except Exception as error:  # not msgpack at all, or a null value
            raise CheckFailed(f"a record in {REPLY_TOPIC} that is not an envelope ({error}): {record}") from None
        check(isinstance(envelope, dict), f"a record in {REPLY_TOPIC} that is not a map: {envelope!r}")
        missing = {"v", "id", "kind", "from", "to", "corr", "cause", "sent_at", "body"} - envelope.keys()
        check(not missing, f"a reply without {sorted(missing)}")
        check(envelope["v"] == 1 and envelope["kind"] == "deposited" and envelope["to"] == CLIENT
              and envelope["from"] == f"{SERVICE}/1",
              f"unexpected reply: kind {envelope['kind']!r}, to {envelope['to']!r}, from {envelope['from']!r}")
        check(isinstance(envelope["body"], bytes), "a reply body that is not bin")
        check(isinstance(envelope["sent_at"], int) and envelope["sent_at"] > 0, "a reply without sent_at")
        round_number = msgpack.unpackb(envelope["body"], raw=False)["round"]
        deposit = expected.deposits.get(round_number)
        check(deposit is not None, f"a reply for round {round_number}, which was never validly sent")
        check(envelope["cause"] == deposit.id, f"reply {round_number}: cause {envelope['cause']!r}, "
                                               f"want the deposit's id {deposit.id}")
        check(envelope["corr"] == deposit.corr, f"reply {round_number}: corr {envelope['corr']!r}")
        check(record.key == deposit.corr, f"reply {round_number}: Kafka key {record.key!r}, want the "
                                          f"correlation id {deposit.corr}")
        want_partition = java_partition(deposit.corr, PARTITIONS)
        check(record.partition == want_partition,
              f"reply {round_number} in partition {record.partition}, Kafka's Java client would put key "
              f"{deposit.corr} in {want_partition}")
        by_round[round_number].add(envelope["id"])
    check(by_round.keys() == expected.deposits.keys(),
          f"replies for rounds {sorted(by_round)}, want {sorted(expected.deposits)}")
    twice = {r: sorted(ids) for r, ids in by_round.items() if len(ids) != 1}
    check(not twice, f"rounds answered by more than one reply id (applied twice?): {twice}")


# ---- main ------------------------------------------------------------------------------------------

def records_produced(kafka):
    return kafka.produced[SERVICE_TOPIC] + kafka.produced[INSTANCE_TOPIC]


def run(arguments, workdir):
    kafka = Kafka(arguments.broker, arguments.kcat, workdir)
    log(f"choreo-dev-kafka is up at {kafka.brokers}")
    children = [kafka.broker]
    replies = None
    try:
        replies = ReplyWatcher(kafka)
        data_dir = os.path.join(workdir, "data")
        expected = Expected()

        early = phase_before_the_service(kafka, expected)
        log("produced deposits before the service runs; starting it")
        service = Service(arguments.service, kafka.brokers, data_dir, run=1)
        log("the service is ready; producing deposits")
        children.append(service)
        first_of_saga, twice = phase_while_running(kafka, service, replies, expected)
        log("every deposit answered; producing late duplicates")
        phase_late_duplicates(kafka, service, [early[0], first_of_saga, twice], expected)
        log("late duplicates dropped; producing bad input")
        after_bad_input = phase_bad_input(kafka, expected)
        log("bad input produced; a deposit behind it in each partition")
        behind_run_1 = barrier(kafka, service, replies, expected, "the bad input")
        log("answered; stopping the service")
        summary_1 = service.stop_and_report()
        check_run(summary_1, expected, kafka, 1, consumed=records_produced(kafka))
        check(summary_1["duplicates"] >= expected.duplicates_min,
              f"run 1: duplicates {summary_1['duplicates']}, want at least {expected.duplicates_min}")
        check(summary_1["dead_lettered"] in (expected.bad_records - 1, expected.bad_records),
              f"run 1: dead_lettered {summary_1['dead_lettered']}, want {expected.bad_records} "
              "(one less if the refused copy met its original in one batch)")

        consumed_before = records_produced(kafka)
        log("run 1 checked; producing while the service is down")
        phase_while_down(kafka, expected, [early[1], after_bad_input])
        service = Service(arguments.service, kafka.brokers, data_dir, run=2)
        children.append(service)
        log("the service runs again; producing")
        phase_after_restart(kafka, expected, behind_run_1[0])
        barrier(kafka, service, replies, expected, "what waited for the restart")
        log("answered; stopping the service")
        summary_2 = service.stop_and_report()
        check_run(summary_2, expected, kafka, 2, consumed=records_produced(kafka) - consumed_before)
        check(summary_2["duplicates"] == 3 and summary_2["dead_lettered"] == 0,
              f"run 2: duplicates {summary_2['duplicates']} (want 3), dead_lettered {summary_2['dead_lettered']} "
              "(want 0)")

        check_replies(replies, expected)
        kafka.stop()
        print(f"kafka_interop: rounds 1..{max(expected.deposits)} applied once each over two runs "
              f"({summary_1['applied']} + {summary_2['applied']}), late duplicates dropped "
              f"({summary_1['duplicates']} + {summary_2['duplicates']}); dead letters: "
              f"{dict(collections.Counter(letter['reason'] for letter in summary_2['dead_letters']))}")
    finally:
        for child in children:
            child.kill()  # a no-op after a clean exit
        if replies is not None:
            replies.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", required=True, help="kafka_interop_service")
    parser.add_argument("--broker", required=True, help="choreo-dev-kafka")
    parser.add_argument("--kcat", default=shutil.which("kcat") or "kcat")
    arguments = parser.parse_args()
    for program in (arguments.service, arguments.broker, arguments.kcat):
        if not os.access(program, os.X_OK):
            print(f"kafka_interop: {program} is not an executable", file=sys.stderr)
            return 2
    workdir = tempfile.mkdtemp(prefix="choreo-kafka-interop-")
    try:
        run(arguments, workdir)
    except CheckFailed as failure:
        print(f"kafka_interop: FAILED: {failure}\n(records and service data kept in {workdir})", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    print("kafka_interop: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
