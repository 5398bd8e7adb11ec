import Foundation
import KeywayCrypto
import MobileKey

/// verify_per_s: full credential verification (COSE parse, signature, claims, revocation, schedule)
/// on one core, against `openssl speed ecdsap256`'s raw verify rate measured now.
func benchVerify(_ report: BenchReport) async throws {
    let issuerKey = try P256.PrivateKey()
    let issuer = CredentialIssuer(siteID: "bench-site", key: issuerKey)
    let t0 = Date(timeIntervalSince1970: 1_790_000_000)
    let request = CredentialRequest(userID: "u-1", lockIDs: ["lock-1", "lock-2"], holderKey: try P256.PrivateKey().publicKey,
                                    validity: ValidityWindow(notBefore: t0, expires: t0 + 86_400),
                                    schedule: try WeeklySchedule(timeZone: "America/Los_Angeles", weekdays: [1, 2, 3, 4, 5, 6, 7], from: "00:00", to: "23:59"))
    let issued = try issuer.issue(request, issuedAt: t0)
    let verifier = Verifier(siteID: "bench-site", lockID: "lock-1", issuers: TrustedIssuers([issuerKey.publicKey]))
    let revocations = RevocationList.empty(siteID: "bench-site")
    let at = t0 + 3600
    guard verifier.verify(issued.bytes, at: at, revocations: revocations).isGranted else { throw BenchError("credential did not verify") }

    var n = 0
    let start = now()
    while now() - start < 3 {
        for _ in 0..<100 { if verifier.verify(issued.bytes, at: at, revocations: revocations).isGranted { n += 1 } }
    }
    let rate = Double(n) / (now() - start)

    // OpenSSL's own figure, same machine, same minute. `-mr` prints "+F4:idx:bits:sign/s:verify/s".
    let out = try run("/usr/bin/openssl", ["speed", "-seconds", "3", "-mr", "ecdsap256"])
    let line = out.split(separator: "\n").first { $0.hasPrefix("+F4:") }
    let fields = line?.split(separator: ":") ?? []
    let opensslVerify = fields.count >= 5 ? Double(fields[4]) : nil
    report.add("verify_per_s", rate, unit: "ops/s", baseline: opensslVerify, baselineWhat: "openssl speed ecdsap256 verify/s")
    if let opensslVerify {
        report.add("verify_vs_openssl", rate / opensslVerify, unit: "ratio", target: ">= 0.85", baseline: opensslVerify, baselineWhat: "openssl speed ecdsap256 verify/s")
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
