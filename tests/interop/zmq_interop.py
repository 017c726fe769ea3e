#!/usr/bin/python3
"""zmq_interop.py — a client that shares no code with choreo talks to a choreo service over ZeroMQ.

Everything on the wire is built by hand from docs/protocol.md ("The envelope", "Framing →
ZeroMQ") with pyzmq and msgpack only, so the test fails if the C++ side drifts from the
document, not just from itself.

    /usr/bin/python3 zmq_interop.py path/to/zmq_interop_service

(Debian's python3-zmq and python3-msgpack import only under /usr/bin/python3.)

The client is `pyclient/1`: it binds a ROUTER where the service's replies arrive, and sends from
a DEALER connected to `echo/1`. It sends valid pings (single and batched), duplicates (in the
same message, soon after, and after their ack) and malformed input (framing errors and
envelopes that do not decode), then checks:
  - every valid id and every undecodable envelope's id is acked; nothing unframeable is;
  - every valid round gets exactly one pong (by id; retransmitted copies are acked again);
  - after SIGTERM, the service's summary shows each round applied once, the duplicates counted
    as duplicates, one dead letter per bad input with the reason the protocol names, and an
    outbox that settled because the client acked the pongs;
  - the service stayed up: pings sent after the malformed input are answered, on the old
    connection and on a new one.
Every wait is bounded; on any failed check it prints why, kills the service and exits 1.
"""

import collections
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import msgpack
import zmq

VERSION = b"choreo/zmq/1"
SERVICE = "echo/1"
CLIENT = "pyclient/1"
ROUNDS = 20                 # valid pings of the first phase: rounds 1..ROUNDS
WAIT_S = 20                 # the longest one expectation may take
RUN_S_MAX = 100             # the whole test, below the ctest TIMEOUT of 120 s
POLL_MS = 50
SERVICE_LIFETIME_MS = 110_000  # the service stops on its own after this, even without SIGTERM

RUN_END = time.monotonic() + RUN_S_MAX


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def deadline():
    """When the current expectation gives up: WAIT_S from now, never past the whole run's end."""
    return min(time.monotonic() + WAIT_S, RUN_END)


# ---- envelopes, as docs/protocol.md describes them ----------------------------------------------

