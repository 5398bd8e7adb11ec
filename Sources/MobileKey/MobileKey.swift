// MobileKey — the Keyway Mobile Key protocol, version 1 (docs/PROTOCOL.md):
//   CBOR (RFC 8949, deterministic encoder, strict bounded decoder) → COSE_Sign1 (RFC 9052, ES256)
//   → the credential (a CWT, RFC 8392, with cnf proof-of-possession key, RFC 8747) and its
//   issuer and verifier, revocation lists, lock certificates, site key directories;
//   plus the tap protocol (Tap*.swift).
// Pure value types: no clock, no I/O except SiteKeys (which reads and writes a key directory).
