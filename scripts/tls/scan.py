"""Checks TLS listeners against Mozilla's "intermediate" TLS profile with sslyze (scripts/tls-scan.sh).

Runs, through sslyze's Python API, the scan commands that sslyze's own Mozilla checker needs, then that
checker (sslyze.mozilla_tls_profile, the profile version bundled with sslyze), plus a few checks of its
own (see EXTRA CHECKS below). Prints, per target, what the server offers and every problem found.

    python scan.py --host localhost --ip 127.0.0.1 ecdsa=PORT:DIR1/ca.pem rsa=PORT2:DIR2/ca.pem

A target is LABEL=PORT:CA, CA being the test CA (PEM) that issued the server's certificate. A label
that is or ends in ecdsa or rsa (such as ok-rsa) also asserts the type of the server's certificate,
so that a scan of the wrong certificate cannot pass as the right one. Every target is scanned with
SNI set to --host, connecting to --ip.

Exit status: 0 if every target is compliant, 1 if any is not, 2 if a scan could not be completed
(connection refused, a scan command that errored: sslyze's CLI exits 0 when it cannot connect at all,
which is one reason this uses the API).

WHAT IS IGNORED, AND WHY (nothing else is):
  * certificate_path_validation -- sslyze's checker demands that the leaf chain up to one of its public
    trust stores (Mozilla, Apple, ...). The test CA is a private CA made at run time, so that always
    fails. The CA is handed to sslyze as an extra trust store (custom_ca_file, the API's form of
    --certinfo_ca_file), so normally the finding does not arise; but sslyze verifies with the
    `cryptography` package's RFC 5280 / CA/B profile, which also demands extensions a private test
    CA's certificates may lack (the leaf from ringway-testcert has no Authority Key Identifier). So
    when the finding does arise it is ignored only if an ordinary OpenSSL client (Python's ssl
    module, without VERIFY_X509_STRICT) trusting only the test CA completes a handshake with the
    server, verifying the chain and the host name, AND receives the very leaf certificate that
    sslyze's finding is about; otherwise it stays a problem. sslyze's own error against the test CA
    is printed as a note either way.
  * Not checked by sslyze's checker at all, and not checked here either: OCSP stapling (the profile
    asks for it, sslyze's checker skips it; a private test CA has no OCSP responder), Certificate
    Transparency (SCTs come only from public CAs), HSTS (an HTTP header, disabled in sslyze's checker;
    Ringway adds it only with --hsts), cipher order (the intermediate profile leaves it to the client).

EXTRA CHECKS (failures, beyond sslyze's checker):
  * tls_versions_missing -- the intermediate profile is TLS 1.2 + TLS 1.3; a server that does not
    offer both (e.g. TLS 1.3 only, the "modern" profile) does not serve the profile's clients.
  * client_renegotiation -- the server accepts client-initiated renegotiation (sslyze's checker looks
    only at secure-renegotiation support; Ringway is meant to refuse renegotiation altogether).
  * certificate_key_type -- the label names ecdsa/rsa and the leaf the server sent is another type.
  * scan errors -- any scan command that did not complete is a failure (exit 2), never a pass.
"""

import argparse
import datetime
import json
import socket
import ssl
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from sslyze import (
    CertificateInfoExtraArgument,
    Scanner,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    ServerConnectivityStatusEnum,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanResultAsJson,
    ServerScanStatusEnum,
    SslyzeOutputAsJson,
)
from sslyze.__version__ import __version__ as SSLYZE_VERSION
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    ServerScanResultIncomplete,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)

PROG = "tls-scan"
VERSIONS = [
    ("ssl_2_0_cipher_suites", "SSLv2"),
    ("ssl_3_0_cipher_suites", "SSLv3"),
    ("tls_1_0_cipher_suites", "TLSv1"),
    ("tls_1_1_cipher_suites", "TLSv1.1"),
    ("tls_1_2_cipher_suites", "TLSv1.2"),
    ("tls_1_3_cipher_suites", "TLSv1.3"),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="localhost", help="SNI and name to verify (default localhost)")
    p.add_argument("--ip", default="127.0.0.1", help="address to connect to (default 127.0.0.1)")
    p.add_argument("--timeout", type=int, default=5, help="sslyze network timeout, seconds")
    p.add_argument("--json-out", type=Path, help="write sslyze's JSON results here")
    p.add_argument("--issues-out", type=Path, help="write one 'LABEL KEY' line per problem here")
    p.add_argument("targets", nargs="+", metavar="LABEL=PORT:CA")
    a = p.parse_args()
    targets = []
    for t in a.targets:
        label, sep, rest = t.partition("=")
        port, sep2, ca = rest.partition(":")
        if not sep or not sep2 or not port.isdigit() or not label:
            p.error(f"target {t!r} is not LABEL=PORT:CA")
        if not Path(ca).is_file():
            p.error(f"target {label}: no CA file at {ca}")
        targets.append((label, int(port), Path(ca)))
    if len({t[0] for t in targets}) != len(targets):
        p.error("target labels must be distinct")
    return a, targets


