import XCTest
import Foundation
@testable import BLE
#if canImport(Glibc)
import Glibc
#endif

/// The advertiser against a scripted controller on a SOCK_SEQPACKET pair (H4 packets, as on a raw HCI
/// socket). BlueZ's virtual controllers run in `make hil`, but they accept legacy advertising commands
/// after extended ones — real Bluetooth 5 controllers refuse them (Core Vol 4 Part E §3.1.1), which is
/// the behaviour scripted here. The bytes on the wire are the real ones; only the controller is played.
final class BlueZAdvertiserTests: XCTestCase {
    /// A controller that answers every command with Command Complete and the status `answer` gives.
    final class ScriptedController: @unchecked Sendable {
        let fd: Int32
        private let lock = NSLock()
        private var seen: [(opcode: UInt16, parameters: [UInt8])] = []
        private let answer: @Sendable (UInt16, [UInt8]) -> [UInt8]?
        private let done = DispatchSemaphore(value: 0)

        init(fd: Int32, answer: @escaping @Sendable (UInt16, [UInt8]) -> [UInt8]?) {
            self.fd = fd
            self.answer = answer
            Thread.detachNewThread { [self] in run() }
        }

        private func run() {
            var buffer = [UInt8](repeating: 0, count: 300)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard n >= 4, buffer[0] == 0x01 else { break }
                let opcode = UInt16(buffer[1]) | UInt16(buffer[2]) << 8
                let parameters = Array(buffer[4..<n])
                lock.withLock { seen.append((opcode, parameters)) }
                if let returned = answer(opcode, parameters) {
                    send([0x0E, UInt8(3 + returned.count), 0x01, buffer[1], buffer[2]] + returned)
                }
            }
            done.signal()
        }

        /// Writes one HCI event (code, length, parameters) as the controller.
        func send(_ eventWithoutIndicator: [UInt8]) {
            let packet = [UInt8(0x04)] + eventWithoutIndicator
            _ = packet.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }

        var opcodes: [UInt16] { lock.withLock { seen.map(\.opcode) } }
        func parameters(of opcode: UInt16) -> [[UInt8]] { lock.withLock { seen.filter { $0.opcode == opcode }.map(\.parameters) } }

