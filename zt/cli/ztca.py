"""`ztca`: the admin CLI. Every verb takes `--dir DIR` (default `ca`, env ZT_CA_DIR).

    ztca init [--trust-domain zt.lab] [--crl-url URL] [--force]
              [--root-key-out PATH | --root-key-passphrase-file F]
    ztca register <service> [--ttl 1h] [--json] [--reenable]
    ztca issue <service> [--out DIR] [--ttl 1h] [--allow-long-ttl]
    ztca revoke <serial> | --service NAME [--reason key-compromise]
    ztca rotate-intermediate (--root-key PATH | --root-key-passphrase-file F)
    ztca bench-crl --entries N [--lifetime 1d]     (benchmarks and the lab only)
    ztca list [--json]
    ztca status [--json]
    ztca audit verify [--file F] | tail [-n N] [-f] [--timeout S] | repair   (docs/audit.md)

Exit status: 0 done; 1 an operation failed (store, CA files, a refused request); 2 a usage
error (bad flag or value, e.g. an unknown --reason), like the daemons.

Output: the answer on stdout (text, or JSON with --json) for people and scripts; on stderr one
JSON log line per thing done (`registered`, `issued`, `revoked`, `ca_created`, ...,
component `ztca`, docs/logs.md), the same schema as the daemons', so a log shipper sees an
operator's revocation like the RA's. A failure ends with one plain `ztca VERB: reason` line
on stderr (argparse's usage errors are plain text too): that line is for the person at the
terminal, not a log line.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zt import logjson
from zt.agent.material import build_csr, material_from_response
from zt.agent.writer import CertDirWriter
from zt.auditlog import Verdict, torn_path, verify_file
from zt.ca.authority import Authority
from zt.ca.crl import REASONS, parse_reason
from zt.ca.layout import CaPaths
from zt.ca.setup import RootKeyCustody, create_ca_files, load_root_key, rotate_intermediate
from zt.cli.table import render
from zt.clock import Clock, SystemClock, rfc3339
from zt.durations import parse_duration
from zt.errors import BadRequest, ConfigError, InvalidValue, RequestRejected, SvidError, ZtError
from zt.fsutil import write_secret
from zt.pki.keys import KeyType, generate_key
from zt.ra import tokens
from zt.ra.authorize import max_leaf_lifetime
from zt.ra.revocation import CRL_DER_META, bench_revoke_and_publish, crl_state, publish_crl
from zt.ra.service import DEFAULT_LEAF_TTL, DEFAULT_TOKEN_TTL, MIN_LEAF_TTL, RegistrationAuthority, normalise_serial
from zt.ra.store_api import StateStore
from zt.ra.store_open import ENV_STORE, is_postgres, open_store
from zt.spiffe import validate_trust_domain

DEFAULT_CRL_URL = "http://127.0.0.1:8444/crl"
COMPONENT = "ztca"  # the `component` of its log lines, and the `actor` it records

log = logging.getLogger("zt.cli.ztca")


def _ts(seconds: float | None) -> str | None:
    return None if seconds is None else rfc3339(dt.datetime.fromtimestamp(seconds, dt.UTC))


def _open_store(args: argparse.Namespace) -> StateStore:
    """The store --store names (ZT_STORE), or the CA directory's SQLite file; checked."""
    store = open_store(args.store, CaPaths(args.dir))
    store.check()
    return store


def _open_ra(
    args: argparse.Namespace, clock: Clock, leaf_ttl: dt.timedelta = DEFAULT_LEAF_TTL
) -> RegistrationAuthority:
    paths = CaPaths(args.dir)
    store = _open_store(args)
    td = store.meta("trust_domain") or ""
    return RegistrationAuthority(
        store, Authority.load(paths, td), paths, clock, leaf_ttl=leaf_ttl, crl_url=store.meta("crl_url")
    )


def _passphrase(path: Path | None) -> bytes | None:
    """The first line of a passphrase file (never from argv, where `ps` would show it)."""
    if path is None:
        return None
    try:
        lines = path.read_bytes().splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read passphrase file {path}: {e.strerror}") from e
    phrase = lines[0] if lines else b""
    if len(phrase) < 12:
        raise ConfigError(f"passphrase in {path} is shorter than 12 characters")
    return phrase