def uuid7():
    """A time-ordered UUID, version 7: 48-bit milliseconds, then random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = ((ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64)
             | (0b10 << 62) | (rand & ((1 << 62) - 1)))
    return str(uuid.UUID(int=value))


def envelope_fields(kind, body, message_id):
    return {
        "v": 1,
        "id": message_id,
        "kind": kind,
        "from": CLIENT,
        "to": "echo",
        "corr": message_id,
        "cause": "",
        "sent_at": time.time_ns() // 1_000_000,  # stamped once: copies resend these bytes
        "deadline": 0,
        "headers": {},
        "body": body,
    }


class Ping:
    """One ping, encoded once: every copy of it is these same bytes under the same id."""

    def __init__(self, round_number):
        self.round = round_number
        self.text_id = uuid7()
        self.id = uuid.UUID(self.text_id).bytes
        body = msgpack.packb({"round": round_number}, use_bin_type=True)
        self.envelope = msgpack.packb(envelope_fields("ping", body, self.text_id), use_bin_type=True)

    def pair(self):
        return [self.id, self.envelope]


def data_message(*pairs):
    frames = [VERSION, b"msg"]
    for pair in pairs:
        frames += pair
    return frames


def bad_envelope(**changes):
    """A ping envelope with keys changed (None removes the key), and a fresh id frame for it."""
    text_id = uuid7()
    fields = envelope_fields("ping", msgpack.packb({"round": 999}, use_bin_type=True), text_id)
    for key, value in changes.items():
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    return uuid.UUID(text_id).bytes, msgpack.packb(fields, use_bin_type=True)


# ---- the service process -------------------------------------------------------------------------

class ServiceProcess:
    """zmq_interop_service as a child; its stdout lines arrive on a queue (stderr passes through)."""

    def __init__(self, binary, data_dir, directory_file):
        environment = dict(os.environ)
        # Under the sanitizer build, undefined behaviour ends the service (a failed exit status)
        # instead of scrolling past in its stderr.
        environment.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        self.process = subprocess.Popen(
            [binary, "--data", data_dir, "--directory", directory_file,
             "--lifetime-ms", str(SERVICE_LIFETIME_MS)],
            stdout=subprocess.PIPE, text=True, env=environment)
        self.lines = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def next_line(self, what):
        try:
            line = self.lines.get(timeout=max(0.0, deadline() - time.monotonic()))
        except queue.Empty:
            raise CheckFailed(f"the service printed no {what} within {WAIT_S} s") from None
        check(line is not None, f"the service closed its output before its {what} "
                                f"(exit status {self.process.poll()})")
        return line

    def running(self):
        return self.process.poll() is None

    def terminate(self):
        self.process.send_signal(signal.SIGTERM)

    def kill(self):
        if self.running():
            self.process.kill()
        self.process.wait()


# ---- the client ------------------------------------------------------------------------------------

class Client:
    """pyclient/1: a ROUTER for the service's replies, DEALERs for what it sends to echo/1."""

    def __init__(self, context, own_endpoint, service_endpoint):
        self.context = context
        self.service_endpoint = service_endpoint
        self.router = self._socket(zmq.ROUTER)
        self.router.bind(own_endpoint)
        self.dealers = []
        self.acks = []                          # per dealer: Counter of acked id bytes
        self.sent_ids = set()                   # every id frame sent, valid or not
        self.never_ack = set()                  # id frames that must never come back acked
        self.pings = {}                         # round -> Ping, for the valid ones
        self.pongs = {}                         # round -> the id of its pong
        self.pong_copies = 0                    # pong envelopes received, retransmissions included

    def _socket(self, kind):
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        return sock

    def connect_dealer(self):
        dealer = self._socket(zmq.DEALER)
        dealer.connect(self.service_endpoint)
        self.dealers.append(dealer)
        self.acks.append(collections.Counter())
        return len(self.dealers) - 1

    def send(self, dealer, frames):
        self.sent_ids.update(frame for frame in frames[2:] if len(frame) == 16)
        self.dealers[dealer].send_multipart(frames)

    def send_pings(self, dealer, *pings):
        for ping in pings:
            self.pings[ping.round] = ping
        self.send(dealer, data_message(*(ping.pair() for ping in pings)))

    def acked(self, message_id, dealer=0):
        return self.acks[dealer][message_id]

    def wait_until(self, predicate, what):
        end = deadline()
        while not predicate():
            check(time.monotonic() < end, f"timed out after {WAIT_S} s waiting for {what}")
            self.pump(POLL_MS)

    def pump(self, timeout_ms):
        """Handles whatever arrives within timeout_ms: acks on the DEALERs, pongs on the ROUTER."""
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        for dealer in self.dealers:
            poller.register(dealer, zmq.POLLIN)
        ready = dict(poller.poll(timeout_ms))
        if self.router in ready:
            self._read_all(self.router, self._on_data)
        for index, dealer in enumerate(self.dealers):
            if dealer in ready:
                self._read_all(dealer, lambda frames, index=index: self._on_ack(index, frames))

    @staticmethod
    def _read_all(sock, handle):
        for _ in range(1000):  # bounded: the rest waits for the next pump
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            handle(frames)

    def _on_ack(self, dealer, frames):
        check(len(frames) >= 3, f"an ack message of {len(frames)} frames: {frames!r}")
        check(frames[0] == VERSION and frames[1] == b"ack", f"not an ack message: {frames[:2]!r}")
        for message_id in frames[2:]:
            check(len(message_id) == 16, f"an acked id of {len(message_id)} bytes")
            check(message_id in self.sent_ids, f"ack for an id never sent: {uuid.UUID(bytes=message_id)}")
            check(message_id not in self.never_ack,
                  f"ack for an input that cannot be framed: {uuid.UUID(bytes=message_id)}")
            self.acks[dealer][message_id] += 1

    def _on_data(self, frames):
        routing_id, protocol = frames[0], frames[1:]
        check(len(protocol) >= 4 and len(protocol) % 2 == 0, f"a data message of {len(protocol)} frames")
        check(protocol[0] == VERSION and protocol[1] == b"msg", f"not a data message: {protocol[:2]!r}")
        ids = []
        for index in range(2, len(protocol), 2):
            self._on_pong(protocol[index], protocol[index + 1])
            ids.append(protocol[index])
        # Acked after handling, as a receiver should; the service's outbox settles on these.
        self.router.send_multipart([routing_id, VERSION, b"ack", *ids])

    def _on_pong(self, id_frame, envelope_bytes):
        envelope = msgpack.unpackb(envelope_bytes, raw=False)
        check(isinstance(envelope, dict), f"a reply that is not a map: {envelope!r}")
        missing = {"v", "id", "kind", "from", "to", "corr", "cause", "sent_at", "body"} - envelope.keys()
        check(not missing, f"a reply without {sorted(missing)}")
        check(len(id_frame) == 16 and uuid.UUID(bytes=id_frame) == uuid.UUID(envelope["id"]),
              f"id frame {id_frame.hex()} does not match the envelope's id {envelope.get('id')}")
        check(envelope["v"] == 1, f"reply version {envelope['v']}")
        check(envelope["kind"] == "pong" and envelope["to"] == CLIENT and envelope["from"] == SERVICE,
              f"unexpected reply: kind {envelope['kind']!r}, to {envelope['to']!r}, from {envelope['from']!r}")
        check(isinstance(envelope["body"], bytes), "a reply body that is not bin")
        check(isinstance(envelope["sent_at"], int) and envelope["sent_at"] > 0, "a reply without sent_at")
        round_number = msgpack.unpackb(envelope["body"], raw=False)["round"]
        ping = self.pings.get(round_number)
        check(ping is not None, f"a pong for round {round_number}, which was never validly sent")
        check(envelope["cause"] == ping.text_id, f"pong {round_number}: cause {envelope['cause']!r}, "
                                                 f"want the ping's id {ping.text_id}")
        check(envelope["corr"] == ping.text_id, f"pong {round_number}: corr {envelope['corr']!r}")
        first = self.pongs.setdefault(round_number, envelope["id"])
        check(first == envelope["id"], f"round {round_number} answered by two pongs ({first}, "
                                       f"{envelope['id']}): the ping was applied twice")
        self.pong_copies += 1

    def close(self):
        for sock in [self.router, *self.dealers]:
            sock.close()


