
// The one seam between ATT/GATT and every transport (loopback, sockets, BlueZ L2CAP, decorators).

/// Why a bearer closed. Delivered exactly once per bearer, as the last event.
public enum ATTBearerCloseReason: Sendable, Equatable, CustomStringConvertible {
    /// `close()` was called on this end.
    case local
    /// The peer closed the link (or the socket reached end of file).
    case remote
    /// The link failed; the text says how (an I/O error, a framing violation, a timeout…).
    case failure(String)

    public var description: String {
        switch self {
        case .local: return "closed locally"
        case .remote: return "closed by the peer"
        case .failure(let why): return "link failed: \(why)"
        }
    }
}

/// What a bearer hands its receiver.
public enum ATTBearerEvent: Sendable {
    /// One complete ATT PDU (never empty, never longer than `linkMTU`).
    case pdu([UInt8])
    /// The bearer is closed; nothing follows.
    case closed(ATTBearerCloseReason)
}

/// Errors of `ATTBearer` operations.
public enum ATTBearerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bearer is closed (for the given reason); nothing can be sent.
    case closed(ATTBearerCloseReason)
    /// An ATT PDU has at least one byte (the opcode).
    case emptyPDU
    /// The PDU does not fit the link.
    case pduTooLong(length: Int, maximum: Int)
    /// The outbound buffer is full (the peer stopped reading).
    case congested(bufferedBytes: Int)
    /// `start(_:)` was already called.
    case alreadyStarted

    public var description: String {
        switch self {
        case .closed(let r): return "ATT bearer \(r)"
        case .emptyPDU: return "empty ATT PDU"
        case .pduTooLong(let l, let m): return "ATT PDU of \(l) bytes exceeds the link MTU of \(m)"
        case .congested(let b): return "ATT bearer congested (\(b) bytes buffered)"
        case .alreadyStarted: return "ATT bearer already started"
        }
    }
}

/// The receiver a bearer delivers to. See `ATTBearer.start(_:)` for the delivery contract.
public typealias ATTBearerReceiver = @Sendable (ATTBearerEvent) -> Void

/// One ATT bearer: an ordered, duplex channel of whole ATT PDUs between two devices — the L2CAP
/// fixed channel 0x0004 of an LE link, or anything that behaves like one.
///
/// Delivery is push-based on purpose: a GATT client resolves a pending request straight from the
/// delivery callback, and a GATT server answers static reads inside it, so an ATT round trip over
/// the in-process loopback costs no task switch beyond the caller's own resumption. Use
/// `makeInboundStream()` for an `AsyncSequence` view instead.
///
/// Implementations to date: `LoopbackLink` (in-process pair), `SocketBearer` (L2CAP basic frames
/// on a stream socket, or bare PDUs on a SOCK_SEQPACKET fd such as a BlueZ L2CAP LE socket), and the
/// decorators `ConditionedBearer` (delay/loss) and `CapturingBearer` (btsnoop).
public protocol ATTBearer: AnyObject, Sendable {
    /// The largest ATT PDU, in bytes, the link carries in either direction (the L2CAP channel MTU).
    /// ATT_MTU negotiation never exceeds it. At least 23.
    var linkMTU: Int { get }

    /// Installs the receiver and starts delivery. PDUs that arrived earlier (bounded) come first.
    ///
    /// Contract for implementations: events are delivered in order, one at a time (never
    /// concurrently), on any thread, ending with exactly one `.closed`. The receiver must not block;
    /// it may call `send(_:)` and `close()` on the same bearer (implementations must not hold a lock
    /// across the call).
    /// - Throws: `ATTBearerError.alreadyStarted` on a second call.
    func start(_ receiver: @escaping ATTBearerReceiver) throws

    /// Sends one complete ATT PDU. Does not wait for the peer; PDUs leave in call order.
    /// - Throws: `ATTBearerError` — closed, empty, longer than `linkMTU`, or congested.
    func send(_ pdu: [UInt8]) throws

    /// Closes the link. Idempotent. The receiver then gets `.closed(.local)`, the peer `.closed(.remote)`.
    func close()
}

