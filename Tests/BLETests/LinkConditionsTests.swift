import XCTest
@testable import BLE

final class LinkConditionsTests: XCTestCase {
    func testFatesAreDeterministicPerSeed() {
        let c = LinkConditions(latency: .milliseconds(10), jitter: .milliseconds(5), lossProbability: 0.3, retransmissions: 2, seed: 7)
        func run(_ c: LinkConditions) -> [LinkConditions.Fate] {
            var rng = SplitMix64(seed: c.seed)
            return (0..<200).map { _ in c.fate(using: &rng) }
        }
        XCTAssertEqual(run(c), run(c))
        var other = c
        other.seed = 8
        XCTAssertNotEqual(run(c), run(other))
        let fates = run(c)
        let lost = fates.filter { $0 == .lost }.count
        XCTAssertGreaterThan(lost, 0)                     // 0.3³ ≈ 2.7 % lose all three attempts
        XCTAssertLessThan(lost, 20)
        for case .deliver(let d) in fates {
            XCTAssertGreaterThanOrEqual(d, .milliseconds(10))
            XCTAssertLessThanOrEqual(d, .milliseconds(35))  // latency + jitter + 2 retransmissions
        }
    }

    func testRetransmissionsTurnLossIntoLatency() {
        let c = LinkConditions(latency: .milliseconds(5), lossProbability: 0.5, retransmissions: 100, seed: 1)
        var rng = SplitMix64(seed: 1)
        var sawRetransmission = false
        for _ in 0..<500 {
            guard case .deliver(let d) = c.fate(using: &rng) else { return XCTFail("nothing is lost with 100 retries") }
            let ms = d / .milliseconds(1)
            XCTAssertEqual(ms.rounded(), ms)             // whole connection intervals
            if d > .milliseconds(5) { sawRetransmission = true }
        }
        XCTAssertTrue(sawRetransmission)
    }

    func testDelayedLinkPreservesOrder() async throws {
        let clock = TestClock()
        let link = LoopbackLink(conditions: LinkConditions(latency: .milliseconds(7), jitter: .milliseconds(6), seed: 3), clock: clock)
        let peer = try RawPeer(link.central)
        let received = Recorder<[UInt8]>()
        try link.peripheral.start { if case .pdu(let p) = $0 { received.append(p) } }
        for i in 0..<20 { try link.central.send([0x52, UInt8(i), 0x00]) }
        await clock.waitForSleepers(1)
        clock.advance(by: .milliseconds(13))
        for _ in 0..<30_000 where received.all.count < 20 { try await Task.sleep(for: .milliseconds(1)) }   // bound only
        XCTAssertEqual(received.all.map { $0[1] }, (0..<20).map(UInt8.init))
        _ = peer
    }

    func testLossWithoutLatencyDropsSomePDUs() throws {
        let link = LoopbackLink(conditions: LinkConditions(lossProbability: 0.5, seed: 11))
        let received = Recorder<[UInt8]>()
        try link.peripheral.start { if case .pdu(let p) = $0 { received.append(p) } }
        try link.central.start { _ in }
        for i in 0..<100 { try link.central.send([0x52, UInt8(i), 0x00]) }
        let n = received.all.count
        XCTAssertGreaterThan(n, 20)
        XCTAssertLessThan(n, 80)
        let order = received.all.map { $0[1] }
        XCTAssertEqual(order, order.sorted())
    }

    func testLoopbackRefusesOversizedAndEmptyPDUs() throws {
        let link = LoopbackLink(linkMTU: 23)
        XCTAssertThrowsError(try link.central.send([])) { XCTAssertEqual($0 as? ATTBearerError, .emptyPDU) }
        XCTAssertThrowsError(try link.central.send(Array(repeating: 0, count: 24))) {
            XCTAssertEqual($0 as? ATTBearerError, .pduTooLong(length: 24, maximum: 23))
        }
        try link.central.start { _ in }
        XCTAssertThrowsError(try link.central.start { _ in }) { XCTAssertEqual($0 as? ATTBearerError, .alreadyStarted) }
    }

    func testSendAfterCloseReportsWhoClosed() throws {
        let link = LoopbackLink()
        try link.central.start { _ in }
        try link.peripheral.start { _ in }
        link.peripheral.close()
        XCTAssertThrowsError(try link.central.send([0x1E])) { XCTAssertEqual($0 as? ATTBearerError, .closed(.remote)) }
        XCTAssertThrowsError(try link.peripheral.send([0x1E])) { XCTAssertEqual($0 as? ATTBearerError, .closed(.local)) }
    }

    func testInboundStreamView() async throws {
        let link = LoopbackLink()
        let stream = try link.peripheral.makeInboundStream()
        try link.central.start { _ in }
        try link.central.send([0x0A, 0x01, 0x00])
        try link.central.send([0x0A, 0x02, 0x00])
        link.central.close()
        var got: [[UInt8]] = []
        for try await pdu in stream { got.append(pdu) }
        XCTAssertEqual(got, [[0x0A, 0x01, 0x00], [0x0A, 0x02, 0x00]])
    }
}