def cmd_init(args: argparse.Namespace, clock: Clock) -> int:
    paths = CaPaths(args.dir)
    try:
        td = validate_trust_domain(args.trust_domain)
    except SvidError as e:
        raise ConfigError(str(e)) from e
    now = clock.now()
    if args.root_key_out is not None and args.root_key_passphrase_file is not None:
        raise ConfigError("give --root-key-out or --root-key-passphrase-file, not both")
    custody = RootKeyCustody(out=args.root_key_out, passphrase=_passphrase(args.root_key_passphrase_file))
    root, inter = create_ca_files(
        paths,
        td,
        now,
        force=args.force,
        key_type=KeyType(args.key_type),
        root_lifetime=args.root_ttl,
        intermediate_lifetime=args.intermediate_ttl,
        root_key=custody,
    )
    _set_old_audit_log_aside(paths, now)
    admin = tokens.new_token(tokens.ADMIN_PREFIX)
    store = open_store(args.store, paths)
    store.create(
        {
            "trust_domain": td,
            "crl_url": args.crl_url,
            "admin_token_sha256": tokens.token_hash(admin),
            "crl_validity_seconds": str(args.crl_validity.total_seconds()),
            "created_at": rfc3339(now),
        }
    )
    write_secret(paths.admin_token, admin.encode() + b"\n")
    with store.write() as c:
        store.audit(c, now.timestamp(), "ztca", "init", td, "ok", f"intermediate {format(inter.serial_number, 'x')}")
    published = publish_crl(store, Authority.load(paths, td), paths, now)
    logjson.log_event(
        log,
        "ca_created",
        trust_domain=td,
        dir=str(paths.dir),
        root_serial=format(root.serial_number, "x"),
        intermediate_serial=format(inter.serial_number, "x"),
        root_not_after=rfc3339(root.not_valid_after_utc),
        intermediate_not_after=rfc3339(inter.not_valid_after_utc),
        root_key=custody.describe(paths),
        admin_token_file=str(paths.admin_token),
        crl_url=args.crl_url,
        crl_number=published.number,
        actor=COMPONENT,
    )
    doc = {
        "dir": str(paths.dir),
        "trust_domain": td,
        "root": str(paths.root_cert),
        "intermediate": str(paths.intermediate_cert),
        "bundle": str(paths.bundle),
        "bundle_sha256": paths.bundle_sha256.read_text().split()[0],
        "admin_token_file": str(paths.admin_token),
        "crl": str(paths.crl_der),
        "crl_url": args.crl_url,
        "crl_number": published.number,
        "root_not_after": rfc3339(root.not_valid_after_utc),
        "intermediate_not_after": rfc3339(inter.not_valid_after_utc),
        "root_key": custody.describe(paths),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"created CA for trust domain {td} in {paths.dir}")
        for k in ("root", "intermediate", "bundle", "bundle_sha256", "admin_token_file", "crl", "crl_url", "root_key"):
            print(f"  {k:<17} {doc[k]}")
    return 0


def cmd_rotate_intermediate(args: argparse.Namespace, clock: Clock) -> int:
    paths = CaPaths(args.dir)
    store = _open_store(args)
    td = store.meta("trust_domain") or ""
    source = args.root_key or paths.root_key_encrypted
    root_key = load_root_key(source, _passphrase(args.root_key_passphrase_file))
    inter = rotate_intermediate(paths, td, root_key, clock.now(), lifetime=args.intermediate_ttl)
    with store.write() as c:
        store.audit(
            c,
            clock.now().timestamp(),
            "ztca",
            "rotate-intermediate",
            format(inter.serial_number, "x"),
            "ok",
            f"not after {rfc3339(inter.not_valid_after_utc)}",
        )
    published = publish_crl(store, Authority.load(paths, td), paths, clock.now())
    logjson.log_event(
        log,
        "intermediate_rotated",
        serial=format(inter.serial_number, "x"),
        not_after=rfc3339(inter.not_valid_after_utc),
        crl_number=published.number,
        actor=COMPONENT,
    )
    doc = {
        "intermediate": str(paths.intermediate_cert),
        "serial": format(inter.serial_number, "x"),
        "intermediate_not_after": rfc3339(inter.not_valid_after_utc),
        "crl_number": published.number,
    }
    print(
        json.dumps(doc, indent=2)
        if args.json
        else f"new intermediate {doc['serial']} (not after {doc['intermediate_not_after']}); restart zt-ra to use it"
    )
    return 0


