
/// Radio conditions a link imposes on every PDU, per direction: latency (a connection interval),
/// jitter, and loss of link-layer transmissions — deterministic for a given seed.
///
/// The BLE link layer acknowledges every packet and retransmits a lost one at the next connection
/// event, so a weak signal mostly shows up as latency. `retransmissions` models that: a lost
/// transmission is retried one `latency` later, up to that many times; only a PDU that loses every
/// attempt is dropped (ATT then sees a transaction time out, as it would before a supervision timeout).
public struct LinkConditions: Sendable, Equatable {
    /// One-way delay of every PDU (e.g. half to one connection interval: 7.5 ms … 4 s in BLE).
    public var latency: Duration
    /// Extra delay drawn uniformly from 0...jitter per PDU (order is preserved regardless).
    public var jitter: Duration
    /// Probability (0...1) that one link-layer transmission of a PDU is lost.
    public var lossProbability: Double
    /// Retries of a lost transmission, each `latency` later; 0 means a lost PDU is gone.
    public var retransmissions: Int
    /// Seed of the deterministic random source (SplitMix64) deciding jitter and loss.
    public var seed: UInt64

    public init(latency: Duration = .zero, jitter: Duration = .zero, lossProbability: Double = 0,
                retransmissions: Int = 0, seed: UInt64 = 0) {
        self.latency = latency
        self.jitter = jitter
        self.lossProbability = min(max(lossProbability, 0), 1)
        self.retransmissions = max(retransmissions, 0)
        self.seed = seed
    }

    /// No delay, no loss.
    public static let ideal = LinkConditions()

    /// True when PDUs pass through untouched.
    public var isIdeal: Bool { latency == .zero && jitter == .zero && lossProbability == 0 }

    /// What happens to one PDU: delivered after a delay, or lost.
    enum Fate: Equatable { case deliver(after: Duration), lost }

    func fate(using rng: inout SplitMix64) -> Fate {
        var delay = latency
        if jitter > .zero {
            delay += jitter * rng.nextUnitDouble()
        }
        var attempts = 0
        while lossProbability > 0 && rng.nextUnitDouble() < lossProbability {
            attempts += 1
            if attempts > retransmissions { return .lost }
            delay += latency
        }
        return .deliver(after: delay)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to decide jitter and loss
/// reproducibly — and the one deterministic generator the test suites use too. Not for cryptography.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func nextUnitDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// A clock with its concrete type erased, measured as a `Duration` since an origin. Lets bearers
/// and GATT peers accept `any Clock<Duration>` — the real `ContinuousClock` or a test's simulated
/// one — without becoming generic.
struct ErasedClock: Sendable {
    let now: @Sendable () -> Duration
    let sleepUntil: @Sendable (Duration) async throws -> Void

    init(_ clock: any Clock<Duration>) {
        self = Self.make(clock)
    }

    private init(now: @escaping @Sendable () -> Duration, sleepUntil: @escaping @Sendable (Duration) async throws -> Void) {
        self.now = now
        self.sleepUntil = sleepUntil
    }

    private static func make<C: Clock<Duration>>(_ clock: C) -> ErasedClock {
        let origin = clock.now
        return ErasedClock(
            now: { origin.duration(to: clock.now) },
            sleepUntil: { t in try await clock.sleep(until: origin.advanced(by: t), tolerance: nil) })
    }
}

/// Releases items at their due times, in order, from one long-lived task (created lazily; no task
/// per item). Due times never decrease, so a sleeping worker never needs waking for a later item.
final class DelayLine<Item: Sendable>: Sendable {
    private struct State {
        var queue = FIFO<(due: Duration, item: Item)>()
        var lastDue: Duration = .zero
        var parked: CheckedContinuation<Void, Never>?
        var workerStarted = false
        var worker: Task<Void, Never>?
        var stopped = false
    }

    private let state = Locked(State())
    private let clock: ErasedClock
    private let release: @Sendable (Item) -> Void
    private let isTerminal: @Sendable (Item) -> Bool

    /// - Parameter isTerminal: after releasing an item for which this is true, the line stops.
    init(clock: ErasedClock, isTerminal: @escaping @Sendable (Item) -> Bool = { _ in false },
         release: @escaping @Sendable (Item) -> Void) {
        self.clock = clock
        self.release = release
        self.isTerminal = isTerminal
    }

    /// Schedules `item` `delay` from now, but never before an item scheduled earlier.
    func schedule(_ item: Item, after delay: Duration) {
        let due = clock.now() + delay
        var startWorker = false
        let wake: CheckedContinuation<Void, Never>? = state.withLock { s in
            guard !s.stopped else { return nil }
            let d = max(due, s.lastDue)
            s.lastDue = d
            s.queue.append((d, item))
            if !s.workerStarted { s.workerStarted = true; startWorker = true }
            defer { s.parked = nil }
            return s.parked
        }
        wake?.resume()
        if startWorker {
            let task = Task { [self] in await self.run() }
            state.withLock { s in
                if s.stopped { task.cancel() } else { s.worker = task }
            }
        }
    }

    /// Drops everything still scheduled and ends the worker.
    func stop() {
        let (wake, worker) = state.withLock { s -> (CheckedContinuation<Void, Never>?, Task<Void, Never>?) in
            s.stopped = true
            _ = s.queue.removeAll()
            defer { s.parked = nil; s.worker = nil }
            return (s.parked, s.worker)
        }
        wake?.resume()
        worker?.cancel()
    }

    private func run() async {
        while true {
            // Take the head's due time, or park until something is scheduled.
            var head: Duration?
            var stopped = false
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = state.withLock { s in
                    if s.stopped { stopped = true; return true }
                    if let first = s.queue.first { head = first.due; return true }
                    s.parked = c
                    return false
                }
                if resumeNow { c.resume() }
            }
            if stopped { return }
            guard let due = head else { continue }
            do { try await clock.sleepUntil(due) } catch { /* cancelled: stop() says what happens next */ }
            let ready: [Item] = state.withLock { s in
                var out: [Item] = []
                guard !s.stopped else { return out }
                let now = clock.now()
                while let first = s.queue.first, first.due <= now || first.due == due {
                    _ = s.queue.popFirst()
                    out.append(first.item)
                }
                return out
            }
            for item in ready {
                release(item)
                if isTerminal(item) { stop(); return }
            }
        }
    }
}

/// A decorator applying `LinkConditions` to both directions of any bearer: what it sends and what
/// it receives are delayed (and possibly lost) on the given clock. Wrap one end of a link to
/// condition the whole link.
public final class ConditionedBearer: ATTBearer {
    public let base: any ATTBearer
    public let conditions: LinkConditions
    public var linkMTU: Int { base.linkMTU }

