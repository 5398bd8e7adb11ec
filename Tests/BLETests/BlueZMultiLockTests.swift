import XCTest
import Synchronization
@testable import BLE
#if canImport(Glibc)
import Glibc
#endif

/// Several locks on one adapter (issue 15 item 1): the HCI bytes of advertising sets and random
/// addresses, how locks share the slots, and the connection → lock mapping from the controller's
/// events — including the refusal when the events do not name one lock.
final class BlueZMultiLockTests: XCTestCase {
    static let a0 = LEStaticRandomAddress(bytes: [0xC1, 0x02, 0x03, 0x04, 0x05, 0x06])!

    // MARK: HCI bytes (Core 5.4 Vol 4 Part E §7.8.4, §7.8.52, §7.8.58, §7.7.65.18)

    func testAdvertisingSetCommandsEncoding() {
        XCTAssertEqual(HCICommand.leReadNumberOfSupportedAdvertisingSets().encoded(), [0x01, 0x3B, 0x20, 0x00])
        XCTAssertEqual(HCICommand.leSetAdvertisingSetRandomAddress(handle: 0x0B, Self.a0).encoded(),
                       [0x01, 0x35, 0x20, 0x07, 0x0B, 0x06, 0x05, 0x04, 0x03, 0x02, 0xC1])  // address little-endian
        XCTAssertEqual(HCICommand.leSetRandomAddress(Self.a0).encoded(),
                       [0x01, 0x05, 0x20, 0x06, 0x06, 0x05, 0x04, 0x03, 0x02, 0xC1])
        let p = LEAdvertisingParameters(ownAddressType: .random)
        XCTAssertEqual(HCICommand.leSetExtendedAdvertisingParameters(handle: 0x0C, p).parameters[10], 0x01)  // own address: random
        XCTAssertEqual(HCICommand.leSetAdvertisingParameters(p).parameters[5], 0x01)
    }

    func testAdvertisingSetTerminatedDecoding() throws {
        XCTAssertEqual(try HCIEvent.decode([0x04, 0x3E, 0x06, 0x12, 0x00, 0x0B, 0x41, 0x20, 0x03]),
                       .leAdvertisingSetTerminated(status: 0, advertisingHandle: 0x0B, connectionHandle: 0x0041,
                                                   completedEvents: 3))   // flag bits of the handle dropped
        XCTAssertThrowsError(try HCIEvent.decode([0x04, 0x3E, 0x03, 0x12, 0x00, 0x0B])) {
            XCTAssertEqual($0 as? HCIDecodingError, .truncated(what: "LE Advertising Set Terminated", need: 6, have: 3))
        }
    }

    // MARK: Static random addresses (Core Vol 6 Part B §1.3.2.1)

    func testStaticRandomAddressesAreValidStableAndDistinct() throws {
        XCTAssertNil(LEStaticRandomAddress(bytes: [0x41, 0, 0, 0, 0, 1]))          // top bits not 11
        XCTAssertNil(LEStaticRandomAddress(bytes: [0xC0, 0, 0, 0, 0, 0]))          // random part all 0
        XCTAssertNil(LEStaticRandomAddress(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))  // all 1
        XCTAssertNil(LEStaticRandomAddress(bytes: [0xC1, 0, 0]))
        let ids = (0..<300).map { "coworking/lock-\($0)" }
        let addresses = LEStaticRandomAddress.distinct(for: ids)
        XCTAssertEqual(Set(addresses).count, 300)
        XCTAssertTrue(addresses.allSatisfy { $0.bytes[0] & 0xC0 == 0xC0 })
        XCTAssertEqual(LEStaticRandomAddress.distinct(for: ids), addresses)            // same on every start
        XCTAssertNotEqual(LEStaticRandomAddress.derived(from: "a/x"), LEStaticRandomAddress.derived(from: "b/x"))
        XCTAssertEqual(LEStaticRandomAddress.derived(from: "a/x").description.count, 17)
    }

    // MARK: Slots

    func testEnoughSetsGiveEachLockItsOwn() {
        let r = LEAdvertisingRoster(lockCount: 13, availableSets: 16)
        XCTAssertTrue(r.isExtended)
        XCTAssertFalse(r.rotates)
        XCTAssertEqual(r.slots, Array(0x0A...0x16))
        XCTAssertEqual((0..<13).map { r.lock(slotIndex: $0, step: 7) }, (0..<13).map { $0 })
    }

