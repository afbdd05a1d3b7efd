#!/usr/bin/env python3
"""Re-verify a fundledger event export from the export alone.

    fundledger export events --data-dir DIR --out events.jsonl
    python3 tools/verify_export.py events.jsonl

Uses nothing but the Python standard library, and nothing of fundledger but
what docs/AUDIT.md documents. For every line (one event) it

  1. rebuilds the record body, byte for byte, from the JSON envelope and the
     payload bytes (`payload_hex`), and recomputes
     hash = SHA-256(prev_hash || body || fingerprint), with prev_hash = 32
     zero bytes before the first event and fingerprint the 32 bytes of the
     line's `fingerprint` (nothing when it is null: events recorded before
     stored format v3);
  2. checks the chain: sequence numbers gapless from 1, each prev_hash equal
     to the previous line's hash, stream versions consecutive per stream,
     the recording time text equal to its microseconds;
  3. decodes the payload bytes by the documented layout and checks that the
     JSON payload says exactly what the hashed bytes say (ids, amounts in
     minor units as decimals, dates as days since 1970-01-01), and that the
     event type and stream of the envelope are those of the payload.

It stops at the first mismatch with a precise message and exits 1 (2 for
unusable input). On success it prints the number of events and the head
hash, which can be compared with a signed checkpoint or the ledger's head.
"""

import datetime
import hashlib
import json
import struct
import sys

GENESIS = bytes(32)
ENVELOPE_KEYS = [
    "seq", "stream", "stream_version", "event_type", "schema_version", "recorded_at",
    "recorded_at_micros", "actor", "request_id", "prev_hash", "hash", "fingerprint", "payload", "payload_hex",
]
EPOCH_DAY = datetime.date(1970, 1, 1)
EPOCH_TIME = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class Mismatch(Exception):
    """The export contradicts itself or its hashes."""


# ----------------------------------------------------------------- encoding
# bincode 1.x ("legacy") as fundledger stores it: fixed-width little-endian
# integers, strings and byte vectors with a u64 length prefix.

def u16(n): return struct.pack("<H", n)
def u64(n): return struct.pack("<Q", n)
def i64(n): return struct.pack("<q", n)
def string(s): b = s.encode("utf-8"); return u64(len(b)) + b
def byte_vec(b): return u64(len(b)) + b


def record_body(line, payload):
    return (u64(line["seq"]) + string(line["stream"]) + u64(line["stream_version"])
            + string(line["event_type"]) + u16(line["schema_version"])
            + i64(line["recorded_at_micros"]) + string(line["actor"])
            + string(line["request_id"]) + byte_vec(payload))


# ----------------------------------------------------------------- decoding

class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n, what):
        if self.at + n > len(self.data):
            raise Mismatch(f"payload bytes end inside {what} (offset {self.at}, {len(self.data)} bytes)")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def u8(self, what): return self.take(1, what)[0]
    def u32(self, what): return struct.unpack("<I", self.take(4, what))[0]
    def u64(self, what): return struct.unpack("<Q", self.take(8, what))[0]
    def i32(self, what): return struct.unpack("<i", self.take(4, what))[0]
    def i64(self, what): return struct.unpack("<q", self.take(8, what))[0]

    def string(self, what):
        n = self.u64(what + " length")
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Mismatch(f"{what} is not UTF-8 in the payload bytes")

    def bool(self, what):
        b = self.u8(what)
        if b > 1:
            raise Mismatch(f"{what} is the byte {b}, not a bool (0 or 1)")
        return b == 1

    def option(self, what, inner):
        tag = self.u8(what + " tag")
        if tag == 0:
            return None
        if tag == 1:
            return inner(what)
        raise Mismatch(f"{what} has option tag {tag}, not 0 or 1")