def openssl_verifies(host, ip, port, ca, timeout):
    """Handshake as an ordinary OpenSSL client trusting only `ca`, verifying the chain and `host`.

    Returns (leaf DER or None, description). VERIFY_X509_STRICT is cleared explicitly: Python 3.13's
    default context sets it, and OpenSSL's strict mode demands an Authority Key Identifier, the same
    RFC 5280 nicety that `cryptography` demands; this check is about trust in the test CA, name and
    chain, which is what a client such as curl or a browser (given the CA) checks.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if hasattr(ssl, "VERIFY_X509_STRICT"):
        ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    try:
        with socket.create_connection((ip, port), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=host) as tls:
                return tls.getpeercert(binary_form=True), f"{tls.version()} {tls.cipher()[0]}"
    except (OSError, ssl.SSLError) as e:
        return None, f"{type(e).__name__}: {e}"


def key_description(cert):
    key = cert.public_key()
    if isinstance(key, EllipticCurvePublicKey):
        return "ecdsa", f"ECDSA {key.curve.name}"
    if isinstance(key, RSAPublicKey):
        return "rsa", f"RSA {key.key_size}"
    return type(key).__name__, type(key).__name__


def failed_commands(scan_result):
    out = []
    for cmd in sorted(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER, key=lambda c: c.value):
        attempt = getattr(scan_result, cmd.value)
        if attempt.status != ScanCommandAttemptStatusEnum.COMPLETED:
            reason = attempt.error_reason.value if attempt.error_reason else attempt.status.value
            trace = (
                "".join(attempt.error_trace.format_exception_only()).strip() if attempt.error_trace else ""
            )
            out.append(f"{cmd.value}: {reason}{': ' + trace if trace else ''}")
    return out


def check_one(label, port, ca, result, args, profile):
    """Prints the report for one target; returns (status, problems) with status 0, 1 or 2."""
    where = f"{label} ({args.host}:{port} at {args.ip})"
    if result.connectivity_status != ServerConnectivityStatusEnum.COMPLETED:
        trace = result.connectivity_error_trace
        why = "".join(trace.format_exception_only()).strip() if trace else "unknown error"
        print(f"{PROG}: {where}: could not connect: {why}")
        return 2, [("scan_error", f"could not connect: {why}")]
    if result.scan_status != ServerScanStatusEnum.COMPLETED or result.scan_result is None:
        print(f"{PROG}: {where}: the scan did not complete ({result.scan_status.value})")
        return 2, [("scan_error", "scan did not complete")]
    sr = result.scan_result
    failed = failed_commands(sr)
    if failed:
        print(f"{PROG}: {where}: scan commands that did not complete:")
        for f in failed:
            print(f"    * {f}")
        return 2, [("scan_error", f) for f in failed]

    # ---- what the server offers -----------------------------------------------------------------
    print(f"{PROG}: {where}")
    offered = []
    for field, name in VERSIONS:
        r = getattr(sr, field).result
        if r.is_tls_version_supported:
            offered.append(name)
            suites = ", ".join(
                f"{c.cipher_suite.name}"
                + (f" ({c.ephemeral_key.curve_name})" if hasattr(c.ephemeral_key, "curve_name") else "")
                for c in r.accepted_cipher_suites
            )
            print(f"    {name:<8} {suites}")
    curves = sr.elliptic_curves.result.supported_curves or []
    print(f"    groups   {', '.join(c.name for c in curves) or 'none found'}")
    ci = sr.certificate_info.result
    for dep in ci.certificate_deployments:
        leaf = dep.received_certificate_chain[0]
        days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
        print(
            f"    cert     {key_description(leaf)[1]}, {leaf.signature_algorithm_oid._name}, "
            f"{leaf.subject.rfc4514_string()}, valid {days} days, "
            f"chain of {len(dep.received_certificate_chain)}"
        )
    reneg = sr.session_renegotiation.result
    print(
        f"    other    compression {'ON' if sr.tls_compression.result.supports_compression else 'off'}, "
        f"secure renegotiation {'yes' if reneg.supports_secure_renegotiation else 'no'}, "
        f"client renegotiation {'ACCEPTED' if reneg.is_vulnerable_to_client_renegotiation_dos else 'refused'}, "
        f"extended master secret {'yes' if sr.tls_extended_master_secret.result.supports_ems_extension else 'no'}, "
        f"fallback SCSV {'yes' if sr.tls_fallback_scsv.result.supports_fallback_scsv else 'no'}"
    )

    # ---- sslyze's Mozilla checker -----------------------------------------------------------------
    try:
        check_server_against_tls_configuration(result, profile)
        issues = {}
    except ServerNotCompliantWithTlsConfiguration as e:
        issues = dict(e.issues)
    except ServerScanResultIncomplete as e:
        print(f"{PROG}: {where}: sslyze's checker says the scan is incomplete: {e}")
        return 2, [("scan_error", str(e))]

    # ---- extra checks -----------------------------------------------------------------------------
    missing = [v for v in ("TLSv1.2", "TLSv1.3") if v not in offered]
    if missing:
        issues["tls_versions_missing"] = (
            f"{' and '.join(missing)} not offered; the intermediate profile is TLSv1.2 + TLSv1.3."
        )
    if reneg.is_vulnerable_to_client_renegotiation_dos:
        issues["client_renegotiation"] = "The server accepts client-initiated renegotiation."
    want = label.rsplit("-", 1)[-1]
    if want in ("ecdsa", "rsa"):
        types = {key_description(d.received_certificate_chain[0])[0] for d in ci.certificate_deployments}
        if types != {want}:
            issues["certificate_key_type"] = (
                f"Expected only {want} certificates, the server sent {sorted(types)}."
            )

    # ---- the one finding that may be ignored ----------------------------------------------------
    notes, ignored = [], []
    for dep in ci.certificate_deployments:
        for pv in dep.path_validation_results:
            if not pv.was_validation_successful and pv.trust_store.name == "Supplied CA file":
                notes.append(f"sslyze could not verify the chain against the test CA: {pv.validation_error}")
    if "certificate_path_validation" in issues:
        leaf_ders = {
            d.received_certificate_chain[0].public_bytes(Encoding.DER) for d in ci.certificate_deployments
        }
        got, how = openssl_verifies(args.host, args.ip, port, ca, args.timeout)
        if got is not None and leaf_ders == {got}:
            ignored.append(
                f"certificate_path_validation: {issues.pop('certificate_path_validation')} "
                f"(private test CA; an OpenSSL client trusting only {ca} verified the same leaf "
                f"for {args.host}: {how})"
            )
        elif got is not None:
            why = "The leaf OpenSSL verified is not the one sslyze saw."
            issues["certificate_path_validation"] += f" {why}"
        else:
            why = f"An OpenSSL client trusting only the test CA failed too: {how}"
            issues["certificate_path_validation"] += f" {why}"

    for n in notes:
        print(f"    note     {n}")
    for i in ignored:
        print(f"    ignored  {i}")
    if issues:
        print(f"{PROG}: {where}: FAIL, outside Mozilla's intermediate profile:")
        for key, desc in sorted(issues.items()):
            print(f"    * {key}: {desc}")
        return 1, sorted(issues.items())
    print(f"{PROG}: {where}: OK, compliant with Mozilla's intermediate profile")
    return 0, []


def main():
    args, targets = parse_args()
    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    requests, by_uuid = [], {}
    for label, port, ca in targets:
        extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca))
        req = ServerScanRequest(
            server_location=ServerNetworkLocation(hostname=args.host, port=port, ip_address=args.ip),
            network_configuration=ServerNetworkConfiguration(
                tls_server_name_indication=args.host, network_timeout=args.timeout, network_max_retries=2
            ),
            scan_commands=set(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER),
            scan_commands_extra_arguments=extra,
        )
        requests.append(req)
        by_uuid[req.uuid] = label
    listing = ", ".join(f"{label}={port}" for label, port, _ in targets)
    print(f"{PROG}: sslyze {SSLYZE_VERSION}, Mozilla profile {profile_version()}: scanning {listing}")
    started = datetime.datetime.now(datetime.timezone.utc)
    scanner = Scanner(per_server_concurrent_connections_limit=5)
    scanner.queue_scans(requests)
    results = {by_uuid[r.uuid]: r for r in scanner.get_results()}

    if args.json_out:
        out = SslyzeOutputAsJson(
            server_scan_results=[ServerScanResultAsJson.model_validate(r) for r in results.values()],
            invalid_server_strings=[],
            date_scans_started=started,
            date_scans_completed=datetime.datetime.now(datetime.timezone.utc),
        )
        args.json_out.write_text(out.model_dump_json(indent=2))

    status, lines = 0, []
    for label, port, ca in targets:
        r = results.get(label)
        if r is None:
            print(f"{PROG}: {label}: sslyze returned no result")
            st, probs = 2, [("scan_error", "no result")]
        else:
            st, probs = check_one(label, port, ca, r, args, profile)
        status = max(status, st)
        lines += [f"{label} {k}" for k, _ in probs]
    if args.issues_out:
        args.issues_out.write_text("".join(f"{line}\n" for line in lines))
    return status


def profile_version():
    return json.loads(MozillaTlsConfiguration._JSON_PROFILE_PATH.read_text())["version"]


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # a crash is "could not scan" (2), never "not compliant" (1)
        import traceback

        traceback.print_exc()
        print(f"{PROG}: the scan crashed", file=sys.stderr)
        sys.exit(2)
