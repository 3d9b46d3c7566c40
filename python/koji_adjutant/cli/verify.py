"""``koji-adjutant verify RPM``: check an RPM against its buildArch task's provenance.

``--provenance`` defaults to ``provenance.intoto.json`` next to the RPM, ``--lock`` to
``buildroot_lock.json`` next to the provenance (when it exists). With ``--key`` (the PEM
public key of the builders' ``provenance_signing_key``) the signature must verify with it.

Exit status: 0 VERIFIED (every check passed and the key verified the signature), 1 REJECTED
(a check failed: the RPM is not a subject, the signature does not verify, the lockfile is not
the one the provenance records), 2 an input cannot be read, 3 UNAUTHENTICATED (nothing failed
but no key verified a signature). docs/provenance.md explains the checks.
"""

from __future__ import annotations

import argparse
import os
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "verify",
        help="check an RPM against its task's provenance, signature and lockfile",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("rpm", metavar="RPM", help="the RPM file to check")
    parser.add_argument(
        "--provenance", metavar="FILE", help="provenance.intoto.json (default: next to RPM)"
    )
    parser.add_argument(
        "--lock", metavar="FILE", help="buildroot_lock.json (default: next to the provenance)"
    )
    parser.add_argument(
        "--key", metavar="PUB", help="PEM public key the signature must verify with"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from koji_adjutant.provenance import LOCK_NAME, PROVENANCE_NAME
    from koji_adjutant.provenance.attestation import SigningError, load_public_key
    from koji_adjutant.provenance.verify import EXIT_ERROR, VerifyError, verify

    provenance = args.provenance or os.path.join(
        os.path.dirname(os.path.abspath(args.rpm)), PROVENANCE_NAME
    )
    lock = args.lock
    if lock is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(provenance)), LOCK_NAME)
        lock = beside if os.path.isfile(beside) else None
    try:
        key = load_public_key(args.key) if args.key else None
        verdict = verify(args.rpm, provenance, lock, key)
    except (SigningError, VerifyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for check in verdict.checks:
        print(check.line())
    print(f"{verdict.word}: {args.rpm}")
    return verdict.exit_code
