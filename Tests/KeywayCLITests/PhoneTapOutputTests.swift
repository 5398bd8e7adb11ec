import Foundation
@testable import keyway
import XCTest

/// `keyway phone tap --json`: one line, keys sorted, `reason` null when granted — tools/hil/guest-tests
/// greps it (`"reason":"revoked"`, `"timing_ms":{…}`).
final class PhoneTapOutputTests: XCTestCase {
    func testJSONLine() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let timing = PhoneCommand.Tap.TapAnswer.Timing(connect: 12.5, setup: 3.25, tap: 40.125, total: 56)
        let granted = PhoneCommand.Tap.TapAnswer(result: "granted", reason: nil, action: "open", address: "AA:BB:CC:DD:EE:FF",
                                                 mode: "fast", fastFallback: nil, security: "encrypted", mtu: 247, openMS: 5000, timing: timing)
        XCTAssertEqual(String(decoding: try encoder.encode(granted), as: UTF8.self),
                       #"{"action":"open","address":"AA:BB:CC:DD:EE:FF","fast_fallback":null,"mode":"fast","mtu":247,"open_ms":5000,"reason":null,"#
                       + #""result":"granted","#
                       + #""security":"encrypted","timing_ms":{"connect":12.5,"setup":3.25,"tap":40.125,"total":56}}"#)
        let denied = PhoneCommand.Tap.TapAnswer(result: "denied", reason: "revoked", action: "open", address: "x", mode: "full",
                                                fastFallback: "fast_key_unknown", security: "none",
                                                mtu: 23, openMS: 0, timing: timing)
        let line = String(decoding: try encoder.encode(denied), as: UTF8.self)
        XCTAssertTrue(line.contains(#""reason":"revoked""#))
        XCTAssertTrue(line.contains(#""fast_fallback":"fast_key_unknown","mode":"full""#), line)
    }
}