    func testFewerSetsThanLocksTakeTurnsAndEveryLockIsOnTheAirOncePerCycle() {
        let r = LEAdvertisingRoster(lockCount: 13, availableSets: 4)
        XCTAssertTrue(r.rotates)
        XCTAssertEqual(r.slots, [0x0A, 0x0B, 0x0C, 0x0D])
        XCTAssertEqual(r.cycleLength, 4)
        XCTAssertEqual(r.lock(slotIndex: 0, step: 3), 12)
        XCTAssertNil(r.lock(slotIndex: 1, step: 3))                 // 13 = 4 × 3 + 1: slot 1 rests a step
        XCTAssertEqual(r.lock(slotIndex: 1, step: 4), 1)            // the cycle starts over
        for start in [0, 4, 8] {
            let seen = (start..<start + r.cycleLength).flatMap { step in r.slots.indices.compactMap { r.lock(slotIndex: $0, step: step) } }
            XCTAssertEqual(seen.sorted(), Array(0..<13))
        }
    }

    func testWithoutExtendedAdvertisingOneLegacyAdvertiserCyclesThroughTheLocks() {
        for sets in [nil, 0] as [Int?] {
            let r = LEAdvertisingRoster(lockCount: 3, availableSets: sets)
            XCTAssertFalse(r.isExtended)
            XCTAssertEqual(r.slots, [LEAdvertisingRoster.legacySlot])
            XCTAssertEqual((0..<6).map { r.lock(slotIndex: 0, step: $0) }, [0, 1, 2, 0, 1, 2])
        }
        XCTAssertNil(LEAdvertisingRoster(lockCount: 3, availableSets: 2).lock(slotIndex: 2, step: 0))
    }

    // MARK: Connection → lock

    static func connectionComplete(_ handle: UInt16, role: UInt8 = 0x01, status: UInt8 = 0) -> HCIEvent {
        .leConnectionComplete(status: status, handle: handle, role: role, peerAddressType: 0, peerAddress: [0, 0xAA, 1, 0, 0, 1])
    }

    func testExtendedSetTerminatedNamesTheLock() {
        var m = LEConnectionAttribution(extended: true)
        m.enabled(slot: 0x0A, lock: 0)
        m.enabled(slot: 0x0B, lock: 1)
        XCTAssertNil(m.handle(Self.connectionComplete(0x41)))        // waits for the set's own report
        XCTAssertNil(m.origin(ofConnection: 0x41))
        let settled = m.handle(.leAdvertisingSetTerminated(status: 0, advertisingHandle: 0x0B, connectionHandle: 0x41, completedEvents: 1))
        XCTAssertEqual(settled?.origin, .lock(1))
        XCTAssertEqual(settled?.slot, 0x0B)
        XCTAssertEqual(m.origin(ofConnection: 0x41), .lock(1))
        XCTAssertEqual(m.onAir, [0x0A: 0])                           // the set stopped with the connection
        m.handle(.disconnectionComplete(status: 0, handle: 0x41, reason: 0x13))
        XCTAssertNil(m.origin(ofConnection: 0x41))                   // a reused handle starts afresh
    }

    func testAConnectionNotTiedToOneOfOurLocksIsUnknown() {
        var m = LEConnectionAttribution(extended: true)
        m.enabled(slot: 0x0A, lock: 0)
        // A set that is not ours (BlueZ's instance 1), and ours after its disable was accepted.
        XCTAssertEqual(m.handle(.leAdvertisingSetTerminated(status: 0, advertisingHandle: 0x01, connectionHandle: 0x42, completedEvents: 0))?.origin, .unknown)
        m.disabled(slot: 0x0A)
        XCTAssertEqual(m.handle(.leAdvertisingSetTerminated(status: 0, advertisingHandle: 0x0A, connectionHandle: 0x43, completedEvents: 0))?.origin, .unknown)
        // A set ended without a connection (limit reached) is off the air, no connection recorded.
        m.enabled(slot: 0x0B, lock: 2)
        XCTAssertNil(m.handle(.leAdvertisingSetTerminated(status: 0x43, advertisingHandle: 0x0B, connectionHandle: 0, completedEvents: 0)))
        XCTAssertEqual(m.onAir, [:])
        XCTAssertEqual(m.connections, [0x42: .unknown, 0x43: .unknown])
    }

