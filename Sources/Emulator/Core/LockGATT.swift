import BLE
import Foundation
import Hardware
import MobileKey

/// The lock side of the radio: one lock's GATT database, with the Keyway lock service wired to the
/// lock's tap protocol. Transport-agnostic — the loopback link, the cross-process socket and the
/// BlueZ L2CAP socket all hand their connections to `accept(_:)`.
public final class LockGATT: Sendable {
    public let lock: Lock
    public let database: GATTDatabase
    public let handles: KeywayLockService.Handles

    /// Per-connection tap state, keyed by the connection's GATT server.
    final class Connection: Sendable {
        struct State {
            var distance: Double
            var session: TapLockSession?
            /// The reader hello answering this connection's latest phone hello (re-readable).
            var readerHello: [UInt8]?
            var reassembler = TapReassembler()
            /// Every decision the lock made on this connection, in order; `taken` of them were handed out.
            var decisions: [Decision] = []
            var taken = 0
            var waiter: CheckedContinuation<Decision?, Never>?
            var closed = false
        }
        let state: Locked<State>
        static let kept = 16
        init(distance: Double) { state = Locked(State(distance: distance)) }

        func decided(_ d: Decision) {
            let w: CheckedContinuation<Decision?, Never>? = state.withLock { s in
                s.decisions.append(d)
                // A connection nobody reads (a BlueZ phone tapping over and over) keeps only its latest ones.
                if s.decisions.count > Connection.kept {
                    let drop = s.decisions.count - Connection.kept
                    s.decisions.removeFirst(drop)
                    s.taken = max(0, s.taken - drop)
                }
                guard let w = s.waiter else { return nil }
                s.waiter = nil
                s.taken += 1
                return w
            }
            w?.resume(returning: d)
        }

        func close() {
            let w: CheckedContinuation<Decision?, Never>? = state.withLock { s in
                s.closed = true
                defer { s.waiter = nil }
                return s.waiter
            }
            w?.resume(returning: nil)
        }

