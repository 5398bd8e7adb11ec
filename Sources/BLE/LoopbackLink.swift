import Synchronization

/// An in-process LE link: two connected `ATTBearer`s, `central` (the phone, usually the GATT
/// client) and `peripheral` (the lock, usually the GATT server).
///
/// With ideal conditions a PDU sent on one end is delivered to the other end's receiver on the
/// sender's thread, before `send` returns (delivery stays serial and ordered; see `ATTBearer`).
/// With `LinkConditions` the peripheral end is wrapped in a `ConditionedBearer`, so both
/// directions see the configured delay and loss, scheduled on the given clock.
public final class LoopbackLink: Sendable {
    /// The central's end.
    public let central: any ATTBearer
    /// The peripheral's end.
    public let peripheral: any ATTBearer

    /// - Parameters:
    ///   - linkMTU: largest PDU either end carries (L2CAP MTU); 23...65535, default 517.
    ///   - conditions: delay and loss applied to both directions (default: none).
    ///   - clock: schedules delayed deliveries; inject a simulated clock for deterministic tests.
    public init(linkMTU: Int = ATT.maximumMTU, conditions: LinkConditions = .ideal,
                clock: any Clock<Duration> = ContinuousClock()) {
        let mtu = min(max(linkMTU, ATT.defaultMTU), 0xFFFF)
        let shared = LoopbackShared()
        let a = LoopbackBearer(linkMTU: mtu, shared: shared)
        let b = LoopbackBearer(linkMTU: mtu, shared: shared)
        a.peer.withLock { $0 = b }
        b.peer.withLock { $0 = a }
        central = a
        if conditions.isIdeal {
            peripheral = b
        } else {
            peripheral = ConditionedBearer(wrapping: b, conditions: conditions, clock: clock)
        }
    }
}

final class LoopbackShared: Sendable {
    let closed = Atomic<Bool>(false)
}

/// One end of a `LoopbackLink`.
final class LoopbackBearer: ATTBearer {
    let linkMTU: Int
    let inbox = BearerInbox()
    let shared: LoopbackShared
    /// Why this end is closed (what `send` reports afterwards).
    let closeReason = Locked<ATTBearerCloseReason?>(nil)
    // The two ends reference each other; the cycle is cut when the link closes.
    let peer = Locked<LoopbackBearer?>(nil)

    init(linkMTU: Int, shared: LoopbackShared) {
        self.linkMTU = linkMTU
        self.shared = shared
    }

    func start(_ receiver: @escaping ATTBearerReceiver) throws {
        try inbox.start(receiver)
    }

    func send(_ pdu: [UInt8]) throws {
        try validateOutbound(pdu)
        guard !shared.closed.load(ordering: .acquiring), let p = peer.withLock({ $0 }) else {
            throw ATTBearerError.closed(closeReason.withLock { $0 } ?? .remote)
        }
        if !p.inbox.deliver(.pdu(pdu)) {
            // The peer's receiver cannot keep up (or never started): the link fails, as a real
            // link would on a supervision timeout.
            fail("peer inbox overflow")
        }
    }

    func close() {
        guard shared.closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        let p = peer.withLock { v -> LoopbackBearer? in defer { v = nil }; return v }
        p?.peer.withLock { $0 = nil }
        closeReason.withLock { $0 = .local }
        p?.closeReason.withLock { $0 = .remote }
        inbox.deliver(.closed(.local))
        p?.inbox.deliver(.closed(.remote))
    }

    private func fail(_ why: String) {
        guard shared.closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        let p = peer.withLock { v -> LoopbackBearer? in defer { v = nil }; return v }
        p?.peer.withLock { $0 = nil }
        closeReason.withLock { $0 = .failure(why) }
        p?.closeReason.withLock { $0 = .failure(why) }
        inbox.deliver(.closed(.failure(why)))
        p?.inbox.deliver(.closed(.failure(why)))
    }
}