    func testAConnectionClaimedByTwoSetsIsUnknown() {
        // BlueZ's emulated controller sends Advertising Set Terminated for every connectable set on each
        // connection; the second claim makes the connection's lock ambiguous, so it is refused.
        var m = LEConnectionAttribution(extended: true)
        m.enabled(slot: 0x0A, lock: 0)
        m.enabled(slot: 0x0B, lock: 1)
        XCTAssertEqual(m.handle(.leAdvertisingSetTerminated(status: 0, advertisingHandle: 0x0A, connectionHandle: 0x48, completedEvents: 0))?.origin, .lock(0))
        XCTAssertEqual(m.handle(.leAdvertisingSetTerminated(status: 0, advertisingHandle: 0x0B, connectionHandle: 0x48, completedEvents: 0))?.origin, .unknown)
        XCTAssertEqual(m.origin(ofConnection: 0x48), .unknown)
    }

    func testLegacyConnectionTakesTheLockOnTheAirAtThatInstant() {
        var m = LEConnectionAttribution(extended: false)
        let slot = LEAdvertisingRoster.legacySlot
        m.enabled(slot: slot, lock: 2)
        XCTAssertNil(m.handle(Self.connectionComplete(0x50, role: 0x00)))            // we were the central: not ours
        XCTAssertNil(m.handle(Self.connectionComplete(0x51, status: 0x3E)))          // failed connection
        XCTAssertEqual(m.handle(Self.connectionComplete(0x52))?.origin, .lock(2))
        // The controller stopped advertising for it: the next connection before a new enable is unknown.
        XCTAssertEqual(m.handle(Self.connectionComplete(0x53))?.origin, .unknown)
        m.enabled(slot: slot, lock: 0)
        m.disabled(slot: slot)                                                        // rotation took it off
        XCTAssertEqual(m.handle(Self.connectionComplete(0x54))?.origin, .unknown)
        XCTAssertEqual(m.origin(ofConnection: 0x52), .lock(2))
        // Legacy attribution ignores Advertising Set Terminated (not a legacy event).
        XCTAssertNil(m.handle(.leAdvertisingSetTerminated(status: 0, advertisingHandle: 0xFF, connectionHandle: 0x55, completedEvents: 0)))
    }

    // MARK: The advertiser against a scripted controller