class Payload:
    """Decodes one event payload into the JSON shape of the export."""

    def __init__(self, data, currency):
        self.r = Reader(data)
        self.currency = currency  # (code, minor_units), from FundOpened

    def amount(self, what):
        minor = self.r.i64(what)
        if self.currency is None:
            raise Mismatch(f"{what}: an amount before the fund was opened (no currency yet)")
        code, digits = self.currency
        sign = "-" if minor < 0 else ""
        whole, frac = divmod(abs(minor), 10 ** digits)
        value = f"{sign}{whole}.{frac:0{digits}d}" if digits else f"{sign}{whole}"
        return {"value": value, "currency": code}

    def date(self, what):
        days = self.r.i32(what)
        try:
            return (EPOCH_DAY + datetime.timedelta(days=days)).isoformat()
        except OverflowError:
            raise Mismatch(f"{what} is {days} days since 1970-01-01, outside the calendar")

    def s(self, what): return self.r.string(what)

    def pot(self, what):
        return {"partner": self.s(what + ".partner"), "earmark": self.r.option(what + ".earmark", self.s)}

    def shares(self, what):
        n = self.r.u64(what + " length")
        if n > len(self.r.data):
            raise Mismatch(f"{what} claims {n} shares in {len(self.r.data)} bytes")
        return [{"pot": self.pot(f"{what}[{i}].pot"), "amount": self.amount(f"{what}[{i}].amount")}
                for i in range(n)]

    def applicant(self, what):
        return {k: self.s(f"{what}.{k}") for k in ("name", "organisation_id", "place", "country")}


# Each event type: its variant index (u32) and its fields in stored order,
# with the decoder of each. This table is the payload layout of docs/AUDIT.md.
S, AMOUNT, DATE, POT, SHARES = "string", "amount", "date", "pot", "shares"
EVENTS = [
    ("FundOpened", [("name", S), ("currency", "currency")]),
    ("PartnerAdmitted", [("partner", S), ("name", S), ("organisation_id", S)]),
    ("ContributionPledged", [("pot", POT), ("amount", AMOUNT), ("pledged_on", DATE)]),
    ("PledgeReduced", [("pot", POT), ("amount", AMOUNT), ("reason", S), ("reduced_on", DATE)]),
    ("ContributionReceived", [("pot", POT), ("amount", AMOUNT), ("value_date", DATE), ("bank_reference", S)]),
    ("RoundOpened", [("round", S), ("name", S), ("budget_ceiling", AMOUNT), ("grant_max", AMOUNT),
                     ("opens_on", DATE), ("closes_on", DATE)]),
    ("RoundClosed", [("round", S), ("closed_on", DATE)]),
    ("ApplicationSubmitted", [("application", S), ("round", S), ("applicant", "applicant"), ("title", S),
                              ("description", S), ("amount_requested", AMOUNT), ("submitted_on", DATE)]),
    ("ApplicationWithdrawn", [("application", S), ("reason", S), ("withdrawn_on", DATE)]),
    ("ApplicationRejected", [("application", S), ("reason", S), ("decided_by", S), ("decided_on", DATE)]),
    ("GrantAwarded", [("application", S), ("amount", AMOUNT), ("attribution", SHARES), ("reason", S),
                      ("decided_by", S), ("decided_on", DATE)]),
    ("GrantReduced", [("application", S), ("amount", AMOUNT), ("released", SHARES), ("reason", S),
                      ("decided_by", S), ("decided_on", DATE)]),
    ("GrantWithdrawn", [("application", S), ("released", SHARES), ("reason", S), ("decided_by", S),
                        ("decided_on", DATE)]),
    ("GrantSettled", [("application", S), ("final_amount", AMOUNT), ("released", SHARES), ("reason", S),
                      ("decided_by", S), ("decided_on", DATE)]),
    ("PaymentMade", [("application", S), ("tranche", "u32"), ("amount", AMOUNT), ("attribution", SHARES),
                     ("value_date", DATE), ("bank_reference", S)]),
    ("RefundReceived", [("application", S), ("amount", AMOUNT), ("attribution", SHARES), ("releases", "bool"),
                        ("value_date", DATE), ("bank_reference", S)]),
    # Access control, four eyes and conflicts of interest (variants 16 to 21).
    ("ApprovalThresholdsSet", [("round", S), ("award_above", "option_amount"), ("payment_above", "option_amount")]),
    ("AccessGranted", [("principal", S), ("role", "role"), ("token_sha256", "sha256")]),
    ("AccessRevoked", [("principal", S), ("reason", S)]),
    ("AwardProposed", [("application", S), ("amount", AMOUNT), ("reason", S), ("proposed_by", S),
                       ("proposed_on", DATE)]),
    ("PaymentProposed", [("application", S), ("amount", AMOUNT), ("value_date", DATE), ("bank_reference", S),
                         ("proposed_by", S)]),
    ("ConflictDeclared", [("application", S), ("officer", S), ("reason", S), ("declared_on", DATE)]),
]

# A role is an enum: its variant index (u32), then the partner id for a partner.
ROLES = ["admin", "officer", "partner", "auditor"]