def cmd_register(args: argparse.Namespace, clock: Clock) -> int:
    ra = _open_ra(args, clock)
    reg = ra.register(args.service, args.ttl, actor=COMPONENT, reenable=args.reenable)
    doc = {
        "service": reg.identity.name,
        "spiffe_id": reg.identity.spiffe_id,
        "token": reg.token,
        "expires_at": rfc3339(reg.expires_at),
    }
    if args.token_file:
        write_secret(args.token_file, reg.token.encode() + b"\n")
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.token_file:
        print(f"registered {doc['spiffe_id']}; token written to {args.token_file} (expires {doc['expires_at']})")
    else:
        print(f"registered {doc['spiffe_id']}")
        print(f"bootstrap token (shown once, single use, expires {doc['expires_at']}):")
        print(reg.token)
    return 0


def cmd_issue(args: argparse.Namespace, clock: Clock) -> int:
    ra = _open_ra(args, clock)
    maximum = max_leaf_lifetime(ra.store, DEFAULT_LEAF_TTL)
    ttl = args.ttl or min(DEFAULT_LEAF_TTL, maximum)
    if ttl < MIN_LEAF_TTL:
        raise ConfigError(f"--ttl must be at least {int(MIN_LEAF_TTL.total_seconds())}s")
    if ttl > maximum and not args.allow_long_ttl:
        raise ConfigError(
            f"--ttl {int(ttl.total_seconds())}s is longer than the RA's maximum leaf lifetime "
            f"({int(maximum.total_seconds())}s, its --leaf-ttl); pass --allow-long-ttl to issue it "
            "anyway"
        )
    ra = _open_ra(args, clock, leaf_ttl=max(ttl, MIN_LEAF_TTL))
    ident = ra.store.identity(args.service)
    if ident is None:
        raise RequestRejected(f"service {args.service!r} is not registered; run 'ztca register {args.service}' first")
    key = generate_key(KeyType(args.key_type))
    issued = ra.issue_direct(args.service, build_csr(key, ident.spiffe_id), int(ttl.total_seconds()), actor=COMPONENT)
    m = material_from_response(key, issued.chain_pem, issued.bundle_pem, ident.spiffe_id)
    out = args.out or Path(f"certs/{args.service}")
    gen = CertDirWriter(out).write(m)
    logjson.log_event(
        log,
        "identity_written",
        spiffe_id=ident.spiffe_id,
        serial=m.serial,
        not_after=rfc3339(m.not_after),
        out=str(out),
        generation=gen,
    )
    crl = ra.paths.crl_pem
    if crl.exists():
        CertDirWriter(out).write_crl(crl.read_bytes())
    doc = {
        "service": args.service,
        "spiffe_id": ident.spiffe_id,
        "serial": m.serial,
        "not_after": rfc3339(m.not_after),
        "out": str(out),
        "generation": gen,
    }
    print(
        json.dumps(doc, indent=2)
        if args.json
        else f"issued {m.serial} for {ident.spiffe_id} into {out} (not after {doc['not_after']})"
    )
    return 0


def cmd_revoke(args: argparse.Namespace, clock: Clock) -> int:
    if (args.serial is None) == (args.service is None):
        raise ConfigError("give a serial or --service NAME (not both)")
    reason = parse_reason(args.reason)
    serial = None
    if args.serial is not None:
        try:
            serial = normalise_serial(args.serial)
        except BadRequest as e:
            raise ConfigError(e.reason) from e
    ra = _open_ra(args, clock)
    done, published = ra.revoke(serial=serial, service=args.service, reason=reason, actor=COMPONENT)
    doc = {"revoked": done, "crl_number": published.number, "crl": str(ra.paths.crl_der)}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"revoked {len(done)} certificate(s): {', '.join(done) or '-'}; CRL {published.number} published")
    return 0