    private let outboundRNG: Locked<SplitMix64>
    private let inboundRNG: Locked<SplitMix64>
    private let outbound: DelayLine<[UInt8]>
    private let inbound: DelayLine<ATTBearerEvent>
    private let receiver = Locked<ATTBearerReceiver?>(nil)
    private let closedReason = Locked<ATTBearerCloseReason?>(nil)

    public init(wrapping base: any ATTBearer, conditions: LinkConditions, clock: any Clock<Duration> = ContinuousClock()) {
        self.base = base
        self.conditions = conditions
        // Independent, reproducible streams per direction.
        outboundRNG = Locked(SplitMix64(seed: conditions.seed))
        inboundRNG = Locked(SplitMix64(seed: conditions.seed ^ 0xA5A5_5A5A_C3C3_3C3C))
        let erased = ErasedClock(clock)
        outbound = DelayLine(clock: erased) { [base] pdu in try? base.send(pdu) }
        let receiverBox = receiver
        inbound = DelayLine(clock: erased, isTerminal: { if case .closed = $0 { return true }; return false }) { event in
            let r = receiverBox.withLock { r -> ATTBearerReceiver? in
                defer { if case .closed = event { r = nil } }
                return r
            }
            r?(event)
        }
    }

    public func start(_ receiver: @escaping ATTBearerReceiver) throws {
        try self.receiver.withLock { (r) throws(ATTBearerError) in
            guard r == nil else { throw .alreadyStarted }
            r = receiver
        }
        // Loss without latency: nothing is ever delayed, so deliver in place (keeps ordering trivially).
        let immediate = conditions.latency == .zero && conditions.jitter == .zero
        try base.start { [self] event in
            switch event {
            case .pdu:
                switch self.inboundRNG.withLock({ self.conditions.fate(using: &$0) }) {
                case .lost: return
                case .deliver(let delay):
                    if immediate {
                        self.receiver.withLock { $0 }?(event)
                    } else {
                        self.inbound.schedule(event, after: delay)
                    }
                }
            case .closed(let reason):
                self.closedReason.withLock { if $0 == nil { $0 = reason } }
                self.outbound.stop()
                if immediate {
                    let r = self.receiver.withLock { r -> ATTBearerReceiver? in defer { r = nil }; return r }
                    r?(event)
                    self.inbound.stop()
                } else {
                    // After whatever is still in flight towards us, like the real air.
                    self.inbound.schedule(event, after: .zero)
                }
            }
        }
    }

    /// Accepts the PDU (the "controller" has it) and delivers it after the link's delay, unless lost.
    public func send(_ pdu: [UInt8]) throws {
        try validateOutbound(pdu)
        if let reason = closedReason.withLock({ $0 }) { throw ATTBearerError.closed(reason) }
        switch outboundRNG.withLock({ conditions.fate(using: &$0) }) {
        case .lost: return
        case .deliver(let delay):
            if delay == .zero {
                try base.send(pdu)
            } else {
                outbound.schedule(pdu, after: delay)
            }
        }
    }

    public func close() {
        closedReason.withLock { if $0 == nil { $0 = .local } }
        outbound.stop()
        base.close()
    }
}