    func makePair(answer: @escaping @Sendable (UInt16, [UInt8]) -> [UInt8]?)
        -> (BlueZAdvertiser, BlueZAdvertiserTests.ScriptedController) {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds), 0)
        let controller = BlueZAdvertiserTests.ScriptedController(fd: fds[1], answer: answer)
        return (BlueZAdvertiser(controllerDescriptor: fds[0], adapter: BlueZAdvertiserTests.adapter, commandTimeout: .seconds(2)),
                controller)
    }

    static func locks(_ n: Int) throws -> [LEAdvertisedLock] {
        let addresses = LEStaticRandomAddress.distinct(for: (0..<n).map { "site/lock-\($0)" })
        return try (0..<n).map {
            LEAdvertisedLock(id: "lock-\($0)", address: addresses[$0],
                             payload: try LEAdvertisingPayload.lock(serviceUUID: KeywayLockService.service, name: "Lock \($0)"))
        }
    }

    /// A Bluetooth 5 controller with `sets` advertising sets; enabling more answers Limit Reached.
    static func bluetooth5(sets: UInt8, reporting reported: UInt8? = nil) -> @Sendable (UInt16, [UInt8]) -> [UInt8]? {
        let enabled = Mutex<Set<UInt8>>([])
        return { opcode, p in
            switch opcode {
            case 0x203B: return [0x00, reported ?? sets]
            case 0x2036: return [0x00, 0x00]
            case 0x2039 where p.count >= 3:
                return enabled.withLock { on in
                    if p[0] == 0 { on.remove(p[2]); return [0x00] }
                    if !on.contains(p[2]) && on.count >= Int(sets) { return [0x43] }
                    on.insert(p[2]); return [0x00]
                }
            default: return [0x00]
            }
        }
    }

    func testEachLockGetsItsOwnSetAndAddressAndTheConnectionReachesItsLock() async throws {
        let (advertiser, controller) = makePair(answer: Self.bluetooth5(sets: 4))
        defer { controller.stop() }
        let locks = try Self.locks(3)
        let roster = try await advertiser.startLocks(locks)
        XCTAssertEqual(roster.slots, [0x0A, 0x0B, 0x0C])
        XCTAssertFalse(roster.rotates)
        XCTAssertEqual(controller.parameters(of: 0x2035), locks.indices.map { [0x0A + UInt8($0)] + locks[$0].address.bytes.reversed() })
        XCTAssertEqual(controller.parameters(of: 0x2037).map { Array($0.dropFirst(4)) }, locks.map(\.payload.advertisingData))
        XCTAssertTrue(controller.parameters(of: 0x2036).allSatisfy { $0[10] == 0x01 })   // own address: random
        XCTAssertFalse(controller.opcodes.contains(0x200A), "no legacy command once extended sets are in use")

        // A phone connects to lock 2's set: Connection Complete, then the set's Terminated event.
        controller.send([0x3E, 0x13, 0x01, 0x00, 0x44, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0xAA, 0x00,
                         0x28, 0x00, 0x00, 0x00, 0xD0, 0x07, 0x00])
        controller.send([0x3E, 0x06, 0x12, 0x00, 0x0C, 0x44, 0x00, 0x01])
        let origin = await advertiser.origin(ofConnection: 0x44)
        XCTAssertEqual(origin, .lock(2))
        // A connection whose set is not ours is refused, as is one the controller never explains.
        controller.send([0x3E, 0x06, 0x12, 0x00, 0x03, 0x45, 0x00, 0x01])
        let foreign = await advertiser.origin(ofConnection: 0x45)
        XCTAssertEqual(foreign, .unknown)
        let unexplained = await advertiser.origin(ofConnection: 0x46, within: .milliseconds(1))
        XCTAssertEqual(unexplained, .unknown)
        await advertiser.close()
        XCTAssertEqual(Set(controller.parameters(of: 0x203C).map { $0[0] }), [0x0A, 0x0B, 0x0C])   // sets removed
    }

    func testFewerUsableSetsThanReportedFallsBackToTakingTurns() async throws {
        // Reports 3 sets but one is held elsewhere: the third enable answers Limit Reached.
        let (advertiser, controller) = makePair(answer: Self.bluetooth5(sets: 2, reporting: 3))
        defer { controller.stop() }
        let roster = try await advertiser.startLocks(try Self.locks(5), rotationInterval: .seconds(600))
        XCTAssertEqual(roster.slots, [0x0A, 0x0B])
        XCTAssertEqual(roster.availableSets, 3)                     // what the controller said, for the log
        XCTAssertTrue(roster.rotates)
        XCTAssertTrue(controller.parameters(of: 0x203C).contains([0x0C]), "the set that did not fit is removed")
        await advertiser.close()
    }

    func testAskedForOneSetOneExtendedSetTakesTurns() async throws {
        let (advertiser, controller) = makePair(answer: Self.bluetooth5(sets: 3))
        defer { controller.stop() }
        let roster = try await advertiser.startLocks(try Self.locks(4), rotationInterval: .seconds(600), maximumSets: 1)
        XCTAssertEqual(roster.slots, [0x0A])
        XCTAssertEqual(roster.availableSets, 3)
        XCTAssertEqual(roster.cycleLength, 4)
        XCTAssertEqual(controller.parameters(of: 0x2035).count, 1)        // only lock 0 is on the air now
        await advertiser.close()
    }

    func testWithoutExtendedAdvertisingTheLegacyAdvertiserCarriesTheFirstLockAndMapsItsConnection() async throws {
        let (advertiser, controller) = makePair { opcode, _ in opcode == 0x203B ? [0x01] : [0x00] }   // Unknown HCI Command
        defer { controller.stop() }
        let locks = try Self.locks(3)
        let roster = try await advertiser.startLocks(locks, rotationInterval: .seconds(600))
        XCTAssertEqual(roster.slots, [LEAdvertisingRoster.legacySlot])
        XCTAssertNil(roster.availableSets)
        XCTAssertEqual(controller.parameters(of: 0x2005), [locks[0].address.bytes.reversed()])
        XCTAssertEqual(controller.parameters(of: 0x2006).first?[5], 0x01)                  // own address: random
        XCTAssertEqual(controller.parameters(of: 0x200A), [[0], [1]])
        controller.send([0x3E, 0x13, 0x01, 0x00, 0x47, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0xAA, 0x00,
                         0x28, 0x00, 0x00, 0x00, 0xD0, 0x07, 0x00])
        let origin = await advertiser.origin(ofConnection: 0x47)
        XCTAssertEqual(origin, .lock(0))
        await advertiser.close()
    }
}