# ---- the phases ------------------------------------------------------------------------------------

class Expected:
    """What the service's summary must show, built up as the phases send."""

    def __init__(self):
        self.rounds = set()
        self.duplicates_min = 0     # copies sent after their original was acked: surely counted
        self.duplicates_max = 0     # every copy (copies in one batch run once, uncounted)
        self.dead_letters = collections.Counter()


def send_valid_pings(client, expected):
    """Rounds 1..ROUNDS, alone and batched, with copies in the same message and right after."""
    pings = {round_number: Ping(round_number) for round_number in range(1, ROUNDS + 1)}
    for round_number in range(1, 5):
        client.send_pings(0, pings[round_number])
    client.send(0, data_message(pings[3].pair()))  # a copy right away: same batch or the next
    client.send_pings(0, *(pings[round_number] for round_number in range(5, 10)))
    client.send_pings(0, pings[10], pings[11], pings[10], pings[12], pings[12])  # copies inside
    client.send_pings(0, *(pings[round_number] for round_number in range(13, 17)))
    client.send_pings(0, *(pings[round_number] for round_number in range(17, ROUNDS + 1)))
    expected.rounds.update(pings)
    expected.duplicates_max += 3
    client.wait_until(lambda: all(client.acked(ping.id) for ping in pings.values()),
                      f"acks for pings 1..{ROUNDS}")
    client.wait_until(lambda: expected.rounds <= client.pongs.keys(), f"pongs for rounds 1..{ROUNDS}")
    return pings


