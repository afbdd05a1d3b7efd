#!/usr/bin/env python3
"""A fundledger client in another language that knows the API only through
server reflection.

It reads no .proto file and imports no generated code for fundledger or
health: it asks the server (gRPC server reflection, via grpcio-reflection's
ProtoReflectionDescriptorDatabase) for its services and message types, builds
the message classes at run time (protobuf's DescriptorPool and
message_factory) and calls the methods with grpcio's generic unary and
server-streaming calls. If the contract a generic client sees differs from
what the Rust code and its tests assume, this fails.

It drives a whole grant lifecycle under fresh ids (a random suffix), checks
every answer, the idempotency and error contracts, the queries and the hash
chain of the log, prints a short summary and exits 0; or it stops at the
first failed check with a message saying what was expected and what came
back, and exits 1 (2 if the server cannot be reached).

Access: it starts from the admin token that `fundledger init` printed
(taken from FUNDLEDGER_TOKEN, so that it never shows in a process list),
gives an officer, an auditor and each partner's treasurer access through
GrantAccess (each token made here with `secrets.token_hex`; only its SHA-256
is sent), and sends every call with the token of the role that may make it
(`authorization: Bearer ...`). It checks that a call without a token is
UNAUTHENTICATED, that a partner cannot pledge for or read another partner,
that the auditor cannot write, and that every event names its actor.

Usage: FUNDLEDGER_TOKEN=<admin token> reflection_client.py --server 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import sys
import time
from decimal import Decimal

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

LEDGER = "fundledger.v1.Ledger"
AUDIT = "fundledger.v1.Audit"
HEALTH = "grpc.health.v1.Health"
CURRENCY = "EUR"
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
ZERO_HASH = "0" * 64
HEX64 = re.compile(r"^[0-9a-f]{64}$")
# In responses an amount always has exactly the currency's 2 decimals.
AMOUNT_TEXT = re.compile(r"^-?[0-9]+\.[0-9]{2}$")
CALL_TIMEOUT_S = 15.0
REASON_KEY = "fundledger-reason"
# What every fundledger token starts with, and its random part: 32 bytes.
TOKEN_PREFIX = "flt_"
TOKEN_RANDOM_BYTES = 32
# The caller of a call sent without a token.
ANONYMOUS = ""
# The Ledger's RPCs by the role that may call them; every other one is an
# officer's. Queries are read as the auditor.
ADMIN_METHODS = {"OpenFund", "AdmitPartner", "OpenRound", "CloseRound", "SetApprovalThresholds", "GrantAccess",
                 "RevokeAccess"}
PARTNER_METHODS = {"PledgeContribution", "ReducePledge"}
QUERY_METHODS = {"ListPrincipals", "GetPartnerBalances", "GetFundSummary", "GetRoundFigures", "GetApplication",
                 "GetGrant", "ListApplications", "ReadEvents", "Subscribe"}


class CheckFailed(Exception):
    pass


class Checks:
    """Counts the checks; the first failed one stops the run."""

    def __init__(self) -> None:
        self.passed = 0

    def __call__(self, condition: bool, message: str) -> None:
        if not condition:
            raise CheckFailed(message)
        self.passed += 1

    def equal(self, got, want, what: str) -> None:
        if got == want:
            self.passed += 1
        elif isinstance(got, dict) and isinstance(want, dict):
            differ = [f"{k}: expected {want.get(k)!r}, got {got.get(k)!r}" for k in want if got.get(k) != want.get(k)]
            differ += [f"{k}: unexpected {got[k]!r}" for k in got if k not in want]
            raise CheckFailed(f"{what}: " + "; ".join(differ))
        else:
            raise CheckFailed(f"{what}: expected {want!r}, got {got!r}")


check = Checks()


def say(line: str) -> None:
    print(line, flush=True)


def camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def fmt(amount: Decimal) -> str:
    return f"{CURRENCY} {amount:,.2f}"


def money(value: Decimal | str) -> dict:
    return {"value": str(value), "currency": CURRENCY}


def dec(m, what: str) -> Decimal:
    """The exact amount of a Money message, checked for currency and form."""
    check.equal(m.currency, CURRENCY, f"{what}: currency")
    check(AMOUNT_TEXT.match(m.value) is not None, f"{what}: {m.value!r} is not an amount with 2 decimals")
    return Decimal(m.value)


# ------------------------------------------------------------------ reflection


class Reflected:
    """The server's API as reflection describes it, and generic calls on it."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.db = ProtoReflectionDescriptorDatabase(channel)
        self.pool = descriptor_pool.DescriptorPool(self.db)
        self._callables: dict[str, tuple] = {}

    def services(self) -> list[str]:
        return list(self.db.get_services())

    def service(self, name: str):
        try:
            return self.pool.FindServiceByName(name)
        except KeyError as e:
            raise CheckFailed(f"reflection does not describe the service {name}: {e}") from None

    def message_class(self, full_name: str):
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))

    def enum_number(self, enum: str, name: str) -> int:
        return self.pool.FindEnumTypeByName(enum).values_by_name[name].number

    def enum_name(self, enum: str, number: int) -> str:
        values = self.pool.FindEnumTypeByName(enum).values_by_number
        return values[number].name if number in values else str(number)

    def _method(self, service: str, method: str, streaming: bool):
        key = f"/{service}/{method}"
        if key not in self._callables:
            desc = self.service(service).methods_by_name.get(method)
            if desc is None:
                raise CheckFailed(f"reflection does not describe the method {key}")
            check.equal(
                (desc.client_streaming, desc.server_streaming), (False, streaming), f"{key}: (client, server) streaming"
            )
            request_class = message_factory.GetMessageClass(desc.input_type)
            response_class = message_factory.GetMessageClass(desc.output_type)
            make = self.channel.unary_stream if streaming else self.channel.unary_unary
            multicallable = make(
                key,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
            self._callables[key] = (request_class, multicallable)
        return self._callables[key]

    def request(self, service: str, method: str, body: dict, streaming: bool = False):
        request_class, _ = self._method(service, method, streaming)
        # ParseDict refuses a field the reflected type does not have.
        return json_format.ParseDict(body, request_class())

    def call(self, service: str, method: str, body: dict, token: str | None = None):
        _, multicallable = self._method(service, method, False)
        return multicallable(self.request(service, method, body), timeout=CALL_TIMEOUT_S, metadata=bearer(token))

    def stream(self, service: str, method: str, body: dict, token: str | None = None) -> list:
        _, multicallable = self._method(service, method, True)
        request = self.request(service, method, body, True)
        return list(multicallable(request, timeout=CALL_TIMEOUT_S, metadata=bearer(token)))


def bearer(token: str | None) -> list[tuple[str, str]]:
    """The call metadata that authenticates as the holder of `token`; none
    without one."""
    return [("authorization", f"Bearer {token}")] if token else []


def new_token() -> tuple[str, str]:
    """A token as `fundledger principal add` makes one, and the SHA-256 hex
    that is all the ledger is told."""
    token = TOKEN_PREFIX + secrets.token_hex(TOKEN_RANDOM_BYTES)
    return token, hashlib.sha256(token.encode("ascii")).hexdigest()


def metadata_of(error: grpc.RpcError) -> dict[str, str]:
    """Initial and trailing metadata of a failed call (a trailers-only answer
    carries everything in the trailers)."""
    found: dict[str, str] = {}
    for part in (error.initial_metadata(), error.trailing_metadata()):
        for key, value in part or ():
            found.setdefault(key, value)
    return found


def reflection_v1_services(channel: grpc.Channel) -> list[str]:
    """Lists services through grpc.reflection.v1, which has the same wire
    format as v1alpha (grpcio-reflection's client speaks only v1alpha)."""
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    answers = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=CALL_TIMEOUT_S))
    check.equal(len(answers), 1, "reflection v1: answers to one list_services request")
    check(answers[0].HasField("list_services_response"), f"reflection v1: not a service list: {answers[0]}")
    return [s.name for s in answers[0].list_services_response.service]