        func stop() {
            shutdown(fd, Int32(SHUT_RDWR))
            done.wait()
            close(fd)
        }
    }

    static let adapter = BlueZAdapterInfo(name: "hci0", index: 0, address: .any, isUp: true)
    static let payload = try! LEAdvertisingPayload.lock(serviceUUID: KeywayLockService.service, name: "Front Door")

    func makePair(timeout: Duration = .seconds(2),
                  answer: @escaping @Sendable (UInt16, [UInt8]) -> [UInt8]?) -> (BlueZAdvertiser, ScriptedController) {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds), 0)
        let controller = ScriptedController(fd: fds[1], answer: answer)
        return (BlueZAdvertiser(controllerDescriptor: fds[0], adapter: Self.adapter, commandTimeout: timeout), controller)
    }

    /// A Bluetooth 5 controller after extended advertising was used: legacy commands → Command Disallowed.
    static func bluetooth5AfterExtended(extendedSupported: Bool) -> @Sendable (UInt16, [UInt8]) -> [UInt8]? {
        { opcode, _ in
            switch opcode {
            case 0x2006, 0x2008, 0x2009, 0x200A: return [0x0C]
            case 0x2003: return [0x00, 0x00, extendedSupported ? 0x10 : 0x00, 0, 0, 0, 0, 0, 0]
            case 0x2036: return [0x00, 0x00]            // status, selected TX power
            default: return [0x00]
            }
        }
    }

    func testAutomaticModeFallsBackToAnExtendedSetWithLegacyPDUs() async throws {
        let (advertiser, controller) = makePair(answer: Self.bluetooth5AfterExtended(extendedSupported: true))
        defer { controller.stop() }
        let mode = try await advertiser.start(Self.payload)
        XCTAssertEqual(mode, .extended)
        let active = await advertiser.activeMode
        XCTAssertEqual(active, .extended)
        XCTAssertEqual(controller.opcodes, [0x200A, 0x2006, 0x2003, 0x2039, 0x2036, 0x2037, 0x2038, 0x2039])
        let properties = try XCTUnwrap(controller.parameters(of: 0x2036).first)
        XCTAssertEqual(Array(properties[0...2]), [BlueZAdvertiser.extendedSetHandle, 0x13, 0x00])  // legacy PDUs, ADV_IND
        let data = try XCTUnwrap(controller.parameters(of: 0x2037).first)
        XCTAssertEqual(Array(data.dropFirst(4)), Self.payload.advertisingData)
        XCTAssertEqual(controller.parameters(of: 0x2039).last, [1, 1, BlueZAdvertiser.extendedSetHandle, 0, 0, 0])
        await advertiser.close()
        XCTAssertEqual(controller.parameters(of: 0x2039).last, [0, 1, BlueZAdvertiser.extendedSetHandle, 0, 0, 0])
        XCTAssertEqual(controller.opcodes.last, 0x203C)                       // set removed
    }

    func testLegacyModeReportsTheRefusalClearly() async throws {
        let (advertiser, controller) = makePair(answer: Self.bluetooth5AfterExtended(extendedSupported: true))
        defer { controller.stop() }
        do {
            try await advertiser.start(Self.payload, mode: .legacy)
            XCTFail("legacy advertising started on a controller that refuses it")
        } catch {
            XCTAssertEqual(error as? BlueZError, .legacyAdvertisingDisallowed(adapter: "hci0"))
            XCTAssertTrue(String(describing: error).contains("power off"))
        }
        let active = await advertiser.activeMode
        XCTAssertNil(active)
        XCTAssertFalse(controller.opcodes.contains(0x2036), "legacy mode must not switch command sets")
    }

    func testCommandDisallowedWithoutExtendedSupportIsAPlainRejection() async throws {
        let (advertiser, controller) = makePair(answer: Self.bluetooth5AfterExtended(extendedSupported: false))
        defer { controller.stop() }
        do {
            try await advertiser.start(Self.payload)
            XCTFail("started")
        } catch {
            XCTAssertEqual(error as? BlueZError, .advertisingRejected(command: "LE Set Advertising Parameters", status: 0x0C))
        }
    }

    func testOtherRejectionsNameTheCommandAndStatus() async throws {
        let (advertiser, controller) = makePair { opcode, _ in opcode == 0x2008 ? [0x12] : [0x00] }
        defer { controller.stop() }
        do {
            try await advertiser.start(Self.payload)
            XCTFail("started")
        } catch {
            XCTAssertEqual(error as? BlueZError, .advertisingRejected(command: "LE Set Advertising Data", status: 0x12))
            XCTAssertTrue(String(describing: error).contains("Invalid HCI Command Parameters"))
        }
    }

    func testASilentControllerTimesOut() async throws {
        let (advertiser, controller) = makePair(timeout: .milliseconds(10)) { _, _ in nil }
        defer { controller.stop() }
        do {
            try await advertiser.start(Self.payload)
            XCTFail("started")
        } catch {
            XCTAssertEqual(error as? BlueZError, .hciCommandTimeout(command: "LE Set Advertising Enable"))
        }
    }

    func testAdvertisingRestartsAfterThePhoneDisconnects() async throws {
        let (advertiser, controller) = makePair { _, _ in [0x00] }
        defer { controller.stop() }
        let restarted = expectation(description: "restart")
        await advertiser.onRestart { result in
            if case .success(1) = result { restarted.fulfill() }
        }
        let mode = try await advertiser.start(Self.payload)
        XCTAssertEqual(mode, .legacy)
        XCTAssertEqual(controller.opcodes, [0x200A, 0x2006, 0x2008, 0x2009, 0x200A])
        // Events the advertiser must ignore: a Command Complete nobody waits for, an unknown event,
        // a central-role connection.
        controller.send([0x0E, 0x04, 0x01, 0x03, 0x0C, 0x00])
        controller.send([0x13, 0x01, 0x00])
        controller.send([0x3E, 0x13, 0x01, 0x00, 0x41, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 0x28, 0, 0, 0, 0xD0, 0x07, 0])
        // A phone connects (we are peripheral, handle 0x0040) and leaves.
        controller.send([0x3E, 0x13, 0x01, 0x00, 0x40, 0x00, 0x01, 0x00, 1, 2, 3, 4, 5, 6, 0x28, 0, 0, 0, 0xD0, 0x07, 0])
        controller.send([0x05, 0x04, 0x00, 0x40, 0x00, 0x13])
        await fulfillment(of: [restarted], timeout: 5)
        XCTAssertEqual(controller.parameters(of: 0x200A).last, [0x01])
        XCTAssertEqual(controller.opcodes.filter { $0 == 0x2008 }.count, 2, "advertising data set again")
        let handles = await advertiser.connectedHandles
        XCTAssertTrue(handles.isEmpty)
        // A disconnection of a link that was not ours does not restart anything.
        controller.send([0x05, 0x04, 0x00, 0x41, 0x00, 0x13])
        try await advertiser.stop()
        XCTAssertEqual(controller.parameters(of: 0x200A).last, [0x00])
        let count = await advertiser.restartCount
        XCTAssertEqual(count, 1)
    }
}
