import Foundation
import XCTest
@testable import Emulator
import KeywayAPI
import Events
import Hardware
import MobileKey

/// Whole taps through the emulator: built-in phone → loopback link → GATT server → tap protocol →
/// lock → journal, with a btsnoop capture decoded by tshark.
final class LoopbackTapTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var dir: URL!
    var emu: Emulator!

    override func setUp() async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-emu-\(UUID().uuidString)")
        var o = EmulatorOptions(sitePath: Self.root.appendingPathComponent("Fixtures/sites/coworking.yaml").path)
        o.dataDir = dir.path
        o.clock = .simulated
        o.clockStart = Date(timeIntervalSince1970: 1_795_420_800) // 2026-11-23T08:00:00Z (Monday)
        o.capturePath = dir.appendingPathComponent("tap.btsnoop").path
        emu = try await Emulator.start(o)
    }

    override func tearDown() async throws {
        await emu?.shutdown()
        try? FileManager.default.removeItem(at: dir)
    }


    func issue(_ obj: [String: Any]) async throws -> [String: Any] {
        try await emu.issueKey(json: obj)
    }

    func tap(_ obj: [String: Any]) async throws -> [String: Any] {
        try await emu.tap(json: obj)
    }

    func testGrantedTapUnlocksRelocksAndIsJournaled() async throws {
        _ = try await issue(["user": "u-ada", "locks": ["main-entrance"]])
        let r = try await tap(["lock": "main-entrance", "user": "u-ada"])
        XCTAssertEqual(r["result"] as? String, "granted")
        XCTAssertEqual(r["phone_verified_result"] as? Bool, true, "the phone authenticated the lock's result")
        let eventID = try XCTUnwrap(r["event_id"] as? String)
        let state = try await emu.lockJSON(id: "main-entrance")["state"] as? String
        XCTAssertEqual(state, "unlocked")
        let openMs = try XCTUnwrap(r["open_ms"] as? Int)
        _ = try await emu.advanceClock(.init(seconds: Double(openMs) / 1000 + 1))
        let after = try await emu.lockJSON(id: "main-entrance")["state"] as? String
        XCTAssertEqual(after, "locked")
        let recorded = try await emu.journal.event(id: eventID)
        XCTAssertEqual(recorded?.type, .accessGranted)
        XCTAssertEqual(recorded?.event.user, "u-ada")
        XCTAssertEqual(recorded?.event.method, .mobile)
    }

    func testDenialsOverTheRadioCarryTheirReasons() async throws {
        _ = try await issue(["user": "u-ada", "locks": ["main-entrance"]])
        // A lock the key is not for: the (conformant, protocol v2) built-in phone refuses it before
        // revealing anything, so the lock decides and records nothing.
        var r = try await tap(["lock": "room-dolores", "user": "u-ada"])
        XCTAssertEqual(r["result"] as? String, "phone_refused")
        XCTAssertEqual(r["reason"] as? String, "lock_not_in_credential")
        XCTAssertNil(r["event_id"] as? String)
        // The lock's own `wrong_lock` is reached by a non-conformant phone (not exposed by the API yet).
        let ada = try XCTUnwrap(try emu.store.keys(user: "u-ada").first)
        let d = try await emu.tapWithKey(ada.keyID, lock: "room-dolores", phone: .nonConformant)
        XCTAssertEqual(d.reason?.rawValue, "wrong_lock")

        // A key issued to an external phone: the built-in phone cannot prove possession.
        let external = try await issue(["user": "u-grace", "locks": ["main-entrance"], "holder_public_key": try P256Helper.publicPEM()])
        r = try await tap(["lock": "main-entrance", "key_id": external["key_id"] as! String])
        XCTAssertEqual(r["reason"] as? String, "proof_of_possession_failed")

        // Not yet valid.
        let later = try await issue(["user": "u-linus", "locks": ["main-entrance"], "not_before": "2026-11-24T08:00:00Z"])
        r = try await tap(["lock": "main-entrance", "key_id": later["key_id"] as! String])
        XCTAssertEqual(r["reason"] as? String, "not_yet_valid")
    }

    func testRevocationReachesTheLockOnlyThroughAnIQ() async throws {
        let k = try await issue(["user": "u-ada", "locks": ["main-entrance"]])
        let id = k["key_id"] as! String
        let revoked = try await emu.revokeKey(id)
        XCTAssertEqual(revoked.revocationListVersion, 1)
        // Until an IQ syncs, the lock still holds list version 0 and grants.
        var r = try await tap(["lock": "main-entrance", "key_id": id])
        XCTAssertEqual(r["result"] as? String, "granted")
        _ = try await emu.iqSync("iq-lobby")
        r = try await tap(["lock": "main-entrance", "key_id": id])
        XCTAssertEqual(r["reason"] as? String, "revoked")
        let lock = try await emu.lockJSON(id: "main-entrance")
        XCTAssertEqual(lock["revocation_list_version"] as? Int, 1)
    }

    func testOutOfReachPhoneGetsNoTapAndBadInputIsNamed() async throws {
        _ = try await issue(["user": "u-ada", "locks": ["main-entrance"]])
        do {
            _ = try await tap(["lock": "main-entrance", "user": "u-ada", "distance_m": 2.5])
            XCTFail("a phone 2.5 m away tapped")
        } catch let e as APIError {
            XCTAssertEqual(e.status, 422)
            XCTAssertEqual(e.code, "out_of_reach")
        }
        do { _ = try await tap(["lock": "main-entrance", "user": "u-nobody"]); XCTFail() } catch let e as APIError {
            XCTAssertEqual(e.code, "no_key")
        }
        XCTAssertThrowsError(try Emulator.request(["lock": "x", "user": "u-ada", "colour": "red"], as: Components.Schemas.TapRequest.self)) {
            XCTAssertEqual(($0 as? APIError)?.field, "colour")
            XCTAssertEqual(($0 as? APIError)?.message, "unknown field")
        }
    }

    func testCaptureDecodesInTshark() async throws {
        _ = try await issue(["user": "u-ada", "locks": ["main-entrance"]])
        _ = try await tap(["lock": "main-entrance", "user": "u-ada"])
        emu.radio.close()
        let tshark = "/usr/bin/tshark"
        guard FileManager.default.isExecutableFile(atPath: tshark) else { throw XCTSkip("tshark not installed (tools/setup installs it)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tshark)
        p.arguments = ["-r", dir.appendingPathComponent("tap.btsnoop").path, "-Y", "btatt", "-T", "fields", "-e", "btatt.opcode"]
        let out = Pipe(); p.standardOutput = out; p.standardError = Pipe()
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let opcodes = Set(text.split(separator: "\n").map { String($0) })
        // MTU exchange, discovery (by service UUID, characteristics), read of the hello, write of the presentation, notification.
        for op in ["0x02", "0x03", "0x06", "0x07", "0x08", "0x09", "0x0a", "0x0b", "0x12", "0x13", "0x1b"] {
            XCTAssertTrue(opcodes.contains(op), "tshark did not decode ATT opcode \(op): \(opcodes.sorted())")
        }
    }

    func testResetRestoresTheSiteAndHidesEarlierEvents() async throws {
        _ = try await issue(["user": "u-ada", "locks": ["main-entrance"]])
        _ = try await tap(["lock": "main-entrance", "user": "u-ada"])
        _ = try await emu.reset()
        let state = try await emu.lockJSON(id: "main-entrance")["state"] as? String
        XCTAssertEqual(state, "locked")
        XCTAssertTrue(try emu.listKeys(user: nil).isEmpty)
        let events = try await emu.events(types: [], lock: nil, since: nil, after: nil, limit: 100, all: false)
        XCTAssertTrue(events.isEmpty, "\(events.count) events after reset")
        let all = try await emu.events(types: [], lock: nil, since: nil, after: nil, limit: 100, all: true)
        XCTAssertFalse(all.isEmpty, "the journal keeps everything")
    }
}

enum P256Helper {
    static func publicPEM() throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        let out = Pipe(); p.standardOutput = out
        try p.run()
        let key = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let q = Process()
        q.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        q.arguments = ["pkey", "-pubout"]
        let inp = Pipe(), out2 = Pipe(); q.standardInput = inp; q.standardOutput = out2
        try q.run()
        inp.fileHandleForWriting.write(key); try inp.fileHandleForWriting.close()
        let pub = out2.fileHandleForReading.readDataToEndOfFile()
        q.waitUntilExit()
        return String(decoding: pub, as: UTF8.self)
    }
}