# ------------------------------------------------------------------ the run


class Run:
    def __init__(self, api: Reflected, server: str, admin: str, admin_token: str) -> None:
        self.api = api
        self.server = server
        self.sfx = secrets.token_hex(3)
        self.request_count = 0
        self.recorded: dict[int, object] = {}  # seq -> RecordedEvent answered by a command
        self.fresh = True
        self.before = None  # the fund summary before this run, on a ledger that had a fund

        s = self.sfx
        self.partner_a = f"porticus-{s}"
        self.partner_b = f"vsbfonds-{s}"
        self.round_id = f"2024-1-{s}"
        self.app_grant = f"app-{s}-1"
        self.app_rejected = f"app-{s}-2"
        self.app_withdrawn = f"app-{s}-3"

        # Principals and their tokens; the officer, auditor and treasurers
        # are given access by this run.
        self.admin = admin
        self.officer = f"officer-{s}"
        self.auditor = f"auditor-{s}"
        self.treasurer = {self.partner_a: f"treasurer-{self.partner_a}", self.partner_b: f"treasurer-{self.partner_b}"}
        self.tokens: dict[str, str] = {admin: admin_token}
        self.refusals: list[str] = []

    # -------------------------------------------------------------- helpers

    def caller(self, method: str, body: dict) -> str:
        """The principal who may make the call: the admin administers, a
        partner's treasurer pledges for it, the auditor reads (the admin
        until there is one), an officer does the rest."""
        if method in ADMIN_METHODS:
            return self.admin
        if method in PARTNER_METHODS:
            return self.treasurer[body["partner_id"]]
        if method in QUERY_METHODS:
            return self.auditor if self.auditor in self.tokens else self.admin
        return self.officer

    def call(self, method: str, body: dict | None = None, caller: str | None = None):
        """Calls a Ledger method as `caller` (by default the role that may;
        ANONYMOUS for no token)."""
        body = body or {}
        caller = self.caller(method, body) if caller is None else caller
        return self.api.call(LEDGER, method, body, self.tokens.get(caller))

    def stream(self, method: str, body: dict, caller: str | None = None) -> list:
        caller = self.caller(method, body) if caller is None else caller
        return self.api.stream(LEDGER, method, body, self.tokens.get(caller))

    def reader(self) -> str:
        return self.caller("GetFundSummary", {})

    def head(self) -> int:
        """The durable head: the seq of a signed checkpoint, which exists
        before the fund is opened too (the admin's access is event 1)."""
        answer = self.api.call(AUDIT, "GetCheckpoint", {}, self.tokens[self.reader()])
        return answer.checkpoint.seq

    def new_request_id(self, method: str) -> str:
        self.request_count += 1
        return f"py-{self.sfx}-{self.request_count:02d}-{method}"

    def command(self, method: str, body: dict, stream: str, event_types: list[str], request_id: str | None = None):
        """Sends a command with a fresh request id and checks its answer:
        new events of the expected types on the expected stream, each with
        seq, hash and the request id, chained to each other."""
        request_id = request_id or self.new_request_id(method)
        body = {"meta": {"request_id": request_id}, **body}
        caller = self.caller(method, body)
        response = self.call(method, body)
        check.equal(response.replayed, False, f"{method}: replayed")
        check.equal([e.event_type for e in response.events], event_types, f"{method}: recorded event types")
        previous = None
        for event in response.events:
            self.check_event(event, f"{method} event {event.event_type}")
            check.equal(event.stream, stream, f"{method}: stream of {event.event_type}")
            check.equal(event.request_id, request_id, f"{method}: request_id of {event.event_type}")
            check(event.seq not in self.recorded, f"{method}: seq {event.seq} was already answered to another command")
            if previous is not None:
                check.equal(event.seq, previous.seq + 1, f"{method}: seqs of one command")
                check.equal(event.prev_hash, previous.hash, f"{method}: prev_hash of seq {event.seq}")
            check.equal(event.actor, caller, f"{method}: actor (the principal whose token sent it)")
            self.recorded[event.seq] = event
            previous = event
        first = response.events[0]
        say(f"ok  {method:<20} seq {first.seq:>4}  {first.event_type:<22} {first.stream}  by {caller}")
        return response, request_id, body

    def check_event(self, event, what: str) -> None:
        check(event.seq >= 1, f"{what}: seq {event.seq} is not positive")
        check(HEX64.match(event.hash) is not None, f"{what}: hash {event.hash!r} is not 64 lowercase hex digits")
        check(HEX64.match(event.prev_hash) is not None, f"{what}: prev_hash {event.prev_hash!r} is not 64 hex digits")
        check(event.stream_version >= 1, f"{what}: stream_version {event.stream_version}")
        check.equal(event.schema_version, 1, f"{what}: schema_version")
        check(event.HasField("recorded_at") and event.recorded_at.seconds > 0, f"{what}: no recorded_at")
        payload = event.WhichOneof("payload")
        check(payload is not None, f"{what}: no payload")
        check.equal(camel(payload), event.event_type, f"{what}: event_type vs payload case")

    def expect_error(self, method: str, body: dict, code: grpc.StatusCode, reason: str, what: str,
                     caller: str | None = None) -> grpc.RpcError:
        """The call (as `caller`, by default the role that may) fails with
        `code`, the `fundledger-reason` metadata and a message starting with
        the reason, and records nothing."""
        head_before = self.head()
        try:
            self.call(method, body, caller)
        except grpc.RpcError as error:
            check.equal(error.code(), code, f"{what}: status code (message {error.details()!r})")
            metadata = metadata_of(error)
            check.equal(metadata.get(REASON_KEY), reason, f"{what}: {REASON_KEY} metadata")
            check(
                (error.details() or "").startswith(f"{reason}: "),
                f"{what}: message {error.details()!r} does not start with {reason!r}",
            )
            check.equal(self.head(), head_before, f"{what}: head of the log after the refused call")
            say(f"ok  {method:<20} refused {code.name} {reason} ({what})")
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                self.refusals.append(f"{what}: {code.name}")
            return error
        raise CheckFailed(f"{what}: {method} succeeded, expected {code.name} {reason}")

    def balances(self, partner_id: str | None = None) -> list:
        body = {} if partner_id is None else {"partner_id": partner_id}
        return list(self.call("GetPartnerBalances", body).partners)

    def round_pots(self) -> list[tuple[tuple, Decimal]]:
        """Every pot whose money may fund an award in our round, in pot order
        (partner id, unrestricted before earmarked), with its available money."""
        pots = []
        for partner in self.balances():
            for pot in partner.pots:
                earmark = pot.earmark_round_id if pot.HasField("earmark_round_id") else None
                if earmark in (None, self.round_id):
                    available = dec(pot.balance.available, f"{partner.partner_id} available")
                    key = (partner.partner_id, 0 if earmark is None else 1, earmark or "")
                    pots.append((key, available))
        pots.sort(key=lambda p: p[0])
        return pots

    @staticmethod
    def largest_remainder(total: Decimal, pots: list[tuple[tuple, Decimal]]) -> list[tuple[str, str, Decimal]]:
        """The split the contract promises, computed here independently:
        pro rata to the available money, to the cent, largest remainder, ties
        to the pot that sorts first, zero parts left out."""
        total_cents = int(total / CENT)
        weights = [(key, int(available / CENT)) for key, available in pots if available > 0]
        weight_sum = sum(w for _, w in weights)
        check(weight_sum >= total_cents, f"split of {total} over only {weight_sum} cents")
        parts = [[total_cents * w // weight_sum, total_cents * w % weight_sum] for _, w in weights]
        leftover = total_cents - sum(p[0] for p in parts)
        order = sorted(range(len(parts)), key=lambda i: -parts[i][1])  # stable: pot order among ties
        for i in order[:leftover]:
            parts[i][0] += 1
        return [(key[0], key[2], Decimal(part) * CENT) for (key, _), (part, _) in zip(weights, parts) if part > 0]

    @staticmethod
    def shares(shares, what: str) -> list[tuple[str, str, Decimal]]:
        return [
            (s.partner_id, s.earmark_round_id if s.HasField("earmark_round_id") else "", dec(s.amount, what))
            for s in shares
        ]

    def check_split(self, shares, total: Decimal, what: str) -> list[tuple[str, str, Decimal]]:
        parts = self.shares(shares, what)
        check(all(amount > 0 for _, _, amount in parts), f"{what}: a share is not positive: {parts}")
        added = sum((amount for _, _, amount in parts), ZERO)
        check.equal(added, total, f"{what}: the shares add up to")
        return parts

    # -------------------------------------------------------------- steps

    def discover(self) -> None:
        services = self.api.services()
        for name in (LEDGER, AUDIT, HEALTH):
            check(name in services, f"reflection (v1alpha) lists {services}, not {name}")
        v1 = reflection_v1_services(self.api.channel)
        for name in (LEDGER, AUDIT, HEALTH):
            check(name in v1, f"reflection (v1) lists {v1}, not {name}")
        ledger = self.api.service(LEDGER)
        methods = [m.name for m in ledger.methods]
        for name in ("OpenFund", "AwardGrant", "MakePayment", "GetGrant", "ListApplications", "ReadEvents",
                     "GrantAccess", "ListPrincipals"):
            check(name in methods, f"{LEDGER} has no method {name}: {methods}")
        say(f"ok  reflection v1alpha and v1 list {', '.join(sorted(services))}")
        say(f"ok  {LEDGER}: {len(methods)} methods, types from {ledger.file.name}")

        answer = self.api.call(HEALTH, "Check", {"service": LEDGER})
        status = self.api.enum_name("grpc.health.v1.HealthCheckResponse.ServingStatus", answer.status)
        check.equal(status, "SERVING", f"{HEALTH}/Check for {LEDGER}")
        say(f"ok  {HEALTH}/Check {LEDGER}: {status}")

    def grant(self, principal: str, kind: str, partner: str | None = None) -> None:
        """Gives `principal` a role, as the admin, with a token made here:
        only its SHA-256 crosses the wire."""
        token, digest = new_token()
        role = {"kind": kind, **({"partner_id": partner} if partner else {})}
        response, _, _ = self.command(
            "GrantAccess",
            {"principal_id": principal, "role": role, "token_sha256": digest},
            f"principal/{principal}",
            ["AccessGranted"],
        )
        granted = response.events[0].access_granted
        check.equal((granted.principal_id, granted.token_sha256), (principal, digest), "AccessGranted")
        check.equal(self.api.enum_name("fundledger.v1.RoleKind", granted.role.kind), kind, "AccessGranted role kind")
        if partner:
            check.equal(granted.role.partner_id, partner, "AccessGranted partner")
        answer = response.SerializeToString()
        check(token.encode() not in answer and token[len(TOKEN_PREFIX):].encode() not in answer,
              f"GrantAccess for {principal}: the answer holds the token")
        self.tokens[principal] = token

    def access(self) -> None:
        """Nothing without a token; the admin gives an officer and an
        auditor access."""
        stranger = f"stranger-{self.sfx}"
        self.tokens[stranger], _ = new_token()
        for caller, what in ((ANONYMOUS, "no token"), (stranger, "a token nobody holds")):
            self.expect_error("GetFundSummary", {}, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated",
                              f"GetFundSummary with {what}", caller)
            self.expect_error(
                "OpenFund",
                {"meta": {"request_id": self.new_request_id("OpenFund")}, "name": "Intruder fund", "currency": "EUR",
                 "minor_units": 2},
                grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", f"OpenFund with {what}", caller,
            )
        try:
            self.stream("ReadEvents", {"from_seq": 1}, ANONYMOUS)
            raise CheckFailed("ReadEvents without a token sent the log")
        except grpc.RpcError as error:
            check.equal(error.code(), grpc.StatusCode.UNAUTHENTICATED, "ReadEvents without a token")
        try:
            self.api.call(AUDIT, "VerifyLog", {}, None)
            raise CheckFailed("VerifyLog without a token answered")
        except grpc.RpcError as error:
            check.equal(error.code(), grpc.StatusCode.UNAUTHENTICATED, "Audit/VerifyLog without a token")
        say("ok  without a token     UNAUTHENTICATED: GetFundSummary, OpenFund, ReadEvents, Audit/VerifyLog")

        listed = {p.principal_id: p for p in self.call("ListPrincipals", {}, self.admin).principals}
        check(self.admin in listed, f"ListPrincipals does not list the admin {self.admin}: {sorted(listed)}")
        admin = listed[self.admin]
        check.equal((self.api.enum_name("fundledger.v1.RoleKind", admin.role.kind), admin.revoked),
                    ("ROLE_KIND_ADMIN", False), f"ListPrincipals {self.admin}")
        self.grant(self.officer, "ROLE_KIND_OFFICER")
        self.grant(self.auditor, "ROLE_KIND_AUDITOR")
        principals = self.call("ListPrincipals").principals  # as the auditor now
        check({self.officer, self.auditor} <= {p.principal_id for p in principals},
              "ListPrincipals (auditor) lists the new officer and auditor")

    def open_fund(self) -> None:
        try:
            before = self.call("GetFundSummary")
        except grpc.RpcError as error:
            check.equal(
                (error.code(), metadata_of(error).get(REASON_KEY)),
                (grpc.StatusCode.NOT_FOUND, "fund_not_opened"),
                "GetFundSummary before the fund is opened",
            )
            before = None
        if before is None:
            self.fresh = True
            self.before = None
            self.command(
                "OpenFund",
                {"name": "Loket D (reflection client)", "currency": CURRENCY, "minor_units": 2},
                "fund",
                ["FundOpened"],
            )
        else:
            # A ledger that already has a fund: ours must keep EUR books.
            self.fresh = False
            self.before = before
            check.equal((before.currency, before.minor_units), (CURRENCY, 2), "the existing fund's currency")
            self.expect_error(
                "OpenFund",
                {"meta": {"request_id": self.new_request_id("OpenFund")}, "name": "Again", "currency": "EUR",
                 "minor_units": 2},
                grpc.StatusCode.FAILED_PRECONDITION,
                "fund_already_opened",
                "a second OpenFund",
            )
        summary = self.call("GetFundSummary")
        check.equal((summary.currency, summary.minor_units), (CURRENCY, 2), "fund currency and minor units")

    def partners_and_money(self) -> None:
        self.contributions = {self.partner_a: Decimal("9000.00"), self.partner_b: Decimal("4500.50")}
        names = {self.partner_a: ("Porticus", "NL-KVK-34241577"), self.partner_b: ("VSBfonds", "NL-KVK-41179132")}
        for partner, (name, organisation) in names.items():
            self.command(
                "AdmitPartner",
                {"partner_id": partner, "name": f"{name} ({self.sfx})", "organisation_id": organisation},
                f"partner/{partner}",
                ["PartnerAdmitted"],
            )
            self.grant(self.treasurer[partner], "ROLE_KIND_PARTNER", partner)
        for partner, amount in self.contributions.items():
            response, request_id, body = self.command(
                "PledgeContribution",
                {"partner_id": partner, "amount": money(amount), "pledged_on": "2024-01-10"},
                f"partner/{partner}",
                ["ContributionPledged"],
            )
            pledged = response.events[0].contribution_pledged
            check.equal(dec(pledged.amount, "pledge"), amount, "ContributionPledged amount")
            check(not pledged.HasField("earmark_round_id"), "an unrestricted pledge came back earmarked")
        self.pledge_retry = (request_id, body, response)
        for partner, amount in self.contributions.items():
            self.command(
                "RecordReceipt",
                {"partner_id": partner, "amount": money(amount), "value_date": "2024-01-20",
                 "bank_reference": f"NL91 {self.sfx} {partner[:8]}"},
                f"partner/{partner}",
                ["ContributionReceived"],
            )

    def partners_only_for_themselves(self) -> None:
        """A partner's token neither pledges for nor reads another partner."""
        a, b = self.partner_a, self.partner_b
        self.expect_error(
            "PledgeContribution",
            {"meta": {"request_id": self.new_request_id("PledgeContribution")}, "partner_id": b,
             "amount": money("100.00"), "pledged_on": "2024-01-11"},
            grpc.StatusCode.PERMISSION_DENIED, "permission_denied", f"{a}'s treasurer pledging for {b}",
            self.treasurer[a],
        )
        self.expect_error(
            "GetPartnerBalances", {"partner_id": b}, grpc.StatusCode.PERMISSION_DENIED, "permission_denied",
            f"{a}'s treasurer reading {b}'s balances", self.treasurer[a],
        )
        own = [p.partner_id for p in self.call("GetPartnerBalances", {}, self.treasurer[a]).partners]
        check.equal(own, [a], f"GetPartnerBalances for all, as {a}'s treasurer: its own only")

    def auditor_writes_nothing(self) -> None:
        for method, body in (
            ("SubmitApplication", {"application_id": f"app-{self.sfx}-auditor", "round_id": self.round_id,
                                   "applicant": {"name": "X", "place": "Utrecht", "country": "NL"}, "title": "X",
                                   "amount_requested": money("100.00"), "submitted_on": "2024-02-15"}),
            ("AwardGrant", {"application_id": self.app_grant, "amount": money("1.00"), "reason": "x",
                            "decided_on": "2024-04-10"}),
            ("OpenRound", {"round_id": f"{self.round_id}-auditor", "name": "X", "budget_ceiling": money("1.00"),
                           "grant_max": money("1.00"), "opens_on": "2024-02-01", "closes_on": "2024-03-31"}),
        ):
            body = {"meta": {"request_id": self.new_request_id(method)}, **body}
            error = self.expect_error(method, body, grpc.StatusCode.PERMISSION_DENIED, "permission_denied",
                                      f"the auditor sending {method}", self.auditor)
            check(f"{self.auditor} (auditor) may not {method}" in (error.details() or ""),
                  f"the refusal says who may not do what: {error.details()!r}")

    def open_round(self) -> None:
        # Loket D's figures; on a ledger that already holds more money than
        # that, a round large enough that only money can limit an award.
        fund_available = dec(self.call("GetFundSummary").totals.available, "fund available")
        self.grant_max = Decimal("15000.00")
        self.budget_ceiling = Decimal("250000.00")
        if fund_available + Decimal("1000") > self.grant_max:
            self.grant_max = fund_available.quantize(Decimal(1)) + Decimal("1000.00")
            self.budget_ceiling = self.grant_max * 2
        response, _, _ = self.command(
            "OpenRound",
            {"round_id": self.round_id, "name": f"Loket D, ronde {self.sfx}", "budget_ceiling": money(self.budget_ceiling),
             "grant_max": money(self.grant_max), "opens_on": "2024-02-01", "closes_on": "2024-03-31"},
            f"round/{self.round_id}",
            ["RoundOpened"],
        )
        check.equal(dec(response.events[0].round_opened.grant_max, "grant max"), self.grant_max, "RoundOpened grant_max")

    def submit(self, application: str, name: str, title: str, amount: Decimal) -> None:
        response, _, _ = self.command(
            "SubmitApplication",
            {"application_id": application, "round_id": self.round_id,
             "applicant": {"name": name, "place": "Willemstad", "country": "CW"},
             "title": title, "description": "Submitted by the reflection client.",
             "amount_requested": money(amount), "submitted_on": "2024-02-15"},
            f"application/{application}",
            ["ApplicationSubmitted"],
        )
        submitted = response.events[0].application_submitted
        check.equal(
            (submitted.application_id, submitted.applicant.place, submitted.applicant.country),
            (application, "Willemstad", "CW"),
            "ApplicationSubmitted",
        )
        check.equal(dec(submitted.amount_requested, "requested"), amount, "ApplicationSubmitted amount_requested")

    def award(self) -> None:
        self.award_amount = Decimal("12000.00")
        self.requested = {self.app_grant: Decimal("12000.00")}
        self.submit(self.app_grant, "Bewonersgroep Punda", "Dialoogtafels in Punda", self.requested[self.app_grant])

        expected = self.largest_remainder(self.award_amount, self.round_pots())
        body = {"application_id": self.app_grant, "amount": money(self.award_amount), "reason": "Fits the call",
                "decided_on": "2024-04-10"}
        response, request_id, sent = self.command(
            "AwardGrant", body, f"application/{self.app_grant}", ["GrantAwarded"]
        )
        awarded = response.events[0].grant_awarded
        check.equal(dec(awarded.amount, "award"), self.award_amount, "GrantAwarded amount")
        self.attribution = self.check_split(awarded.attribution, self.award_amount, "GrantAwarded attribution")
        check.equal(self.attribution, expected, "GrantAwarded attribution (pro rata, largest remainder)")
        if self.fresh:
            check.equal({p for p, _, _ in self.attribution}, {self.partner_a, self.partner_b}, "partners funding it")
        say("    attribution " + ", ".join(f"{p} {fmt(a)}" for p, _, a in self.attribution)
            + f" = {fmt(sum((a for _, _, a in self.attribution), ZERO))}")
        self.award_request = (request_id, sent, response)

    def idempotency_and_errors(self) -> None:
        # A retry with the same request id: the original answer, nothing new.
        _, sent, original = self.award_request
        head_before = self.head()
        again = self.call("AwardGrant", sent)
        check.equal(again.replayed, True, "AwardGrant retried with the same request id: replayed")
        check.equal(
            [(e.seq, e.hash) for e in again.events],
            [(e.seq, e.hash) for e in original.events],
            "AwardGrant retry: the original events",
        )
        check.equal(self.head(), head_before, "head of the log after the retry")
        _, sent_p, original_p = self.pledge_retry
        again_p = self.call("PledgeContribution", sent_p)
        check.equal(
            (again_p.replayed, [e.hash for e in again_p.events]),
            (True, [e.hash for e in original_p.events]),
            "PledgeContribution retry",
        )
        check.equal(self.head(), head_before, "head of the log after the second retry")
        say(f"ok  AwardGrant (retry)   replayed: true, same events (seq {original.events[0].seq}), nothing recorded")

        # The same request id for a different request.
        different = dict(sent, amount=money(self.award_amount - Decimal("1.00")))
        self.expect_error("AwardGrant", different, grpc.StatusCode.ALREADY_EXISTS, "request_id_conflict",
                          "a reused request id with another amount")

        # An amount with more decimals than the currency has.
        self.expect_error(
            "MakePayment",
            {"meta": {"request_id": self.new_request_id("MakePayment")}, "application_id": self.app_grant,
             "amount": money("1.234"), "value_date": "2024-05-01", "bank_reference": "PAY-BAD"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_amount",
            'amount "1.234"',
        )

        # An award one cent above the money the partners have available for
        # the round.
        available = sum((a for _, a in self.round_pots()), ZERO)
        too_much = available + CENT
        self.requested[self.app_rejected] = too_much
        self.submit(self.app_rejected, "Stichting Buurtkracht Otrobanda", "Buurtgesprekken Otrobanda", too_much)
        error = self.expect_error(
            "AwardGrant",
            {"meta": {"request_id": self.new_request_id("AwardGrant")}, "application_id": self.app_rejected,
             "amount": money(too_much), "reason": "Also fits", "decided_on": "2024-04-11"},
            grpc.StatusCode.FAILED_PRECONDITION,
            "insufficient_available",
            f"an award of {fmt(too_much)} with {fmt(available)} available",
        )
        self.over_award_message = error.details()

    def other_applications(self) -> None:
        self.command(
            "RejectApplication",
            {"application_id": self.app_rejected, "reason": "No money left in the round",
             "decided_on": "2024-04-11"},
            f"application/{self.app_rejected}",
            ["ApplicationRejected"],
        )
        self.requested[self.app_withdrawn] = Decimal("4999.99")
        self.submit(self.app_withdrawn, "Jongerenraad Bandabou", "Jongerenpanel Bandabou", Decimal("4999.99"))
        response, _, _ = self.command(
            "WithdrawApplication",
            {"application_id": self.app_withdrawn, "reason": "Found other funding", "withdrawn_on": "2024-03-01"},
            f"application/{self.app_withdrawn}",
            ["ApplicationWithdrawn"],
        )
        check.equal(response.events[0].application_withdrawn.reason, "Found other funding", "withdrawal reason")

    def payments(self) -> None:
        app = self.app_grant
        stream = f"application/{app}"
        self.advance = Decimal("9600.00")
        self.refund = Decimal("600.00")
        self.final_amount = Decimal("10500.00")
        self.paid_parts: list[tuple[str, str, Decimal]] = []
        self.refund_parts: list[tuple[str, str, Decimal]] = []

        response, _, _ = self.command(
            "MakePayment",
            {"application_id": app, "amount": money(self.advance), "value_date": "2024-05-01",
             "bank_reference": f"PAY-{self.sfx}-1"},
            stream,
            ["PaymentMade"],
        )
        paid = response.events[0].payment_made
        check.equal(paid.tranche, 1, "first PaymentMade tranche")
        self.paid_parts += self.check_split(paid.attribution, self.advance, "advance attribution")

        response, _, _ = self.command(
            "RecordRefund",
            {"application_id": app, "amount": money(self.refund), "value_date": "2024-09-01",
             "bank_reference": f"REF-{self.sfx}-1"},
            stream,
            ["RefundReceived"],
        )
        refunded = response.events[0].refund_received
        check.equal(refunded.releases, False, "a refund on an active grant releases money")
        self.refund_parts += self.check_split(refunded.attribution, self.refund, "refund attribution")

        response, _, _ = self.command(
            "SettleGrant",
            {"application_id": app, "final_amount": money(self.final_amount),
             "reason": "Final report: lower costs", "decided_on": "2024-12-01"},
            stream,
            ["GrantSettled"],
        )
        settled = response.events[0].grant_settled
        check.equal(dec(settled.final_amount, "final amount"), self.final_amount, "GrantSettled final_amount")
        self.released = self.check_split(
            settled.released, self.award_amount - self.final_amount, "settlement release"
        )

        # What is still open: the final amount less what was paid net.
        position = self.call("GetGrant", {"application_id": app}).grant
        self.final_payment = self.final_amount - (self.advance - self.refund)
        check.equal(dec(position.open, "open"), self.final_payment, "open on the grant before the final payment")
        response, _, _ = self.command(
            "MakePayment",
            {"application_id": app, "amount": money(self.final_payment), "value_date": "2024-12-15",
             "bank_reference": f"PAY-{self.sfx}-2"},
            stream,
            ["PaymentMade"],
        )
        paid = response.events[0].payment_made
        check.equal(paid.tranche, 2, "final PaymentMade tranche")
        self.paid_parts += self.check_split(paid.attribution, self.final_payment, "final payment attribution")

    # -------------------------------------------------------------- queries

    def read_log(self) -> None:
        events = self.stream("ReadEvents", {"from_seq": 1})
        check(len(events) > 0, "ReadEvents from 1 sent no event")
        previous_hash = ZERO_HASH
        for expected_seq, event in enumerate(events, start=1):
            check.equal(event.seq, expected_seq, "ReadEvents: gapless seqs from 1")
            self.check_event(event, f"ReadEvents seq {event.seq}")
            check.equal(event.prev_hash, previous_hash, f"ReadEvents seq {event.seq}: prev_hash")
            previous_hash = event.hash
            if event.seq in self.recorded:
                check.equal(
                    event.SerializeToString(deterministic=True),
                    self.recorded[event.seq].SerializeToString(deterministic=True),
                    f"ReadEvents seq {event.seq} vs the command's answer",
                )
        if self.fresh:
            # A fresh ledger: `init` made the admin (event 1), everything
            # else was sent by a principal of this run.
            ours = {self.admin, self.officer, self.auditor, *self.treasurer.values()}
            actors = [(e.seq, e.actor) for e in events]
            check.equal(actors[0], (1, "init"), "the actor of event 1 (the admin's access, by init)")
            strangers = [(seq, actor) for seq, actor in actors[1:] if actor not in ours]
            check(not strangers, f"events whose actor is none of this run's principals: {strangers}")
        check(all(e.actor for e in events), "an event names no actor")
        seen = {e.seq for e in events}
        missing = sorted(set(self.recorded) - seen)
        check(not missing, f"ReadEvents lacks events that commands recorded: {missing}")
        self.log = events

        # A window of the log: from_seq and limit.
        start = min(self.recorded)
        window = self.stream("ReadEvents", {"from_seq": start, "limit": 3})
        check.equal([e.seq for e in window], [start, start + 1, start + 2], "ReadEvents from_seq/limit window")
        say(f"ok  ReadEvents           {len(events)} events, seq 1..{events[-1].seq} gapless, hash chain intact")

    def check_grant(self) -> None:
        app = self.app_grant
        answer = self.call("GetGrant", {"application_id": app})
        check.equal(answer.application_id, app, "GetGrant application_id")
        g = answer.grant
        status = self.api.enum_name("fundledger.v1.GrantStatus", g.status)
        net_paid = self.advance + self.final_payment - self.refund
        got = {
            "awarded": dec(g.awarded, "awarded"), "amount": dec(g.amount, "amount"), "status": status,
            "paid": dec(g.paid, "paid"), "refunded": dec(g.refunded, "refunded"),
            "net_paid": dec(g.net_paid, "net paid"), "open": dec(g.open, "open"), "tranches": g.tranches,
            "awarded_on": g.awarded_on, "settled_on": g.settled_on if g.HasField("settled_on") else None,
        }
        want = {
            "awarded": self.award_amount, "amount": self.final_amount, "status": "GRANT_STATUS_SETTLED",
            "paid": self.advance + self.final_payment, "refunded": self.refund, "net_paid": net_paid, "open": ZERO,
            "tranches": 2, "awarded_on": "2024-04-10", "settled_on": "2024-12-01",
        }
        check.equal(got, want, f"GetGrant {app}")
        check.equal(net_paid, self.final_amount, "net paid equals the settled amount")
        # Per pot: the shares add up to the grant, and the last payment paid
        # the exact remainder of each.
        shares = [(s.partner_id, dec(s.amount, "share"), dec(s.net_paid, "share net paid"), dec(s.open, "share open"))
                  for s in g.shares]
        check.equal(sum((s[1] for s in shares), ZERO), self.final_amount, "GrantShare amounts add up to the grant")
        check.equal(sum((s[2] for s in shares), ZERO), net_paid, "GrantShare net_paid adds up")
        check(all(s[3] == ZERO for s in shares), f"a pot still has money open: {shares}")

        # The history: every event of the application's stream, in order.
        ours = [e for seq, e in sorted(self.recorded.items()) if e.stream == f"application/{app}"]
        check.equal(
            [(e.seq, e.event_type, e.hash) for e in answer.history],
            [(e.seq, e.event_type, e.hash) for e in ours],
            "GetGrant history",
        )
        check.equal([e.stream_version for e in answer.history], list(range(1, len(ours) + 1)),
                    "GetGrant history stream versions")
        types = [e.event_type for e in answer.history]
        check.equal(types, ["ApplicationSubmitted", "GrantAwarded", "PaymentMade", "RefundReceived", "GrantSettled",
                            "PaymentMade"], "GetGrant history event types")
        say(f"ok  GetGrant             {status}, awarded {fmt(got['awarded'])}, settled {fmt(got['amount'])}, "
            f"net paid {fmt(got['net_paid'])}, open {fmt(got['open'])}; history of {len(types)} events")

        application = self.call("GetApplication", {"application_id": app})
        check.equal(
            (self.api.enum_name("fundledger.v1.ApplicationStatus", application.application.status),
             application.application.decision.reason, len(application.history)),
            ("APPLICATION_STATUS_AWARDED", "Fits the call", len(ours)),
            "GetApplication",
        )

    def check_applications(self) -> None:
        rows = []
        token = ""
        pages = 0
        while True:
            page = self.call("ListApplications", {"round_id": self.round_id, "page_size": 2, "page_token": token})
            pages += 1
            rows += list(page.applications)
            token = page.next_page_token
            if not token:
                break
            check(pages < 10, "ListApplications does not end")
        got = [
            (r.application_id, r.place, r.country, dec(r.amount_requested, "requested"),
             self.api.enum_name("fundledger.v1.ApplicationStatus", r.status),
             dec(r.grant_amount, "grant amount") if r.HasField("grant_amount") else None,
             self.api.enum_name("fundledger.v1.GrantStatus", r.grant_status))
            for r in rows
        ]
        want = [
            (self.app_grant, "Willemstad", "CW", self.requested[self.app_grant], "APPLICATION_STATUS_AWARDED",
             self.final_amount, "GRANT_STATUS_SETTLED"),
            (self.app_rejected, "Willemstad", "CW", self.requested[self.app_rejected], "APPLICATION_STATUS_REJECTED",
             None, "GRANT_STATUS_UNSPECIFIED"),
            (self.app_withdrawn, "Willemstad", "CW", self.requested[self.app_withdrawn],
             "APPLICATION_STATUS_WITHDRAWN", None, "GRANT_STATUS_UNSPECIFIED"),
        ]
        check.equal(got, want, "ListApplications of the round (pages of 2)")
        check.equal(pages, 2, "ListApplications pages of 2 for 3 applications")
        rejected = self.call("ListApplications", {"round_id": self.round_id, "status": "APPLICATION_STATUS_REJECTED"})
        check.equal([r.application_id for r in rejected.applications], [self.app_rejected],
                    "ListApplications filtered on REJECTED")
        say(f"ok  ListApplications     {len(rows)} applications in {pages} pages: awarded, rejected, withdrawn")

    def check_round(self) -> None:
        rounds = list(self.call("GetRoundFigures", {"round_id": self.round_id}).rounds)
        check.equal(len(rounds), 1, "GetRoundFigures for one round")
        r = rounds[0]
        got = {
            "received": r.applications_received, "decided": r.applications_decided,
            "awarded": r.applications_awarded, "rejected": r.applications_rejected,
            "withdrawn": r.applications_withdrawn, "pending": r.applications_pending,
            "amount_requested": dec(r.amount_requested, "requested"),
            "amount_awarded": dec(r.amount_awarded, "awarded"),
            "amount_committed": dec(r.amount_committed, "committed"),
            "budget_left": dec(r.budget_left, "budget left"),
            "open": not r.HasField("closed_on"),
        }
        want = {
            "received": 3, "decided": 2, "awarded": 1, "rejected": 1, "withdrawn": 1, "pending": 0,
            "amount_requested": sum(self.requested.values(), ZERO), "amount_awarded": self.award_amount,
            "amount_committed": self.final_amount, "budget_left": self.budget_ceiling - self.final_amount,
            "open": True,
        }
        check.equal(got, want, f"GetRoundFigures {self.round_id}")
        say(f"ok  GetRoundFigures      3 received, 1 awarded, 1 rejected, 1 withdrawn; awarded "
            f"{fmt(got['amount_awarded'])}, committed {fmt(got['amount_committed'])}")

    def check_balances(self) -> None:
        partners = self.balances()
        names = ("pledged", "pledge_reduced", "received", "outstanding_pledges", "awarded", "paid", "refunded",
                 "open_commitments", "available", "cash_held")

        def figures(balance, what):
            return {n: dec(getattr(balance, n), f"{what} {n}") for n in names}

        def identities(f, what):
            check.equal(f["outstanding_pledges"], f["pledged"] - f["received"], f"{what}: outstanding")
            check.equal(f["open_commitments"], f["awarded"] + f["refunded"] - f["paid"], f"{what}: open commitments")
            check.equal(f["available"], f["received"] - f["awarded"], f"{what}: available")
            check.equal(f["cash_held"], f["received"] - f["paid"] + f["refunded"], f"{what}: cash held")

        totals = {n: ZERO for n in names}
        by_partner = {}
        for p in partners:
            total = figures(p.total, p.partner_id)
            identities(total, p.partner_id)
            pots = [figures(pot.balance, f"{p.partner_id} pot") for pot in p.pots]
            for n in names:
                check.equal(sum((pot[n] for pot in pots), ZERO), total[n], f"{p.partner_id}: pots add up ({n})")
                totals[n] += total[n]
            by_partner[p.partner_id] = total
        check.equal([p.partner_id for p in partners], sorted(p.partner_id for p in partners),
                    "GetPartnerBalances in id order")

        # Our two partners, from the events this run recorded.
        def part(parts, partner):
            return sum((a for p, e, a in parts if p == partner and e == ""), ZERO)

        for partner, contribution in self.contributions.items():
            check(partner in by_partner, f"GetPartnerBalances lacks {partner}")
            awarded = part(self.attribution, partner) - part(self.released, partner)
            paid = part(self.paid_parts, partner)
            refunded = part(self.refund_parts, partner)
            want = {
                "pledged": contribution, "pledge_reduced": ZERO, "received": contribution,
                "outstanding_pledges": ZERO, "awarded": awarded, "paid": paid, "refunded": refunded,
                "open_commitments": awarded + refunded - paid, "available": contribution - awarded,
                "cash_held": contribution - paid + refunded,
            }
            check.equal(by_partner[partner], want, f"GetPartnerBalances {partner}")
            only = self.balances(partner)
            check.equal([p.partner_id for p in only], [partner], f"GetPartnerBalances partner_id={partner}")
        say(f"ok  GetPartnerBalances   {len(partners)} partners; ours match the events to the cent")

        summary = self.call("GetFundSummary")
        check.equal(figures(summary.totals, "fund"), totals, "GetFundSummary totals = the partners added up")
        identities(totals, "fund")
        counts = ("partners", "rounds", "rounds_open", "applications", "applications_pending", "grants",
                  "grants_active")
        before = {n: (getattr(self.before, n) if self.before is not None else 0) for n in counts}
        delta = {n: getattr(summary, n) - before[n] for n in counts}
        check.equal(delta, {"partners": 2, "rounds": 1, "rounds_open": 1, "applications": 3,
                            "applications_pending": 0, "grants": 1, "grants_active": 0},
                    "GetFundSummary counts added by this run")
        check.equal((summary.head_seq, summary.head_hash), (self.log[-1].seq, self.log[-1].hash),
                    "GetFundSummary head vs the last event read")
        check.equal(summary.head_recorded_at, self.log[-1].recorded_at, "GetFundSummary head_recorded_at")
        self.summary = summary
        say(f"ok  GetFundSummary       head seq {summary.head_seq}, {summary.partners} partners, "
            f"{summary.grants} grant(s), available {fmt(totals['available'])}")

    # -------------------------------------------------------------- all

    def run(self) -> None:
        started = time.monotonic()
        say(f"fundledger reflection client: server {self.server}, ids with suffix {self.sfx}")
        self.discover()
        self.access()
        self.open_fund()
        self.partners_and_money()
        self.partners_only_for_themselves()
        self.open_round()
        self.award()
        self.idempotency_and_errors()
        self.auditor_writes_nothing()
        self.other_applications()
        self.payments()
        self.read_log()
        self.check_grant()
        self.check_applications()
        self.check_round()
        self.check_balances()
        seqs = sorted(self.recorded)
        say("")
        say("summary")
        say(f"  ledger:   {'fresh' if self.fresh else 'existing'} fund {self.summary.name!r} in {CURRENCY}, "
            f"{len(seqs)} events recorded by {self.request_count} request ids (seq {seqs[0]}..{seqs[-1]}); "
            f"log of {len(self.log)} events chained to {self.summary.head_hash[:16]}…")
        say(f"  grant:    {self.app_grant} awarded {fmt(self.award_amount)}, attributed "
            + " + ".join(f"{fmt(a)} ({p})" for p, _, a in self.attribution))
        say(f"            paid {fmt(self.advance)} + {fmt(self.final_payment)}, refunded {fmt(self.refund)}, "
            f"settled at {fmt(self.final_amount)}, open {fmt(ZERO)}")
        say(f"  access:   admin {self.admin}; officer, auditor and 2 treasurers given access with tokens made here; "
            f"{len(self.refusals)} calls refused for who made them:")
        for refusal in self.refusals:
            say(f"            {refusal}")
        say("  refused:  reused request id ALREADY_EXISTS; \"1.234\" INVALID_ARGUMENT; over-award FAILED_PRECONDITION")
        say(f"            ({self.over_award_message})")
        say(f"  time:     {time.monotonic() - started:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="host:port of a fundledger server, e.g. 127.0.0.1:50051")
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the server")
    parser.add_argument("--admin", default="admin", help="the admin's principal id (`fundledger init --admin`)")
    args = parser.parse_args()
    admin_token = os.environ.get("FUNDLEDGER_TOKEN", "").strip()
    if not admin_token:
        print("FAIL: set FUNDLEDGER_TOKEN to the admin token `fundledger init` printed", file=sys.stderr)
        return 2

    with grpc.insecure_channel(args.server) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
        except grpc.FutureTimeoutError:
            print(f"FAIL: cannot connect to {args.server} within {args.connect_timeout:g} s", file=sys.stderr)
            return 2
        run = Run(Reflected(channel), args.server, args.admin, admin_token)
        try:
            run.run()
        except CheckFailed as failure:
            print(f"\nFAIL: {failure}", file=sys.stderr)
            print(f"checks: {check.passed} passed, 1 failed", flush=True)
            return 1
        except grpc.RpcError as error:
            print(f"\nFAIL: unexpected gRPC error {error.code().name}: {error.details()}"
                  f" (metadata {metadata_of(error)})", file=sys.stderr)
            print(f"checks: {check.passed} passed, 1 failed", flush=True)
            return 1
        print(f"checks: {check.passed} passed, 0 failed", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
