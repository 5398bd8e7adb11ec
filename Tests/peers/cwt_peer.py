#!/usr/bin/env python3
"""Independent peer for Keyway credentials (python-cwt / pycose), spawned by the Swift tests.

  cwt_peer.py verify --pub ISSUER.pub.pem (--hex HEX | --file FILE)
      Verifies the COSE_Sign1 signature with python-cwt using the site public key (kid derived
      as in docs/PROTOCOL.md) and prints every claim as JSON. Exit 0 on success, 1 (with
      {"error": ...}) when python-cwt rejects it. No validity-time check: Keyway's times are fixed.

  cwt_peer.py check --pub ISSUER.pub.pem (--hex HEX | --file FILE) --site S --lock L --at UNIX
                    [--revoked CTIHEX ...] [--skew 60]
      Runs the full Keyway verification, implemented independently in cwt_keyway.py (pycose for
      the signature), and prints {"verdict": "granted", "claims": {...}} or
      {"verdict": "denied", "reason": "..."}.

  cwt_peer.py mint --key ISSUER.key.pem --site S --user U --lock L [--lock L ...] --nbf N --exp N
                   [--iat N] --holder-pub PHONE.pub.pem [--cti HEX] [--office-mode] [--kind mobile]
                   [--tz ZONE --window D,START,END ...] [--kid-unprotected]
      Mints a credential with python-cwt and the site's PKCS#8 key and prints its hex.

  cwt_peer.py kid --pub KEY.pub.pem       prints the derived key id (hex).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cbor2  # noqa: E402
import cwt_keyway as kw  # noqa: E402


def read_credential(args) -> bytes:
    if args.hex is not None:
        return bytes.fromhex(args.hex)
    with open(args.file, "rb") as f:
        return f.read()


def cmd_verify(args) -> int:
    import cwt
    from cwt import COSEKey

    pem = open(args.pub, "rb").read()
    kid = kw.kid_of(kw.load_public_pem(pem))
    key = COSEKey.from_pem(pem, kid=kid)
    data = read_credential(args)
    try:
        # no_verify skips only python-cwt's exp/nbf check against the wall clock; the signature
        # (and kid match) are verified.
        claims = cwt.decode(data, key, no_verify=True)
    except Exception as e:  # python-cwt raises several types
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    obj = cbor2.loads(data)
    if isinstance(obj, cbor2.CBORTag) and obj.tag == 61:
        obj = obj.value
    protected = cbor2.loads(obj.value[0])
    unprotected = obj.value[1]
    try:
        cred = kw.parse_claims(claims)
    except kw.Denied as e:
        print(json.dumps({"error": str(e)}))
        return 1
    out = cred.to_json()
    out["kid"] = (protected.get(4) or unprotected.get(4) or b"").hex()
    out["protected"] = {str(k): (v.hex() if isinstance(v, bytes) else v) for k, v in protected.items()}
    out["claim_keys"] = sorted(k for k in claims)
    print(json.dumps(out, sort_keys=True))
    return 0


def cmd_check(args) -> int:
    pem = open(args.pub, "rb").read()
    pub = kw.load_public_pem(pem)
    issuers = {kw.kid_of(pub): pub}
    revoked = {bytes.fromhex(r) for r in args.revoked}
    try:
        cred = kw.verify(read_credential(args), issuers, args.site, args.lock, args.at, revoked, args.skew)
    except kw.Denied as e:
        print(json.dumps({"verdict": "denied", "reason": e.reason, "detail": str(e)}))
        return 0
    print(json.dumps({"verdict": "granted", "claims": cred.to_json()}, sort_keys=True))
    return 0


def cmd_mint(args) -> int:
    issuer_pem = open(args.key, "rb").read()
    holder = kw.load_public_pem(open(args.holder_pub, "rb").read())
    claims = {
        kw.ISS: args.site,
        kw.SUB: args.user,
        kw.AUD: args.lock,
        kw.EXP: args.exp,
        kw.NBF: args.nbf,
        kw.CTI: bytes.fromhex(args.cti) if args.cti else os.urandom(16),
        kw.CNF: {1: kw.cose_key(holder)},
        kw.OFFICE_MODE: args.office_mode,
        kw.KIND: args.kind,
    }
    if args.iat is not None:
        claims[kw.IAT] = args.iat
    if args.tz:
        windows = [[int(v) for v in w.split(",")] for w in args.window]
        claims[kw.SCHEDULE] = [args.tz, windows]
    print(kw.mint(issuer_pem, claims, kid_in_unprotected=args.kid_unprotected).hex())
    return 0


def cmd_kid(args) -> int:
    print(kw.kid_of(kw.load_public_pem(open(args.pub, "rb").read())).hex())
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def source(sp):
        g = sp.add_mutually_exclusive_group(required=True)
        g.add_argument("--hex")
        g.add_argument("--file")

    v = sub.add_parser("verify")
    v.add_argument("--pub", required=True)
    source(v)
    v.set_defaults(fn=cmd_verify)

    c = sub.add_parser("check")
    c.add_argument("--pub", required=True)
    source(c)
    c.add_argument("--site", required=True)
    c.add_argument("--lock", required=True)
    c.add_argument("--at", type=int, required=True)
    c.add_argument("--revoked", action="append", default=[])
    c.add_argument("--skew", type=int, default=60)
    c.set_defaults(fn=cmd_check)

    m = sub.add_parser("mint")
    m.add_argument("--key", required=True)
    m.add_argument("--site", required=True)
    m.add_argument("--user", required=True)
    m.add_argument("--lock", action="append", required=True)
    m.add_argument("--nbf", type=int, required=True)
    m.add_argument("--exp", type=int, required=True)
    m.add_argument("--iat", type=int)
    m.add_argument("--holder-pub", required=True)
    m.add_argument("--cti")
    m.add_argument("--office-mode", action="store_true")
    m.add_argument("--kind", default="mobile")
    m.add_argument("--tz")
    m.add_argument("--window", action="append", default=[])
    m.add_argument("--kid-unprotected", action="store_true")
    m.set_defaults(fn=cmd_mint)

    k = sub.add_parser("kid")
    k.add_argument("--pub", required=True)
    k.set_defaults(fn=cmd_kid)

    args = p.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