def decode_payload(data, currency):
    p = Payload(data, currency)
    index = p.r.u32("the event variant index")
    if index >= len(EVENTS):
        raise Mismatch(f"the payload bytes are event variant {index}, which does not exist")
    name, fields = EVENTS[index]
    out = {}
    for field, kind in fields:
        if kind == S:
            out[field] = p.s(field)
        elif kind == AMOUNT:
            out[field] = p.amount(field)
        elif kind == DATE:
            out[field] = p.date(field)
        elif kind == POT:
            out[field] = p.pot(field)
        elif kind == SHARES:
            out[field] = p.shares(field)
        elif kind == "applicant":
            out[field] = p.applicant(field)
        elif kind == "u32":
            out[field] = p.r.u32(field)
        elif kind == "bool":
            out[field] = p.r.bool(field)
        elif kind == "currency":
            out[field] = {"code": p.s("currency.code"), "minor_units": p.r.u8("currency.minor_units")}
        elif kind == "option_amount":
            out[field] = p.r.option(field, p.amount)
        elif kind == "sha256":
            out[field] = p.r.take(32, field).hex()  # a fixed array: 32 bytes, no length
        elif kind == "role":
            index = p.r.u32("role variant index")
            if index >= len(ROLES):
                raise Mismatch(f"role variant {index} does not exist")
            out[field] = {"kind": ROLES[index]}
            if ROLES[index] == "partner":
                out[field]["partner"] = p.s("role.partner")
        else:
            raise AssertionError(f"no decoder for {kind}")
    if p.r.at != len(data):
        raise Mismatch(f"{len(data) - p.r.at} bytes left over after the {name} payload")
    return name, out


def stream_of(name, payload):
    if name == "FundOpened":
        return "fund"
    if name == "PartnerAdmitted":
        return "partner/" + payload["partner"]
    if name in ("ContributionPledged", "PledgeReduced", "ContributionReceived"):
        return "partner/" + payload["pot"]["partner"]
    if name in ("RoundOpened", "RoundClosed", "ApprovalThresholdsSet"):
        return "round/" + payload["round"]
    if name in ("AccessGranted", "AccessRevoked"):
        return "principal/" + payload["principal"]
    return "application/" + payload["application"]


def first_difference(json_value, bytes_value, path="payload"):
    """The path and both values of the first place where they differ."""
    if isinstance(bytes_value, dict) and isinstance(json_value, dict):
        for key in bytes_value:
            if key not in json_value:
                return f"{path}.{key}", "(missing)", bytes_value[key]
            found = first_difference(json_value[key], bytes_value[key], f"{path}.{key}")
            if found:
                return found
        for key in json_value:
            if key not in bytes_value:
                return f"{path}.{key}", json_value[key], "(no such field)"
        return None
    if isinstance(bytes_value, list) and isinstance(json_value, list):
        if len(json_value) != len(bytes_value):
            return f"{path} (length)", len(json_value), len(bytes_value)
        for i, (j, b) in enumerate(zip(json_value, bytes_value)):
            found = first_difference(j, b, f"{path}[{i}]")
            if found:
                return found
        return None
    # bool is an int in Python: compare types too, so that 1 is not true.
    if type(json_value) is not type(bytes_value) or json_value != bytes_value:
        return path, json_value, bytes_value
    return None


# ----------------------------------------------------------------- the walk

def hex_hash(line, key):
    text = line[key]
    if not isinstance(text, str) or len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise Mismatch(f"{key} is not 64 lowercase hex digits: {text!r}")
    return bytes.fromhex(text)


def check_types(line):
    # Exports written before stored format v3 have no fingerprint key: their
    # records carry none, and their hashes cover none.
    line.setdefault("fingerprint", None)
    keys = list(line)
    if sorted(keys) != sorted(ENVELOPE_KEYS):
        missing = [k for k in ENVELOPE_KEYS if k not in line]
        extra = [k for k in keys if k not in ENVELOPE_KEYS]
        raise Mismatch(f"fields missing {missing} or unexpected {extra}")
    for key in ("seq", "stream_version", "schema_version", "recorded_at_micros"):
        if type(line[key]) is not int:
            raise Mismatch(f"{key} is not an integer: {line[key]!r}")
    for key in ("stream", "event_type", "recorded_at", "actor", "request_id", "payload_hex"):
        if not isinstance(line[key], str):
            raise Mismatch(f"{key} is not a string: {line[key]!r}")
    limits = {"seq": 2**64, "stream_version": 2**64, "schema_version": 2**16}
    for key, limit in limits.items():
        if not 0 <= line[key] < limit:
            raise Mismatch(f"{key} {line[key]} does not fit its stored width")
    if not -2**63 <= line["recorded_at_micros"] < 2**63:
        raise Mismatch("recorded_at_micros does not fit an i64")