extension ATTBearer {
    /// Checks a PDU against the link before sending; shared by the implementations.
    @inline(__always)
    public func validateOutbound(_ pdu: [UInt8]) throws(ATTBearerError) {
        guard !pdu.isEmpty else { throw .emptyPDU }
        guard pdu.count <= linkMTU else { throw .pduTooLong(length: pdu.count, maximum: linkMTU) }
    }

    /// Starts the bearer and returns its received PDUs as an `AsyncSequence` (single consumer).
    /// The stream finishes when the link closes normally and throws `ATTBearerError.closed` when it
    /// fails. It buffers at most `bufferLimit` PDUs; past that the link is closed (the consumer is
    /// not keeping up — deny rather than grow without bound).
    public func makeInboundStream(bufferLimit: Int = 4096) throws -> AsyncThrowingStream<[UInt8], Error> {
        let (stream, continuation) = AsyncThrowingStream<[UInt8], Error>.makeStream(
            bufferingPolicy: .bufferingOldest(bufferLimit))
        try start { [weak self] event in
            switch event {
            case .pdu(let pdu):
                if case .dropped = continuation.yield(pdu) {
                    self?.close()
                    continuation.finish(throwing: ATTBearerError.closed(.failure("inbound stream buffer of \(bufferLimit) PDUs overflowed")))
                }
            case .closed(.failure(let why)):
                continuation.finish(throwing: ATTBearerError.closed(.failure(why)))
            case .closed:
                continuation.finish()
            }
        }
        return stream
    }
}

/// Serial, ordered, non-reentrant delivery to a receiver, for bearer implementations.
///
/// Whoever enqueues while nobody is delivering becomes the deliverer and drains the queue
/// (receiver called without the lock held); a nested enqueue from inside the receiver only appends.
/// This keeps delivery strictly serial without a dedicated thread or task, which is what lets the
/// loopback carry a request and its response on the caller's own thread.
final class BearerInbox: Sendable {
    private struct State {
        var receiver: ATTBearerReceiver?
        var queue = FIFO<ATTBearerEvent>()
        var delivering = false
        var closedQueued = false
    }

    private let state = Locked(State())
    /// Events buffered before `start`, or while a slow receiver drains; beyond this the bearer fails.
    let limit: Int

    init(limit: Int = 1024) { self.limit = limit }

    /// Installs the receiver and drains what arrived before. Throws if already started.
    func start(_ receiver: @escaping ATTBearerReceiver) throws(ATTBearerError) {
        let shouldDrain: Bool = try state.withLock { (s) throws(ATTBearerError) -> Bool in
            guard s.receiver == nil else { throw .alreadyStarted }
            s.receiver = receiver
            guard !s.delivering, !s.queue.isEmpty else { return false }
            s.delivering = true
            return true
        }
        if shouldDrain { drain() }
    }

    /// Queues an event; returns false if it was refused (after `.closed`, or over the limit —
    /// then a `.closed(.failure)` is queued instead and the caller must tear the link down).
    @discardableResult
    func deliver(_ event: ATTBearerEvent) -> Bool {
        var accepted = true
        let shouldDrain: Bool = state.withLock { s in
            if s.closedQueued { accepted = false; return false }
            if case .closed = event {
                s.closedQueued = true
                s.queue.append(event)
            } else if s.queue.count >= limit {
                s.closedQueued = true
                s.queue.append(.closed(.failure("receiver fell \(limit) PDUs behind")))
                accepted = false
            } else {
                s.queue.append(event)
            }
            guard !s.delivering, s.receiver != nil else { return false }
            s.delivering = true
            return true
        }
        if shouldDrain { drain() }
        return accepted
    }

    var isClosed: Bool { state.withLock { $0.closedQueued } }

    private func drain() {
        while true {
            let next: (ATTBearerEvent, ATTBearerReceiver)? = state.withLock { s in
                guard let r = s.receiver, let e = s.queue.popFirst() else {
                    s.delivering = false
                    return nil
                }
                if case .closed = e { s.receiver = nil }  // break the bearer→receiver→owner cycle
                return (e, r)
            }
            guard let (event, receiver) = next else { return }
            receiver(event)
        }
    }
}