def send_late_duplicates(client, expected, pings):
    """Copies of acked pings: their ids are in the dedup table, so these count as duplicates."""
    late = [pings[1], pings[7], pings[11]]
    before = {ping.id: client.acked(ping.id) for ping in late}
    client.send(0, data_message(pings[1].pair()))
    client.send(0, data_message(pings[7].pair(), pings[11].pair()))
    expected.duplicates_min += len(late)
    expected.duplicates_max += len(late)
    client.wait_until(lambda: all(client.acked(ping.id) > before[ping.id] for ping in late),
                      "acks for the late duplicates")


def unframeable_inputs(client, expected):
    """Inputs the transport cannot frame: dead letter malformed_frame, never acked. Valid pings
    riding in the same message as a bad pair must still be applied (rounds 21 and 22)."""
    stowaways = [Ping(900), Ping(901), Ping(902), Ping(904)]  # valid envelopes inside broken framing
    orphan_id = uuid.UUID(uuid7()).bytes
    wrong_id = uuid.UUID(uuid7()).bytes  # an id frame that is not its envelope's id
    client.never_ack.update([ping.id for ping in stowaways] + [orphan_id, wrong_id])
    client.pings.update({21: Ping(21), 22: Ping(22)})
    expected.rounds.update([21, 22])
    expected.dead_letters["malformed_frame"] += 7
    return [
        [b"choreo/zmq/9", b"msg", *stowaways[0].pair()],                  # wrong version frame
        [VERSION, b"mgs", *stowaways[1].pair()],                           # unknown kind frame
        data_message([stowaways[2].id[:15], stowaways[2].envelope], client.pings[21].pair()),  # short id
        data_message(client.pings[22].pair(), [orphan_id]),                # an id without envelope
        [VERSION, b"msg"],                                                 # no pairs
        [VERSION],                                                         # no kind frame
        data_message([wrong_id, stowaways[3].envelope]),                   # ids differ
    ]


def undecodable_inputs(client, expected):
    """Envelopes under valid id frames that do not decode: dead-lettered with the decode reason,
    and acked. Two share a message with a valid ping (round 24)."""
    cases = [
        ("wrong_type", uuid.UUID(uuid7()).bytes, b"\xc1 not msgpack at all"),
        ("wrong_type", uuid.UUID(uuid7()).bytes, msgpack.packb(["ping", 1])),   # not a map
        ("wrong_type", *bad_envelope(body="a str body")),
        ("missing_key", *bad_envelope(body=None)),
        ("unsupported_version", *bad_envelope(v=2)),
        ("truncated", uuid.UUID(uuid7()).bytes, Ping(903).envelope[:40]),
        ("truncated", uuid.UUID(uuid7()).bytes, b""),
    ]
    for reason, _, _ in cases:
        expected.dead_letters[reason] += 1
    client.pings[24] = Ping(24)
    expected.rounds.add(24)
    pairs = [[message_id, envelope] for _, message_id, envelope in cases]
    messages = [data_message(pair) for pair in pairs[:5]]
    messages.append(data_message(pairs[5], client.pings[24].pair(), pairs[6]))
    return messages, [message_id for _, message_id, _ in cases]


def send_bad_input(client, expected):
    """All the bad input on the first connection, then a ping on it and one on a new connection:
    both answered means the service and the connection stayed up."""
    messages = unframeable_inputs(client, expected)
    undecodable, undecodable_ids = undecodable_inputs(client, expected)
    for frames in messages + undecodable:
        client.send(0, frames)
    after_old, after_new = Ping(25), Ping(26)
    client.send_pings(0, after_old)
    client.send_pings(client.connect_dealer(), after_new)
    expected.rounds.update([25, 26])
    must_ack = undecodable_ids + [client.pings[r].id for r in (21, 22, 24)] + [after_old.id]
    client.wait_until(lambda: all(client.acked(message_id) for message_id in must_ack),
                      "acks for the undecodable envelopes and the pings sent with and after them")
    client.wait_until(lambda: client.acked(after_new.id, dealer=1), "the ack on the second connection")
    check(not client.acked(after_new.id, dealer=0), "the second connection's ack came on the first")
    client.wait_until(lambda: expected.rounds <= client.pongs.keys(), "pongs for rounds 21..26")