def verify(lines):
    prev_hash = GENESIS
    versions = {}
    currency = None
    count = 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            raise Mismatch(f"line {number} is empty")
        try:
            line = json.loads(text)
        except json.JSONDecodeError as e:
            raise Mismatch(f"line {number} is not JSON: {e}")
        if not isinstance(line, dict):
            raise Mismatch(f"line {number} is not a JSON object")
        where = f"line {number} (seq {line.get('seq')}, {line.get('event_type')})"
        try:
            check_types(line)
            if line["seq"] != number:
                raise Mismatch(f"seq is {line['seq']}, expected {number}: the sequence must be gapless from 1")
            if hex_hash(line, "prev_hash") != prev_hash:
                raise Mismatch(f"prev_hash {line['prev_hash']} is not the previous event's hash {prev_hash.hex()}")
            try:
                payload = bytes.fromhex(line["payload_hex"])
            except ValueError:
                raise Mismatch("payload_hex is not hex")
            body = record_body(line, payload)
            fingerprint = b"" if line["fingerprint"] is None else hex_hash(line, "fingerprint")
            computed = hashlib.sha256(prev_hash + body + fingerprint).digest()
            stated = hex_hash(line, "hash")
            if computed != stated:
                raise Mismatch(f"hash {stated.hex()} is not SHA-256(prev_hash || body || fingerprint) = "
                               f"{computed.hex()}: the envelope, its fingerprint or the payload bytes were changed")
            version = versions.get(line["stream"], 0) + 1
            if line["stream_version"] != version:
                raise Mismatch(f"stream {line['stream']} is at version {line['stream_version']}, expected {version}")
            versions[line["stream"]] = version
            try:
                at = EPOCH_TIME + datetime.timedelta(microseconds=line["recorded_at_micros"])
                expected_at = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            except OverflowError:
                raise Mismatch("recorded_at_micros is outside the calendar")
            if line["recorded_at"] != expected_at:
                raise Mismatch(f"recorded_at {line['recorded_at']} is not recorded_at_micros = {expected_at}")
            if line["schema_version"] != 1:
                raise Mismatch(f"schema version {line['schema_version']} is not documented (1 is)")
            name, decoded = decode_payload(payload, currency)
            if name != line["event_type"]:
                raise Mismatch(f"event_type says {line['event_type']} but the hashed payload is a {name}")
            if currency is None and name not in ("FundOpened", "AccessGranted", "AccessRevoked"):
                raise Mismatch("only access may be granted or revoked before the fund is opened")
            if name == "FundOpened":
                if currency is not None:
                    raise Mismatch("the fund is opened a second time")
                currency = (decoded["currency"]["code"], decoded["currency"]["minor_units"])
            if stream_of(name, decoded) != line["stream"]:
                raise Mismatch(f"stream says {line['stream']} but the payload belongs to {stream_of(name, decoded)}")
            difference = first_difference(line["payload"], decoded)
            if difference:
                path, said, hashed = difference
                raise Mismatch(f"{path} is {json.dumps(said, ensure_ascii=False)} in the JSON "
                               f"but the hashed payload bytes say {json.dumps(hashed, ensure_ascii=False)}")
        except Mismatch as e:
            raise Mismatch(f"{where}: {e}")
        prev_hash = stated
        count += 1
    if count == 0:
        raise Mismatch("the export holds no event")
    return count, len(versions), prev_hash


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        source = sys.stdin if argv[1] == "-" else open(argv[1], encoding="utf-8")
    except OSError as e:
        print(f"error: cannot read {argv[1]}: {e}", file=sys.stderr)
        return 2
    try:
        with source:
            events, streams, head = verify(source)
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1
    except UnicodeDecodeError as e:
        print(f"error: the export is not UTF-8: {e}", file=sys.stderr)
        return 2
    print(f"verified {events} events in {streams} streams: every hash recomputed from the export, "
          f"the chain links from genesis, every payload matches its hashed bytes; head {head.hex()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
