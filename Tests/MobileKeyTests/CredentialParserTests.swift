import BLE
import Foundation
import KeywayCrypto
import XCTest
@testable import MobileKey

/// `Credential(payload:)` reads claims straight from the bytes for speed. These tests hold it to a
/// plain tree-based reading of the same rules (written out below as the test oracle), on valid,
/// edited and randomly mutated payloads.
final class CredentialParserTests: XCTestCase {
    enum Outcome: Equatable {
        case ok(Credential)
        case malformed
        case missingProofKey
    }

    /// The oracle: decode the whole payload with `CBORDecoder`, then apply the claim rules of
    /// docs/PROTOCOL.md to the tree.
    static func reference(_ payload: [UInt8]) -> Outcome {
        guard let item = try? CBORDecoder(limits: Credential.payloadLimits).decode(payload), case .map(let m) = item else { return .malformed }
        func c(_ k: Int64) -> CBOR? { m[.int(k)] }
        guard let iss = c(1)?.textValue, !iss.isEmpty, let sub = c(2)?.textValue, !sub.isEmpty else { return .malformed }
        var aud: [String] = []
        switch c(3) {
        case .text(let s)?: aud = [s]
        case .array(let a)? where (1...64).contains(a.count):
            for x in a { guard let s = x.textValue else { return .malformed }; aud.append(s) }
        default: return .malformed
        }
        guard let exp = c(4)?.intValue, let nbf = c(5)?.intValue, nbf < exp else { return .malformed }
        var iat: Int64?
        if let v = c(6) { guard let i = v.intValue else { return .malformed }; iat = i }
        guard let cti = c(7)?.bytesValue, cti.count == 16 else { return .malformed }
        var office = false
        if let v = c(-65538) { guard let b = v.boolValue else { return .malformed }; office = b }
        guard let kt = c(-65539)?.textValue, let kind = CredentialKind(rawValue: kt) else { return .malformed }
        var schedule: WeeklySchedule?
        if let s = c(-65537) { guard let ws = try? WeeklySchedule(cbor: s) else { return .malformed }; schedule = ws }
        for k in m.keys { if let i = k.intValue, (-65599 ... -65537).contains(i), ![-65537, -65538, -65539].contains(i) { return .malformed } }
        guard let cnf = c(8) else { return .missingProofKey }
        guard case .map(let cm) = cnf else { return .malformed }
        guard let ck = cm[1] else { return .missingProofKey }
        guard let holder = try? COSEKey.publicKey(from: ck) else { return .malformed }
        return .ok(Credential(siteID: iss, userID: sub, lockIDs: aud, notBefore: Date(timeIntervalSince1970: TimeInterval(nbf)),
                              expires: Date(timeIntervalSince1970: TimeInterval(exp)), issuedAt: iat.map { Date(timeIntervalSince1970: TimeInterval($0)) },
                              keyID: cti, holderKey: holder, schedule: schedule, officeMode: office, kind: kind))
    }

    static func direct(_ payload: [UInt8]) -> Outcome {
        do { return .ok(try Credential(payload: payload)) } catch {
            return error == .missingProofKey ? .missingProofKey : .malformed
        }
    }

    func payload() throws -> [UInt8] {
        let s = try WeeklySchedule(timeZone: "Europe/Berlin", weekdays: [1, 3, 5], from: "07:30", to: "22:00")
        return try MKTest.issue(MKTest.request(locks: ["a", "front-door", "c"], schedule: s, officeMode: true)).credential.claims.encoded()
    }

    func testAgreesOnEditedClaims() throws {
        let base = try CBORDecoder().decode(try payload()).mapValue!
        let edits: [(String, (inout [CBOR: CBOR]) -> Void)] = [
            ("none", { _ in }),
            ("no cnf", { $0[8] = nil }),
            ("cnf kid only", { $0[8] = [3: .bytes([1])] }),
            ("cnf not map", { $0[8] = 5 }),
            ("cnf key with d", { m in var k = m[8]![1]!.mapValue!; k[-4] = .bytes([1]); m[8] = [1: .map(k)] }),
            ("cnf key extra label", { m in var k = m[8]![1]!.mapValue!; k[2] = .bytes([7]); m[8] = [1: .map(k), 9: "x"] }),
            ("cnf x text", { m in var k = m[8]![1]!.mapValue!; k[-2] = "x"; m[8] = [1: .map(k)] }),
            ("cnf kty text", { m in var k = m[8]![1]!.mapValue!; k[1] = "EC2"; m[8] = [1: .map(k)] }),
            ("aud text", { $0[3] = "front-door" }),
            ("aud empty", { $0[3] = [] }),
            ("aud int", { $0[3] = [1] }),
            ("exp huge", { $0[4] = .unsigned(UInt64.max) }),
            ("iat text", { $0[6] = "x" }),
            ("no iat", { $0[6] = nil }),
            ("office null", { $0[-65538] = .null }),
            ("no office", { $0[-65538] = nil }),
            ("kind wearable", { $0[-65539] = "wearable" }),
            ("schedule bad tz", { $0[-65537] = ["Nowhere", []] }),
            ("schedule big minute", { $0[-65537] = ["UTC", [[1, 0, .unsigned(UInt64.max)]]] }),
            ("schedule 4-tuple", { $0[-65537] = ["UTC", [[1, 0, 10, 1]]] }),
            ("text key", { $0["note"] = [1: [2: .tagged(1, 3)]] }),
            ("big unsigned key", { $0[.unsigned(UInt64.max)] = 1 }),
            ("unknown keyway claim", { $0[-65540] = true }),
            ("private claim outside block", { $0[-65600] = true }),
        ]
        for (name, edit) in edits {
            var m = base
            edit(&m)
            let bytes = CBOR.map(m).encoded()
            XCTAssertEqual(Self.direct(bytes), Self.reference(bytes), name)
        }
    }

    func testAgreesOnMutatedPayloads() throws {
        var rng = SplitMix64(seed: 0x636c_6169_6d73)
        let seed = try payload()
        var outcomes: [String: Int] = [:]
        for _ in 0..<20_000 {
            var input = seed
            switch rng.next() % 4 {
            case 0: // flip bytes
                for _ in 0..<(1 + Int(rng.next() % 3)) { input[Int(rng.next() % UInt64(input.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            case 1: // truncate
                input = Array(input.prefix(Int(rng.next() % UInt64(input.count))))
            case 2: // insert a byte
                input.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(input.count)))
            default: // delete a byte
                input.remove(at: Int(rng.next() % UInt64(input.count)))
            }
            let d = Self.direct(input), r = Self.reference(input)
            XCTAssertEqual(d, r, Hex.encode(input))
            if d != r { break }
            switch d {
            case .ok: outcomes["ok", default: 0] += 1
            case .malformed: outcomes["malformed", default: 0] += 1
            case .missingProofKey: outcomes["missingProofKey", default: 0] += 1
            }
        }
        // The mutations must exercise both acceptance and each kind of refusal.
        XCTAssertGreaterThan(outcomes["ok", default: 0], 0, "\(outcomes)")
        XCTAssertGreaterThan(outcomes["malformed", default: 0], 0, "\(outcomes)")
        XCTAssertGreaterThan(outcomes["missingProofKey", default: 0], 0, "\(outcomes)")
    }

    func testOversizedPayloadRefusedUpFront() {
        XCTAssertEqual(Self.direct([UInt8](repeating: 0xa0, count: Credential.payloadLimits.maxBytes + 1)), .malformed)
        XCTAssertEqual(Self.direct([0xbb] + [UInt8](repeating: 0xff, count: 8)), .malformed)
    }
}