def stop_service(client, service):
    """SIGTERM; keep acking pongs (retransmissions too) until the service reports and exits."""
    service.terminate()
    end = deadline()
    while service.running():
        check(time.monotonic() < end, f"the service did not exit within {WAIT_S} s of SIGTERM")
        client.pump(POLL_MS)
    check(service.process.returncode == 0, f"the service exited with status {service.process.returncode}")
    return json.loads(service.next_line("summary"))


def check_summary(summary, expected, client):
    print("service summary:", json.dumps(summary))  # shown by ctest --output-on-failure
    applied = {int(round_number): count for round_number, count in summary["rounds"].items()}
    check(applied.keys() == expected.rounds,
          f"rounds applied {sorted(applied)}, want {sorted(expected.rounds)}")
    twice = {round_number: count for round_number, count in applied.items() if count != 1}
    check(not twice, f"rounds not applied exactly once (round: applications): {twice}")
    check(summary["applied"] == len(expected.rounds), f"applied {summary['applied']}, want {len(expected.rounds)}")
    check(expected.duplicates_min <= summary["duplicates"] <= expected.duplicates_max,
          f"duplicates {summary['duplicates']}, want {expected.duplicates_min}..{expected.duplicates_max}")
    reasons = collections.Counter(letter["reason"] for letter in summary["dead_letters"])
    check(reasons == expected.dead_letters,
          f"dead letter reasons {dict(reasons)}, want {dict(expected.dead_letters)}")
    check(all(letter["detail"] for letter in summary["dead_letters"]), "a dead letter without a detail")
    check(summary["dead_lettered"] == sum(expected.dead_letters.values()),
          f"dead_lettered {summary['dead_lettered']}, want {sum(expected.dead_letters.values())}")
    check(summary["zmq"]["malformed"] == expected.dead_letters["malformed_frame"],
          f"transport counted {summary['zmq']['malformed']} malformed inputs")
    check(summary["confirmed"] == summary["applied"] and summary["unsettled_sends"] == 0,
          f"{summary['unsettled_sends']} pongs unsettled, {summary['confirmed']} confirmed: the acks "
          "the client sent did not settle the service's outbox")
    check(client.pong_copies >= len(expected.rounds), "fewer pong envelopes than rounds")


# ---- main ------------------------------------------------------------------------------------------

def free_tcp_endpoint():
    """A loopback port nobody listens on right now (another process could take it first; rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def run(binary, workdir, context):
    service_endpoint, client_endpoint = free_tcp_endpoint(), free_tcp_endpoint()
    directory_file = os.path.join(workdir, "directory.conf")
    with open(directory_file, "w") as out:
        out.write(f"# written by zmq_interop.py\n{SERVICE}  {service_endpoint}\n{CLIENT}  {client_endpoint}\n")
    client = Client(context, client_endpoint, service_endpoint)  # bound before any reply is sent
    service = ServiceProcess(binary, os.path.join(workdir, "data"), directory_file)
    try:
        ready = service.next_line("ready line")
        check(ready == f"ready {service_endpoint}", f"unexpected first line {ready!r}")
        client.connect_dealer()
        expected = Expected()
        pings = send_valid_pings(client, expected)
        send_late_duplicates(client, expected, pings)
        send_bad_input(client, expected)
        check_summary(stop_service(client, service), expected, client)
    finally:
        service.kill()  # a no-op after a clean exit
        client.close()


def main():
    if len(sys.argv) != 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: zmq_interop.py path/to/zmq_interop_service", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="choreo-zmq-interop-")
    context = zmq.Context()
    try:
        run(sys.argv[1], workdir, context)
    except CheckFailed as failure:
        print(f"zmq_interop: FAILED: {failure}\n(service data kept in {workdir})", file=sys.stderr)
        return 1
    finally:
        context.destroy(linger=0)  # closes any socket an exception left open: term() would wait
    shutil.rmtree(workdir, ignore_errors=True)
    print("zmq_interop: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