MAX_BENCH_ENTRIES = 1_000_000  # ~39 MB of DER: beyond any agent's --crl-max-bytes (10 MiB) already


def cmd_bench_crl(args: argparse.Namespace, clock: Clock) -> int:
    """A benchmark and lab tool, not an operator's verb: put N revocations of never-issued
    serials in force, in one transaction, and publish the CRL, so a large CRL can be measured
    on the running system (docs/revocation.md). They leave the CRL after --lifetime."""
    if not 1 <= args.entries <= MAX_BENCH_ENTRIES:
        raise ConfigError(f"--entries must be between 1 and {MAX_BENCH_ENTRIES}")
    if args.lifetime.total_seconds() <= 0:
        raise ConfigError("--lifetime must be positive")
    ra = _open_ra(args, clock)
    added, published = bench_revoke_and_publish(
        ra.store, ra.authority, ra.paths, clock.now(), entries=args.entries, lifetime=args.lifetime
    )
    logjson.log_event(
        log,
        "bench_crl_published",
        added=added,
        crl_number=published.number,
        entries=published.entries,
        next_update=rfc3339(published.next_update),
        actor=COMPONENT,
    )
    doc = {
        "added": added,
        "crl_number": published.number,
        "crl_entries": published.entries,
        "next_update": rfc3339(published.next_update),
        "crl": str(ra.paths.crl_der),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"{added} synthetic revocation(s) in force; "
            f"CRL {published.number} published with {published.entries} entries"
        )
    return 0


def _cert_rows(ra: RegistrationAuthority, now: float, with_pem: bool = False) -> list[dict[str, Any]]:
    rows = []
    for c in ra.store.certificates():
        row: dict[str, Any] = {
            "serial": c.serial,
            "spiffe_id": c.spiffe_id,
            "identity": c.identity,
            "via": c.via,
            "not_after": _ts(c.not_after),
            "expired": c.not_after <= now,
            "revoked": c.revoked,
            "revoked_at": _ts(c.revoked_at),
            "reason": c.revocation_reason,
        }
        if with_pem:
            row["pem"] = c.pem
        rows.append(row)
    return rows


def cmd_list(args: argparse.Namespace, clock: Clock) -> int:
    ra = _open_ra(args, clock)
    now = clock.now().timestamp()
    idents = [
        {"service": i.name, "spiffe_id": i.spiffe_id, "created_at": _ts(i.created_at)} for i in ra.store.identities()
    ]
    certs = _cert_rows(ra, now, with_pem=args.pem)
    if args.json:
        print(json.dumps({"identities": idents, "certificates": certs}, indent=2))
        return 0
    print(
        render(["SERVICE", "SPIFFE ID", "CREATED"], [[i["service"], i["spiffe_id"], i["created_at"]] for i in idents])
    )
    print()

    def state(c: dict[str, Any]) -> str:
        return "revoked" if c["revoked"] else ("expired" if c["expired"] else "valid")

    print(
        render(
            ["SERIAL", "SPIFFE ID", "VIA", "NOT AFTER", "STATE"],
            [[c["serial"], c["spiffe_id"], c["via"], c["not_after"], state(c)] for c in certs],
        )
    )
    return 0


