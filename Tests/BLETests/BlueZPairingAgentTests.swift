import XCTest
@testable import BLE

/// The pairing agent's decisions and the management-channel codec (BlueZ doc/mgmt-api.txt).
final class BlueZPairingAgentTests: XCTestCase {
    // 00:AA:01:01:00:01, LE public, least significant byte first as on the wire.
    let addressInfo: [UInt8] = [0x01, 0x00, 0x01, 0x01, 0xAA, 0x00, 0x01]

    func testJustWorksIsConfirmed() throws {
        let event = MGMTPacket(code: 0x000F, index: 0, parameters: addressInfo + [0x01, 0, 0, 0, 0])
        let (reply, decision) = try XCTUnwrap(BlueZPairingPolicy.reply(to: event, index: 0))
        XCTAssertEqual(reply.encoded(), [0x1C, 0x00, 0x00, 0x00, 0x07, 0x00] + addressInfo)
        XCTAssertEqual(decision, BlueZPairingDecision(peer: try BlueZAddress("00:AA:01:01:00:01"), kind: .acceptedJustWorks))
    }

    func testNumericComparisonAndPasskeyAreRefused() throws {
        let compare = MGMTPacket(code: 0x000F, index: 2, parameters: addressInfo + [0x00, 0x40, 0xE2, 0x01, 0x00])
        let (no, why) = try XCTUnwrap(BlueZPairingPolicy.reply(to: compare, index: 2))
        XCTAssertEqual(no.code, 0x001D)
        XCTAssertEqual(no.index, 2)
        XCTAssertEqual(why.kind, .refusedNumericComparison)
        let passkey = MGMTPacket(code: 0x0010, index: 2, parameters: addressInfo)
        let (noKey, whyKey) = try XCTUnwrap(BlueZPairingPolicy.reply(to: passkey, index: 2))
        XCTAssertEqual(noKey.code, 0x001F)
        XCTAssertEqual(noKey.parameters, addressInfo)
        XCTAssertEqual(whyKey.kind, .refusedPasskey)
    }

    func testOtherAdaptersAndMalformedEventsAreIgnored() {
        let event = MGMTPacket(code: 0x000F, index: 1, parameters: addressInfo + [0x01, 0, 0, 0, 0])
        XCTAssertNil(BlueZPairingPolicy.reply(to: event, index: 0))
        XCTAssertNil(BlueZPairingPolicy.reply(to: MGMTPacket(code: 0x000F, index: 0, parameters: [1, 2, 3]), index: 0))
        // Address type 0 is BR/EDR: not ours.
        XCTAssertNil(BlueZPairingPolicy.reply(to: MGMTPacket(code: 0x000F, index: 0,
                                                             parameters: [1, 0, 1, 1, 0xAA, 0, 0x00, 1, 0, 0, 0, 0]), index: 0))
        XCTAssertNil(BlueZPairingPolicy.reply(to: MGMTPacket(code: 0x0006, index: 0, parameters: []), index: 0))
    }

    func testPacketCodecIsBounded() throws {
        let packet = MGMTPacket(code: 0x000F, index: 0x0102, parameters: [9, 8, 7])
        XCTAssertEqual(try MGMTPacket.decode(packet.encoded()), packet)
        XCTAssertThrowsError(try MGMTPacket.decode([0x0F, 0x00, 0x00]))
        XCTAssertThrowsError(try MGMTPacket.decode([0x0F, 0x00, 0x00, 0x00, 0xFF, 0xFF, 1, 2]))
        for n in 0..<packet.encoded().count { _ = try? MGMTPacket.decode(Array(packet.encoded().prefix(n))) }
    }

    func testAgentOnAKernelWithoutBluetooth() throws {
        if BlueZAdapterInfo.kernelSupportsBluetooth { throw XCTSkip("this kernel has Bluetooth") }
        XCTAssertThrowsError(try BlueZPairingAgent(adapter: BlueZAdvertiserTests.adapter)) {
            XCTAssertEqual($0 as? BlueZError, .bluetoothUnavailable)
        }
    }
}