        func next() async -> Decision? {
            await withCheckedContinuation { (c: CheckedContinuation<Decision?, Never>) in
                let now: Decision?? = state.withLock { s in
                    if s.taken < s.decisions.count { s.taken += 1; return .some(s.decisions[s.taken - 1]) }
                    if s.closed || s.waiter != nil { return .some(nil) }
                    s.waiter = c
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        }
    }

    /// One phone's connection to the lock, as whoever opened it holds it: the GATT server, and the
    /// lock's decisions on this connection — each with its audit record and the receipt that settles
    /// to its event id — handed back to the opener in order.
    public struct Session: Sendable {
        public let server: GATTServer
        let connection: Connection

        /// The next decision the lock makes on this connection (waiting for it); nil once the connection
        /// closed without another one.
        public func nextDecision() async -> Decision? { await connection.next() }

        /// The decisions made on this connection so far (the latest 16), oldest first.
        public var decisions: [Decision] { connection.state.withLock { $0.decisions } }
    }
    private let connections = Locked<[ObjectIdentifier: Connection]>([:])

    /// ATT application error codes (0x80–0x9F) the lock service answers with.
    public enum ApplicationError {
        public static let outOfReach: UInt8 = 0x80
        public static let unpowered: UInt8 = 0x81
        public static let notProvisioned: UInt8 = 0x82
        public static let noSession: UInt8 = 0x83
        /// Reader Hello read before any phone hello on the connection (a protocol version 1 phone),
        /// or a phone hello of another version: this lock speaks version 2 only.
        public static let protocolVersionUnsupported: UInt8 = 0x84
        /// The phone hello is not a valid message (strict parsing; its key not a point on P-256).
        public static let malformedPhoneHello: UInt8 = 0x85
        /// FAST: the lock holds no key under the request's FAST key id (never made, evicted, another
        /// lock's, or the lock was re-provisioned). Nothing recorded; the phone runs the full exchange.
        public static let fastKeyUnknown: UInt8 = 0x86
        /// FAST: the lock's revocation list changed since the key was made; the key is retired.
        /// Nothing recorded; the phone runs the full exchange.
        public static let fastRevocationListChanged: UInt8 = 0x87

        /// The ATT error of a FAST request the lock answers with no decision.
        public static func code(for fallback: TapFastFallback) -> UInt8 {
            fallback == .revocationListChanged ? fastRevocationListChanged : fastKeyUnknown
        }

        /// The one mapping of a lock's refusal to the ATT error a phone sees: its own cause, never a
        /// stand-in (`unlikelyError` for anything a phone cannot act on).
        static func attError(for error: HardwareError) -> ATTErrorCode {
            switch error {
            case .outOfReach: return .application(outOfReach)
            case .unpowered: return .application(unpowered)
            case .mobileKeysNotProvisioned: return .application(notProvisioned)
            default: return .unlikelyError
            }
        }
    }

    public init(lock: Lock, deviceName: String) throws {
        self.lock = lock
        let box = WeakBox<LockGATT>()
        let handlers = KeywayLockService.Handlers(
            readerHello: { ctx in try await box.value?.readHello(ctx) ?? [] },
            phoneHello: { ctx, value in try await box.value?.receivePhoneHello(ctx, value) },
            presentation: { ctx, value in try await box.value?.receivePresentation(ctx, value) },
            lockInfo: { _ in try await box.value?.lockInfo() ?? [] },
            fast: { ctx, value in try await box.value?.receiveFast(ctx, value) })
        database = try KeywayLockService.database(deviceName: deviceName, handlers: handlers)
        guard let h = KeywayLockService.Handles(in: database) else { throw GATTDatabaseError.tooManyAttributes }
        handles = h
        box.value = self
    }

    /// Serves one connection until it closes. `distance` is how far the phone is from the reader.
    @discardableResult
    public func accept(_ bearer: any ATTBearer, distance: Double = 0) throws -> GATTServer {
        try open(bearer, distance: distance).server
    }

    /// Serves one connection until it closes, and hands the opener the session through which the
    /// lock's decisions on it come back.
    public func open(_ bearer: any ATTBearer, distance: Double = 0) throws -> Session {
        let server = try GATTServer(database: database, bearer: bearer)
        let id = ObjectIdentifier(server)
        let connection = Connection(distance: distance)
        connections.withLock { $0[id] = connection }
        Task { [weak self] in
            _ = await server.waitUntilClosed()
            self?.connections.withLock { _ = $0.removeValue(forKey: id) }
            connection.close()
        }
        return Session(server: server, connection: connection)
    }

    func connection(_ server: GATTServer) -> Connection? {
        connections.withLock { $0[ObjectIdentifier(server)] }
    }

    // Protocol v2: the phone's hello (written to Reader Hello) starts a tap — a fresh nonce and
    // ephemeral key, and the reader hello signed over both ephemeral keys, read next.
    private func receivePhoneHello(_ ctx: GATTRequestContext, _ value: [UInt8]) async throws {
        guard let conn = connection(ctx.server) else { throw ATTErrorCode.unlikelyError }
        let distance = conn.state.withLock { $0.distance }
        do {
            let session = try await lock.beginTap(phoneHello: value, distance: distance)
            conn.state.withLock { $0.session = session; $0.readerHello = session.helloBytes; $0.reassembler.reset() }
        } catch let e as HardwareError {
            throw ApplicationError.attError(for: e)
        } catch let refused as TapRefused {
            // Recorded by the lock (one event); the phone sees why in the ATT error.
            conn.state.withLock { $0.session = nil; $0.readerHello = nil }
            conn.decided(refused.decision)
            throw ATTErrorCode.application(refused.decision.reason?.rawValue == TapDenial.protocolVersionUnsupported.code
                                           ? ApplicationError.protocolVersionUnsupported : ApplicationError.malformedPhoneHello)
        }
    }

    // The reader hello answering this connection's phone hello. Read without one, the phone speaks
    // version 1 (it reads first): refused with 0x84, recorded once as `protocol_version_unsupported`.
    private func readHello(_ ctx: GATTRequestContext) async throws -> [UInt8] {
        guard let conn = connection(ctx.server) else { throw ATTErrorCode.unlikelyError }
        let (distance, hello) = conn.state.withLock { ($0.distance, $0.readerHello) }
        if let hello { return hello }
        do {
            conn.decided(try await lock.refuseVersion1Tap(distance: distance))
        } catch let e as HardwareError {
            throw ApplicationError.attError(for: e)
        }
        throw ATTErrorCode.application(ApplicationError.protocolVersionUnsupported)
    }

    private func receivePresentation(_ ctx: GATTRequestContext, _ fragment: [UInt8]) async throws {
        guard let conn = connection(ctx.server) else { throw ATTErrorCode.unlikelyError }
        let step: Result<TapReassembler.Outcome, TapReassembler.Failure> = conn.state.withLock { s in
            do throws(TapReassembler.Failure) { return .success(try s.reassembler.add(fragment)) } catch { return .failure(error) }
        }
        let decision: Decision
        var message: [UInt8]
        switch step {
        case .success(.needMore):
            return
        case .failure:
            // Broken fragmenting is a failed tap the platform should see, not silence.
            decision = await lock.recordTapFailure(Reason(TapDenial.malformedPresentation))
            message = TapResultMessage(granted: false, reason: TapDenial.malformedPresentation.code, openMilliseconds: 0).encoded()
        case .success(.complete(let presentation)) where TapProtocol.claimedVersion(presentation).map({ $0 != TapProtocol.version }) ?? false:
            // A message of another protocol version (a version 1 phone's presentation).
            decision = await lock.recordTapFailure(Reason(TapDenial.protocolVersionUnsupported))
            message = TapResultMessage(granted: false, reason: TapDenial.protocolVersionUnsupported.code, openMilliseconds: 0).encoded()
        case .success(.complete(let presentation)):
            guard let session = conn.state.withLock({ s -> TapLockSession? in defer { s.session = nil }; return s.session }) else {
                // A presentation without a hello on this connection: no nonce to answer.
                decision = await lock.recordTapFailure(Reason(TapDenial.nonceUnknown))
                message = TapResultMessage(granted: false, reason: TapDenial.nonceUnknown.code, openMilliseconds: 0).encoded()
                break
            }
            do {
                let outcome = try await lock.finishTap(session, presentation: presentation)
                decision = outcome.decision
                message = outcome.resultMessage
            } catch let e as HardwareError {
                // The lock lost power between hello and presentation, or the session is not its own.
                throw ApplicationError.attError(for: e)
            } catch {
                throw ATTErrorCode.unlikelyError
            }
        }
        conn.decided(decision)
        // The result goes by notification, split to the connection's ATT_MTU.
        for piece in TapFragments.split(message, payload: max(1, ctx.server.maximumNotificationLength - 2)) {
            _ = try? ctx.server.notify(valueHandle: handles.result, value: piece)
        }
    }

    // A FAST repeat tap: one request, decided at once (one event, result notified as for a full tap),
    // or answered with 0x86/0x87 and nothing recorded, so the phone runs the full exchange.
    private func receiveFast(_ ctx: GATTRequestContext, _ value: [UInt8]) async throws {
        guard let conn = connection(ctx.server) else { throw ATTErrorCode.unlikelyError }
        let distance = conn.state.withLock { $0.distance }
        let outcome: TapOutcome
        do {
            switch try await lock.fastTap(request: value, distance: distance) {
            case .fallBack(let why): throw ATTErrorCode.application(ApplicationError.code(for: why))
            case .decided(let o): outcome = o
            }
        } catch let e as HardwareError {
            throw ApplicationError.attError(for: e)
        }
        conn.decided(outcome.decision)
        for piece in TapFragments.split(outcome.resultMessage, payload: max(1, ctx.server.maximumNotificationLength - 2)) {
            _ = try? ctx.server.notify(valueHandle: handles.result, value: piece)
        }
    }

    private func lockInfo() async throws -> [UInt8] {
        let s = await lock.status
        return CBOR.map([1: .int(TapProtocol.version), 2: .text(s.id), 3: .unsigned(s.revocationListVersion),
                         4: .text(s.state.rawValue), 5: .unsigned(UInt64(s.openTime))]).encoded()
    }
}

/// A weak reference shared by @Sendable closures, set once its target exists.
final class WeakBox<T: AnyObject & Sendable>: Sendable {
    private struct Ref { weak var value: T? }
    private let ref = Locked(Ref())
    var value: T? {
        get { ref.withLock { $0.value } }
        set { ref.withLock { $0.value = newValue } }
    }
}