def cmd_store_copy(args: argparse.Namespace, clock: Clock) -> int:
    """Move the CA's state from its store (SQLite, usually) into a new PostgreSQL database, for
    RA replicas (docs/scaling.md). The RA must be stopped; afterwards start it with --store."""
    if not is_postgres(args.to):
        raise ConfigError("--to must be a postgresql:// URL (the store the replicas will share)")
    from zt.ra.store_pg import PgStore  # psycopg only for this verb (zt.ra.store_open)

    paths = CaPaths(args.dir)
    source = _open_store(args)
    target = open_store(args.to, paths)
    if not isinstance(target, PgStore):
        raise ConfigError("--to must be a postgresql:// URL")
    try:
        counts = target.adopt(source)
        if paths.crl_der.exists():  # the latest CRL, for replicas on other hosts (sync_crl_file)
            with target.write() as c:
                target.set_meta(c, CRL_DER_META, base64.b64encode(paths.crl_der.read_bytes()).decode())
        with target.write() as c:
            target.audit(c, clock.now().timestamp(), COMPONENT, "store-copy", target.location, "ok", source.location)
    finally:
        target.close()
        source.close()
    if args.json:
        print(json.dumps({"from": source.location, "to": target.location, "rows": counts}, indent=2))
    else:
        print(f"copied {source.location} into {target.location}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_status(args: argparse.Namespace, clock: Clock) -> int:
    ra = _open_ra(args, clock)
    now = clock.now()
    counts = ra.store.counts(now.timestamp())
    crl = crl_state(ra.store)
    doc = {
        "dir": str(ra.paths.dir),
        "trust_domain": ra.authority.trust_domain,
        "intermediate_not_after": rfc3339(ra.authority.not_after),
        "identities": counts.identities,
        "certificates": counts.certificates,
        "active": counts.active,
        "revoked": counts.revoked,
        "tokens_outstanding": counts.tokens_outstanding,
        "crl_number": crl.number,
        "crl_next_update": _ts(crl.next_update) if crl.next_update else None,
        "crl_url": ra.store.meta("crl_url"),
        "audit_log": str(ra.store.audit_log.path),
        "audit_rows": int(ra.store.read().execute("SELECT COUNT(*) FROM audit").fetchone()[0]),
        "certificates_detail": _cert_rows(ra, now.timestamp()),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    for k, v in doc.items():
        if k != "certificates_detail":
            print(f"{k:<24} {v}")
    return 0


# -- audit log (docs/audit.md) -------------------------------------------------------------------


def _set_old_audit_log_aside(paths: CaPaths, now: dt.datetime) -> None:
    """`init --force` starts a new store, whose audit rows count from 1 again: the old CA's log
    is kept, renamed, never deleted (it is evidence), and the new CA starts a new chain."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    for p in (paths.audit_log, torn_path(paths.audit_log)):
        if p.exists():
            p.rename(p.with_name(f"{p.name}.replaced-{stamp}"))


def _print_verdict(args: argparse.Namespace, path: Path, verdict: Verdict, against: str) -> int:
    doc = {
        "file": str(path),
        "ok": verdict.ok,
        "lines": verdict.lines,
        "checked_against": against,
        "problem": None
        if verdict.problem is None
        else {"line": verdict.problem.line, "kind": verdict.problem.kind, "message": verdict.problem.message},
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    elif verdict.problem is None:
        print(f"{path}: {verdict.lines} line(s), chain verified ({against})")
    else:
        p = verdict.problem
        print(f"{path}: line {p.line}: {p.kind}: {p.message}")
    return 0 if verdict.ok else 1


def cmd_audit_verify(args: argparse.Namespace, clock: Clock) -> int:
    """Walk the chain; against the store's rows too, unless --file names a copy to check alone."""
    if args.file is not None:
        if not args.file.is_file():
            raise ConfigError(f"no audit log at {args.file}")
        return _print_verdict(args, args.file, verify_file(args.file), "the chain alone")
    store = _open_store(args)
    path = store.audit_log.path
    with store.quiesced() as conn:  # no writer between its COMMIT and its append
        rows = StateStore.audit_records(conn)
        verdict = verify_file(path, rows)
    return _print_verdict(args, path, verdict, f"the chain and the store's {len(rows)} audit row(s)")


def _complete_lines(data: bytes) -> list[bytes]:
    return data[: data.rfind(b"\n") + 1].splitlines() if b"\n" in data else []


def cmd_audit_tail(args: argparse.Namespace, clock: Clock) -> int:
    """The last N whole lines; with -f, then every new whole line until SIGINT or --timeout."""
    if args.lines < 0:
        raise ConfigError("-n must be 0 or more")
    path = CaPaths(args.dir).audit_log
    if not path.exists() and not args.follow:
        raise RequestRejected(f"no audit log at {path}")
    data = path.read_bytes() if path.exists() else b""
    whole = _complete_lines(data)
    for line in whole[len(whole) - args.lines :] if args.lines else []:
        print(line.decode("utf-8", errors="replace"))
    sys.stdout.flush()
    if not args.follow:
        return 0
    offset = sum(len(line) + 1 for line in whole)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offset:  # replaced or cut back: start over at its beginning
                offset = 0
            if size == offset:
                continue
            with path.open("rb") as f:
                f.seek(offset)
                new = _complete_lines(f.read(size - offset))
            for line in new:
                print(line.decode("utf-8", errors="replace"))
                offset += len(line) + 1
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_audit_repair(args: argparse.Namespace, clock: Clock) -> int:
    """Set a torn last line aside and append the rows the file lacks, then verify."""
    store = _open_store(args)
    result = store.sync_audit()
    if result.repaired is not None:
        print(
            f"set aside a torn line of {len(result.repaired.data)} byte(s) at offset {result.repaired.offset} "
            f"into {torn_path(store.audit_log.path)}"
        )
    print(f"appended {len(result.appended)} line(s) from the store")
    with store.quiesced() as conn:
        rows = StateStore.audit_records(conn)
        verdict = verify_file(store.audit_log.path, rows)
    return _print_verdict(args, store.audit_log.path, verdict, f"the chain and the store's {len(rows)} audit row(s)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ztca",
        description="zt CA administration: create the CA, register services, "
        "issue and revoke certificates, inspect the store.",
    )
    default_dir = Path(os.environ.get("ZT_CA_DIR", "ca"))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=default_dir, help="CA directory (default: ca) [env: ZT_CA_DIR]")
    common.add_argument(
        "--store",
        metavar="URL",
        default=os.environ.get(ENV_STORE) or None,
        help="the state store: a path, sqlite:///path or postgresql://... (default: the CA directory's "
        f"SQLite file; docs/scaling.md) [env: {ENV_STORE}]",
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    i = sub.add_parser("init", parents=[common], help="create a root CA, an intermediate CA and the trust bundle")
    i.add_argument("--trust-domain", default="zt.lab", help="SPIFFE trust domain (default: zt.lab)")
    i.add_argument(
        "--crl-url", default=DEFAULT_CRL_URL, help=f"CRL distribution point URL (default: {DEFAULT_CRL_URL})"
    )
    i.add_argument(
        "--crl-validity",
        type=parse_duration,
        default=parse_duration("1h"),
        help="CRL validity (thisUpdate to nextUpdate), re-issued at half of it (default: 1h)",
    )
    i.add_argument("--key-type", choices=[k.value for k in KeyType], default="ec-p256")
    i.add_argument("--root-ttl", type=parse_duration, default=parse_duration("3650d"))
    i.add_argument("--intermediate-ttl", type=parse_duration, default=parse_duration("365d"))
    i.add_argument("--force", action="store_true", help="replace an existing CA (its certificates become useless)")
    i.add_argument(
        "--root-key-out",
        type=Path,
        metavar="PATH",
        help="write the root key here (0600; must not exist nor be inside --dir) and keep it offline",
    )
    i.add_argument(
        "--root-key-passphrase-file",
        type=Path,
        metavar="FILE",
        help="keep the root key in <dir>/root.key.enc, encrypted with the first line of FILE",
    )
    i.set_defaults(func=cmd_init)

    r = sub.add_parser("register", parents=[common], help="create a service identity and a one-time bootstrap token")
    r.add_argument("service")
    r.add_argument("--ttl", type=parse_duration, default=DEFAULT_TOKEN_TTL, help="token lifetime (default: 1h)")
    r.add_argument("--token-file", type=Path, help="also write the token to this file (0600)")
    r.add_argument(
        "--reenable",
        action="store_true",
        help="re-enable a service that was revoked with 'revoke --service' (its old certificates stay revoked)",
    )
    r.set_defaults(func=cmd_register)

    s = sub.add_parser("issue", parents=[common], help="admin path: issue a key and certificate directly")
    s.add_argument("service")
    s.add_argument("--out", type=Path, help="certificate directory (default: certs/<service>)")
    s.add_argument(
        "--ttl",
        type=parse_duration,
        help="certificate lifetime (default: 1h; at most the RA's --leaf-ttl, 1h until zt-ra has run)",
    )
    s.add_argument(
        "--allow-long-ttl", action="store_true", help="allow a --ttl longer than the RA's maximum leaf lifetime"
    )
    s.add_argument("--key-type", choices=[k.value for k in KeyType], default="ec-p256")
    s.set_defaults(func=cmd_issue)

    v = sub.add_parser("revoke", parents=[common], help="revoke a certificate or all of a service's, publish a CRL")
    v.add_argument("serial", nargs="?", help="serial (hex, with or without colons)")
    v.add_argument("--service", help="revoke all unexpired certificates of this service")
    v.add_argument("--reason", help=f"one of: {', '.join(REASONS)}")
    v.set_defaults(func=cmd_revoke)

    ri = sub.add_parser(
        "rotate-intermediate", parents=[common], help="sign a new intermediate CA with the offline root key"
    )
    ri.add_argument(
        "--root-key",
        type=Path,
        metavar="PATH",
        help="the root key (PEM; default: <dir>/root.key.enc with --root-key-passphrase-file)",
    )
    ri.add_argument(
        "--root-key-passphrase-file",
        type=Path,
        metavar="FILE",
        help="passphrase for an encrypted root key (first line)",
    )
    ri.add_argument("--intermediate-ttl", type=parse_duration, default=parse_duration("365d"))
    ri.set_defaults(func=cmd_rotate_intermediate)

    b = sub.add_parser(
        "bench-crl",
        parents=[common],
        help="benchmarks/lab only: revoke N random never-issued serials at once and publish the CRL",
    )
    b.add_argument("--entries", type=int, required=True, help=f"how many (1 to {MAX_BENCH_ENTRIES})")
    b.add_argument(
        "--lifetime",
        type=parse_duration,
        default=parse_duration("1d"),
        help="how long they stay on the CRL (default: 1d)",
    )
    b.set_defaults(func=cmd_bench_crl)

    ls = sub.add_parser("list", parents=[common], help="identities and issued certificates")
    ls.add_argument("--pem", action="store_true", help="with --json: include each certificate's PEM")
    ls.set_defaults(func=cmd_list)
    st = sub.add_parser("status", parents=[common], help="CA summary: validity, counts, CRL")
    st.set_defaults(func=cmd_status)
    sc = sub.add_parser(
        "store-copy", parents=[common], help="copy the store into a new PostgreSQL database (docs/scaling.md)"
    )
    sc.add_argument("--to", required=True, metavar="URL", help="postgresql://... of an empty database")
    sc.set_defaults(func=cmd_store_copy)
    _add_audit_parser(sub, common)
    return p


def _add_audit_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    a = sub.add_parser("audit", help="the hash-chained audit log: verify, tail, repair (docs/audit.md)")
    verbs = a.add_subparsers(dest="audit_verb", required=True, metavar="ACTION")
    ca_alias = argparse.ArgumentParser(add_help=False)
    ca_alias.add_argument(
        "--ca", dest="dir", type=Path, default=argparse.SUPPRESS, help="the CA directory (same as --dir)"
    )
    v = verbs.add_parser(
        "verify", parents=[common, ca_alias], help="walk the chain; exit 1 naming the first bad line and how"
    )
    v.add_argument("--file", type=Path, help="verify this copy of a log by its chain alone (no store)")
    v.set_defaults(func=cmd_audit_verify)
    t = verbs.add_parser("tail", parents=[common, ca_alias], help="print the last lines; -f to follow")
    t.add_argument("-n", dest="lines", type=int, default=10, help="how many lines (default: 10)")
    t.add_argument("-f", "--follow", action="store_true", help="then print new lines as they are appended")
    t.add_argument("--timeout", type=float, help="with -f: stop after this many seconds (default: until SIGINT)")
    t.set_defaults(func=cmd_audit_tail)
    r = verbs.add_parser(
        "repair", parents=[common, ca_alias], help="set a torn last line aside, append rows the file lacks"
    )
    r.set_defaults(func=cmd_audit_repair)


def main(argv: Sequence[str] | None = None, clock: Clock | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        with logjson.logging_to(sys.stderr, COMPONENT):
            return int(args.func(args, clock or SystemClock()))
    except (ConfigError, InvalidValue) as e:
        # A usage error: the operator can fix the command line. Exit 2, as argparse and the daemons do.
        print(f"ztca {args.verb}: {e}", file=sys.stderr)
        return 2
    except ZtError as e:
        print(f"ztca {args.verb}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ztca {args.verb}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
