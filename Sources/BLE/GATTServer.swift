
/// What a `GATTServer` reports to its owner (through `Configuration.eventHandler`).
public enum GATTServerEvent: Sendable, Equatable {
    /// The client's Exchange MTU Request settled the connection's ATT_MTU.
    case mtuExchanged(Int)
    /// The client wrote the CCCD of the characteristic whose value handle is given.
    case subscriptionChanged(valueHandle: UInt16, GATTClientConfiguration)
    /// The bearer closed; the server is done.
    case closed(ATTBearerCloseReason)
}

/// Errors of the server's own operations (notify, indicate).
public enum GATTServerError: Error, Equatable, Sendable, CustomStringConvertible {
    case notACharacteristicValue(UInt16)
    case notificationsNotSupported(valueHandle: UInt16)
    case indicationsNotSupported(valueHandle: UInt16)
    /// A notification or indication carries at most ATT_MTU-3 bytes; chunk longer values.
    case valueTooLong(length: Int, maximum: Int)
    case indicationTimedOut
    case closed(ATTBearerCloseReason)

    public var description: String {
        switch self {
        case .notACharacteristicValue(let h): return "handle 0x\(hex16(h)) is not a characteristic value"
        case .notificationsNotSupported(let h): return "characteristic 0x\(hex16(h)) has no notify property"
        case .indicationsNotSupported(let h): return "characteristic 0x\(hex16(h)) has no indicate property"
        case .valueTooLong(let l, let m): return "value of \(l) bytes exceeds ATT_MTU-3 = \(m)"
        case .indicationTimedOut: return "indication not confirmed within the ATT transaction timeout"
        case .closed(let r): return "connection \(r)"
        }
    }
}

/// The GATT server of one connection: answers the client's ATT requests from a `GATTDatabase` and
/// sends notifications and indications.
///
/// Behaviour (Core spec Vol 3 Parts F and G):
/// - ATT_MTU starts at 23; the first Exchange MTU Request sets it to max(23, min(client, server)),
///   where the server's Rx MTU is min(`preferredMTU`, bearer `linkMTU`) (517 by default). A repeated
///   request is answered but changes nothing (the client may send it only once).
/// - Long reads: Read, then Read Blob from offsets; a dynamic value is read once and served from
///   that snapshot. Offset past the end → Invalid Offset.
/// - Long writes: Prepare Write Requests queue (bounded → Prepare Queue Full) and Execute Write
///   validates (Invalid Offset if a fragment leaves a gap, Invalid Attribute Value Length past 512
///   bytes) before the write handler gets the whole value once.
/// - CCCDs are per connection: 2-byte values only (else Invalid Attribute Value Length); a bit the
///   characteristic does not support → CCCD Improperly Configured (0xFD).
/// - Errors: Invalid PDU for malformed requests and for requests longer than ATT_MTU (handle 0x0000), Invalid Handle for unknown handles
///   and bad ranges, Attribute Not Found for empty ranges, Read/Write Not Permitted per properties,
///   Unsupported Group Type, Request Not Supported for unknown requests. Commands (opcode bit 6) and
///   stray responses are ignored, as are Signed Write Commands (no CSRK: Keyway does not bond).
///
/// Concurrency: requests that need no handler (discovery, static values, CCCDs) are answered inside
/// the bearer's delivery callback. A request that calls the upper layer's async handlers starts a
/// `Task.immediate`: the handler runs on the delivering thread and, if it never suspends, the answer
/// leaves before the callback returns (no thread hop: ~1 µs instead of ~10 µs for a worker wake-up).
/// If it suspends, PDUs arriving meanwhile queue behind it (bounded) and are answered strictly in
/// arrival order by that same task. Confirmations are always handled at once, so a handler may
/// `await indicate(...)` without deadlocking. Not an actor on purpose: the synchronous fast path is
/// what keeps an ATT round trip in the microseconds.
public final class GATTServer: Sendable {
    public struct Configuration: Sendable {
        /// The server's Rx MTU offered in Exchange MTU (clamped to 23…65535 and to the bearer's link MTU).
        public var preferredMTU: Int
        /// Prepare Write Requests queued before Prepare Queue Full.
        public var maximumPreparedWrites: Int
        /// How long an indication may wait for its confirmation (ATT transaction timeout: 30 s).
        public var indicationTimeout: Duration
        /// Schedules the indication timeout.
        public var clock: any Clock<Duration>
        /// Called (synchronously, must not block) for MTU exchanges, subscriptions and the close.
        public var eventHandler: (@Sendable (GATTServerEvent) -> Void)?

        public init(preferredMTU: Int = ATT.maximumMTU, maximumPreparedWrites: Int = 64,
                    indicationTimeout: Duration = .seconds(30), clock: any Clock<Duration> = ContinuousClock(),
                    eventHandler: (@Sendable (GATTServerEvent) -> Void)? = nil) {
            self.preferredMTU = preferredMTU
            self.maximumPreparedWrites = maximumPreparedWrites
            self.indicationTimeout = indicationTimeout
            self.clock = clock
            self.eventHandler = eventHandler
        }
    }

    public let database: GATTDatabase
    public let bearer: any ATTBearer
    /// The Rx MTU this server offers.
    public let serverRxMTU: Int

    private let maximumPreparedWrites: Int
    private let indicationTimeout: Duration
    private let clock: ErasedClock
    private let eventHandler: (@Sendable (GATTServerEvent) -> Void)?
    /// PDUs queued behind a suspended handler beyond this close the link: the client ignores ATT
    /// flow control (one request at a time).
    private static let backlogLimit = 256

    struct PreparedWrite { let handle: UInt16; let offset: Int; let part: [UInt8] }

    struct State {
        var mtu = ATT.defaultMTU
        var mtuExchanged = false
        var cccd: [UInt16]
        var prepared: [PreparedWrite] = []
        var snapshots: [UInt16: [UInt8]] = [:]
        /// A handler call is in progress; new PDUs (except confirmations) wait in `backlog`.
        var busy = false
        var backlog = FIFO<[UInt8]>()
        var indicationBusy = false
        var indicationWaiters = FIFO<CheckedContinuation<Void, Error>>()
        var confirmation: CheckedContinuation<Void, Error>?
        var indicationSequence: UInt64 = 0
        var closed: ATTBearerCloseReason?
        var closeWaiters: [CheckedContinuation<ATTBearerCloseReason, Never>] = []
        var events: [GATTServerEvent] = []
    }

    private let state: Locked<State>

    enum ExecuteItem: Sendable {
        case cccd(handle: UInt16, index: Int, value: UInt16)
        case value(handle: UInt16, index: Int, bytes: [UInt8])
    }

    /// Work that needs the upper layer's handlers.
    enum Deferred: Sendable {
        case read(handle: UInt16, index: Int, offset: Int, opcode: ATTOpcode)
        case readByType(handle: UInt16, index: Int)
        case readMultiple(handles: [UInt16])
        case write(handle: UInt16, index: Int, value: [UInt8], opcode: ATTOpcode)
        case execute([ExecuteItem])
    }

    enum Outcome { case reply([UInt8]), silent, deferred(Deferred) }

    /// Creates the server and starts serving `bearer` at once (the server owns the bearer's receiver).
    /// The server lives as long as the bearer is open.
    /// - Throws: `ATTBearerError.alreadyStarted` if the bearer already has a receiver.
    public init(database: GATTDatabase, bearer: any ATTBearer, configuration: Configuration = .init()) throws {
        self.database = database
        self.bearer = bearer
        serverRxMTU = min(max(configuration.preferredMTU, ATT.defaultMTU), bearer.linkMTU, 0xFFFF)
        maximumPreparedWrites = max(configuration.maximumPreparedWrites, 1)
        indicationTimeout = configuration.indicationTimeout
        clock = ErasedClock(configuration.clock)
        eventHandler = configuration.eventHandler
        state = Locked(State(cccd: [UInt16](repeating: 0, count: database.characteristicEntries.count)))
        try bearer.start { [self] event in self.receive(event) }
    }

    // MARK: Public state and server-initiated PDUs

    /// The connection's current ATT_MTU.
    public var mtu: Int { state.withLock { $0.mtu } }

    /// The longest value one notification or indication can carry now (ATT_MTU - 3).
    public var maximumNotificationLength: Int { mtu - 3 }

    /// Why the connection closed, or nil while it is open.
    public var closeReason: ATTBearerCloseReason? { state.withLock { $0.closed } }

    /// What this client wrote into the CCCD of the characteristic with `valueHandle`.
    public func clientConfiguration(valueHandle: UInt16) -> GATTClientConfiguration {
        guard let i = database.characteristicByValueHandle[valueHandle] else { return [] }
        return GATTClientConfiguration(rawValue: state.withLock { $0.cccd[i] })
    }

    /// Sends a Handle Value Notification if this client enabled notifications for the characteristic.
    /// - Returns: false (and sends nothing) when notifications are not enabled in the client's CCCD.
    /// - Throws: `GATTServerError` for a handle without the notify property, a value longer than
    ///   `maximumNotificationLength` (never truncated silently), or a closed connection.
    @discardableResult
    public func notify(valueHandle: UInt16, value: [UInt8]) throws -> Bool {
        guard let i = database.characteristicByValueHandle[valueHandle] else { throw GATTServerError.notACharacteristicValue(valueHandle) }
        guard database.characteristicEntries[i].properties.contains(.notify) else {
            throw GATTServerError.notificationsNotSupported(valueHandle: valueHandle)
        }
        let (enabled, mtu, closed) = state.withLock { s in (s.cccd[i] & 0x0001 != 0, s.mtu, s.closed) }
        if let closed { throw GATTServerError.closed(closed) }
        guard enabled else { return false }
        guard value.count <= mtu - 3 else { throw GATTServerError.valueTooLong(length: value.count, maximum: mtu - 3) }
        do {
            try bearer.send(ATTHandleValueNotification(handle: valueHandle, value: value).encode())
        } catch let e as ATTBearerError {
            if case .closed(let r) = e { throw GATTServerError.closed(r) }
            throw e
        }
        return true
    }

    /// Sends a Handle Value Indication and waits for the client's confirmation. Indications are
    /// serialised (one outstanding per connection, as ATT requires); concurrent callers queue.
    /// - Returns: false (and sends nothing) when indications are not enabled in the client's CCCD.
    /// - Throws: `GATTServerError` as `notify`, plus `.indicationTimedOut` (the link is then closed,
    ///   as ATT prescribes after a transaction timeout).
    @discardableResult
    nonisolated(nonsending) public func indicate(valueHandle: UInt16, value: [UInt8]) async throws -> Bool {
        guard let i = database.characteristicByValueHandle[valueHandle] else { throw GATTServerError.notACharacteristicValue(valueHandle) }
        guard database.characteristicEntries[i].properties.contains(.indicate) else {
            throw GATTServerError.indicationsNotSupported(valueHandle: valueHandle)
        }
        // Wait for our turn.
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            let result: Result<Bool, GATTServerError> = state.withLock { s in
                if let r = s.closed { return .failure(.closed(r)) }
                if !s.indicationBusy { s.indicationBusy = true; return .success(true) }
                s.indicationWaiters.append(c)
                return .success(false)
            }
            switch result {
            case .failure(let e): c.resume(throwing: e)
            case .success(true): c.resume()
            case .success(false): break
            }
        }
        defer { releaseIndicationTurn() }
        let (enabled, mtu) = state.withLock { s in (s.cccd[i] & 0x0002 != 0, s.mtu) }
        guard enabled else { return false }
        guard value.count <= mtu - 3 else { throw GATTServerError.valueTooLong(length: value.count, maximum: mtu - 3) }
        let pdu = ATTHandleValueIndication(handle: valueHandle, value: value).encode()
        var timeoutTask: Task<Void, Never>?
        defer { timeoutTask?.cancel() }
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            let seq: UInt64? = state.withLock { s in
                if s.closed != nil { return nil }
                s.confirmation = c
                s.indicationSequence += 1
                return s.indicationSequence
            }
            guard let seq else {
                c.resume(throwing: GATTServerError.closed(closeReason ?? .local))
                return
            }
            do {
                try bearer.send(pdu)
            } catch {
                if let c = state.withLock({ s -> CheckedContinuation<Void, Error>? in defer { s.confirmation = nil }; return s.confirmation }) {
                    c.resume(throwing: GATTServerError.closed(.failure("\(error)")))
                }
                return
            }
            let deadline = clock.now() + indicationTimeout
            timeoutTask = Task { [self] in
                do { try await clock.sleepUntil(deadline) } catch { return }
                let expired: CheckedContinuation<Void, Error>? = state.withLock { s in
                    guard s.indicationSequence == seq, let c = s.confirmation else { return nil }
                    s.confirmation = nil
                    return c
                }
                if let expired {
                    expired.resume(throwing: GATTServerError.indicationTimedOut)
                    bearer.close()
                }
            }
        }
        return true
    }

    /// Closes the connection.
    public func close() { bearer.close() }

    /// Waits until the connection closes and returns why.
    nonisolated(nonsending) public func waitUntilClosed() async -> ATTBearerCloseReason {
        await withCheckedContinuation { (c: CheckedContinuation<ATTBearerCloseReason, Never>) in
            let done: ATTBearerCloseReason? = state.withLock { s in
                if let r = s.closed { return r }
                s.closeWaiters.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }

    private func releaseIndicationTurn() {
        let next = state.withLock { s -> CheckedContinuation<Void, Error>? in
            if let n = s.indicationWaiters.popFirst() { return n }
            s.indicationBusy = false
            return nil
        }
        next?.resume()
    }

    // MARK: Receiving

    private func receive(_ event: ATTBearerEvent) {
        switch event {
        case .closed(let reason):
            connectionClosed(reason)
        case .pdu(let pdu):
            guard let opcode = pdu.first else { return }
            if opcode == ATTOpcode.handleValueConfirmation.rawValue {
                // Always at once: a handler may be awaiting this very confirmation.
                let c = state.withLock { s -> CheckedContinuation<Void, Error>? in defer { s.confirmation = nil }; return s.confirmation }
                c?.resume()
                return
            }
            var overflow = false
            var start: Deferred?
            let (outcome, events): (Outcome?, [GATTServerEvent]) = state.withLock { s in
                guard s.closed == nil else { return (nil, []) }
                if s.busy {
                    // Keep arrival order behind the request a handler is working on.
                    if s.backlog.count >= Self.backlogLimit { overflow = true; return (nil, []) }
                    s.backlog.append(pdu)
                    return (nil, [])
                }
                let o = process(pdu, &s)
                let ev = s.events
                if !ev.isEmpty { s.events = [] }
                if case .deferred(let d) = o {
                    s.busy = true
                    start = d
                    return (nil, ev)
                }
                return (o, ev)
            }
            if overflow {
                bearer.close()
                return
            }
            for e in events { eventHandler?(e) }
            if case .reply(let bytes) = outcome { try? bearer.send(bytes) }
            if let start { startHandlerTask(start) }
        }
    }

    /// Runs handler work right here on the delivering thread until it first suspends.
    private func startHandlerTask(_ d: Deferred) {
        if #available(macOS 26.0, *) {
            Task.immediate { [self] in await self.runHandlers(startingWith: d) }
        } else {
            Task { [self] in await self.runHandlers(startingWith: d) }
        }
    }

    /// Performs `first`, then answers whatever queued up meanwhile, in order, until the backlog is
    /// empty (then the server leaves the busy state and the delivery callback answers directly again).
    nonisolated(nonsending) private func runHandlers(startingWith first: Deferred) async {
        var next: Deferred? = first
        while let d = next {
            // Send before taking the next PDU, so nothing can overtake this reply.
            if let reply = await perform(d) { try? bearer.send(reply) }
            next = nil
            while next == nil {
                let (outcome, events, finished): (Outcome?, [GATTServerEvent], Bool) = state.withLock { s in
                    guard s.closed == nil, let pdu = s.backlog.popFirst() else {
                        s.busy = false
                        return (nil, [], true)
                    }
                    let o = process(pdu, &s)
                    defer { s.events = [] }
                    return (o, s.events, false)
                }
                if finished { return }
                for e in events { eventHandler?(e) }
                switch outcome {
                case .reply(let r)?: try? bearer.send(r)
                case .deferred(let d)?: next = d
                case .silent?, nil: break
                }
            }
        }
    }

    private func connectionClosed(_ reason: ATTBearerCloseReason) {
        let (confirmation, waiters, closeWaiters) = state.withLock { s -> (CheckedContinuation<Void, Error>?, [CheckedContinuation<Void, Error>], [CheckedContinuation<ATTBearerCloseReason, Never>]) in
            guard s.closed == nil else { return (nil, [], []) }
            s.closed = reason
            defer { s.confirmation = nil; s.closeWaiters = []; s.prepared = []; s.snapshots = [:]; _ = s.backlog.removeAll() }
            return (s.confirmation, s.indicationWaiters.removeAll(), s.closeWaiters)
        }
        confirmation?.resume(throwing: GATTServerError.closed(reason))
        for w in waiters { w.resume(throwing: GATTServerError.closed(reason)) }
        for w in closeWaiters { w.resume(returning: reason) }
        eventHandler?(.closed(reason))
    }

    // MARK: Request processing (synchronous part; runs with the state lock held)

    @inline(__always)
    private func error(_ request: UInt8, _ handle: UInt16, _ code: ATTErrorCode) -> Outcome {
        .reply(ATTErrorResponse(requestOpcode: request, handle: handle, error: code).encode())
    }

    private enum ReadSource { case bytes([UInt8]), dynamic(Int), denied(ATTErrorCode) }

    private func readSource(_ a: GATTDatabase.Attribute, _ s: State) -> ReadSource {
        switch a.kind {
        case .service, .characteristicDeclaration, .descriptor:
            return .bytes(a.staticValue ?? [])
        case .cccd(let i):
            return .bytes([UInt8(truncatingIfNeeded: s.cccd[i]), UInt8(truncatingIfNeeded: s.cccd[i] >> 8)])
        case .characteristicValue(let i):
            guard database.characteristicEntries[i].properties.contains(.read) else { return .denied(.readNotPermitted) }
            if let v = a.staticValue { return .bytes(v) }
            return .dynamic(i)
        }
    }

    private func checkRange(_ range: ATTHandleRange, _ opcode: UInt8) -> Outcome? {
        if range.start == 0 || range.start > range.end { return error(opcode, range.start, .invalidHandle) }
        if Int(range.start) > database.attributes.count { return error(opcode, range.start, .attributeNotFound) }
        return nil
    }

    private func process(_ pdu: [UInt8], _ s: inout State) -> Outcome {
        let raw = pdu[0]
        // No PDU may exceed ATT_MTU (Core Vol 3 Part F §3.2.8). Acting on one would also answer past it:
        // a Prepare Write Response echoes its request. (Found by the att-server fuzz target.)
        if pdu.count > s.mtu {
            return ATTOpcode.isCommand(raw) || ATTOpcode(rawValue: raw).map({ !$0.isRequest }) == true
                ? .silent : error(raw, 0, .invalidPDU)
        }
        guard let opcode = ATTOpcode(rawValue: raw) else {
            return ATTOpcode.isCommand(raw) ? .silent : error(raw, 0, .requestNotSupported)
        }
        switch opcode {
        case .exchangeMTURequest:
            guard let req = try? ATTExchangeMTURequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
            if !s.mtuExchanged {
                s.mtuExchanged = true
                s.mtu = max(ATT.defaultMTU, min(Int(req.clientRxMTU), serverRxMTU))
                s.events.append(.mtuExchanged(s.mtu))
            }
            return .reply(ATTExchangeMTUResponse(serverRxMTU: UInt16(serverRxMTU)).encode())

        case .findInformationRequest:
            guard let req = try? ATTFindInformationRequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
            if let e = checkRange(req.range, raw) { return e }
            return findInformation(req.range, mtu: s.mtu)

        case .findByTypeValueRequest:
            guard let req = try? ATTFindByTypeValueRequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
            if let e = checkRange(req.range, raw) { return e }
            return findByTypeValue(req, s)

        case .readByTypeRequest:
            guard let req = try? ATTReadByTypeRequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
            if let e = checkRange(req.range, raw) { return e }
            return readByType(req, s)

        case .readByGroupTypeRequest:
            guard let req = try? ATTReadByGroupTypeRequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
            if let e = checkRange(req.range, raw) { return e }
            guard req.groupType == .primaryService || req.groupType == .secondaryService else {
                return error(raw, req.range.start, .unsupportedGroupType)
            }
            return readByGroupType(req, mtu: s.mtu)

        case .readRequest:
            guard let req = try? ATTReadRequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
            guard let a = database.attribute(req.handle) else { return error(raw, req.handle, .invalidHandle) }
            switch readSource(a, s) {
            case .denied(let code): return error(raw, req.handle, code)
            case .dynamic(let i): return .deferred(.read(handle: req.handle, index: i, offset: 0, opcode: .readRequest))
            case .bytes(let v):
                var out: [UInt8] = [ATTOpcode.readResponse.rawValue]
                out.append(contentsOf: v.prefix(s.mtu - 1))
                return .reply(out)
            }

        case .readBlobRequest:
            guard let req = try? ATTReadBlobRequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
            guard let a = database.attribute(req.handle) else { return error(raw, req.handle, .invalidHandle) }
            let offset = Int(req.offset)
            var value: [UInt8]
            switch readSource(a, s) {
            case .denied(let code): return error(raw, req.handle, code)
            case .bytes(let v): value = v
            case .dynamic(let i):
                guard offset > 0, let snap = s.snapshots[req.handle] else {
                    return .deferred(.read(handle: req.handle, index: i, offset: offset, opcode: .readBlobRequest))
                }
                value = snap
            }
            guard offset <= value.count else { return error(raw, req.handle, .invalidOffset) }
            let end = min(value.count, offset + s.mtu - 1)
            if end == value.count { s.snapshots[req.handle] = nil }
            var out: [UInt8] = [ATTOpcode.readBlobResponse.rawValue]
            out.append(contentsOf: value[offset..<end])
            return .reply(out)

        case .readMultipleRequest:
            guard let req = try? ATTReadMultipleRequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
            var out: [UInt8] = [ATTOpcode.readMultipleResponse.rawValue]
            var anyDynamic = false
            for h in req.handles {
                guard let a = database.attribute(h) else { return error(raw, h, .invalidHandle) }
                switch readSource(a, s) {
                case .denied(let code): return error(raw, h, code)
                case .dynamic: anyDynamic = true
                case .bytes(let v): out.append(contentsOf: v)
                }
            }
            if anyDynamic { return .deferred(.readMultiple(handles: req.handles)) }
            return .reply(Array(out.prefix(s.mtu)))

        case .writeRequest, .writeCommand:
            let isCommand = opcode == .writeCommand
            let handle: UInt16, value: [UInt8]
            if isCommand {
                guard let c = try? ATTWriteCommand.decode(pdu) else { return .silent }
                (handle, value) = (c.handle, c.value)
            } else {
                guard let r = try? ATTWriteRequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
                (handle, value) = (r.handle, r.value)
            }
            guard let a = database.attribute(handle) else { return isCommand ? .silent : error(raw, handle, .invalidHandle) }
            switch a.kind {
            case .cccd(let i):
                if let code = writeCCCD(index: i, value: value, &s) { return isCommand ? .silent : error(raw, handle, code) }
                return isCommand ? .silent : .reply([ATTOpcode.writeResponse.rawValue])
            case .characteristicValue(let i):
                let props = database.characteristicEntries[i].properties
                guard props.contains(isCommand ? .writeWithoutResponse : .write) else {
                    return isCommand ? .silent : error(raw, handle, .writeNotPermitted)
                }
                guard value.count <= ATT.maximumAttributeValueLength else {
                    return isCommand ? .silent : error(raw, handle, .invalidAttributeValueLength)
                }
                s.snapshots[handle] = nil
                return .deferred(.write(handle: handle, index: i, value: value, opcode: opcode))
            case .service, .characteristicDeclaration, .descriptor:
                return isCommand ? .silent : error(raw, handle, .writeNotPermitted)
            }

        case .prepareWriteRequest:
            guard let req = try? ATTPrepareWriteRequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
            guard let a = database.attribute(req.handle) else { return error(raw, req.handle, .invalidHandle) }
            switch a.kind {
            case .cccd: break
            case .characteristicValue(let i):
                guard database.characteristicEntries[i].properties.contains(.write) else {
                    return error(raw, req.handle, .writeNotPermitted)
                }
            case .service, .characteristicDeclaration, .descriptor:
                return error(raw, req.handle, .writeNotPermitted)
            }
            guard s.prepared.count < maximumPreparedWrites else { return error(raw, req.handle, .prepareQueueFull) }
            s.prepared.append(PreparedWrite(handle: req.handle, offset: Int(req.offset), part: req.partValue))
            return .reply(ATTPrepareWriteResponse(handle: req.handle, offset: req.offset, partValue: req.partValue).encode())

        case .executeWriteRequest:
            guard let req = try? ATTExecuteWriteRequest.decode(pdu) else { return error(raw, 0, .invalidPDU) }
            let queue = s.prepared
            s.prepared = []
            if req.flags == .cancel || queue.isEmpty { return .reply([ATTOpcode.executeWriteResponse.rawValue]) }
            // Reassemble per handle, in order of first appearance, and validate everything before any
            // handler runs (the spec defers offset/length checks to this point).
            var order: [UInt16] = []
            var values: [UInt16: [UInt8]] = [:]
            for p in queue {
                var v = values[p.handle] ?? { order.append(p.handle); return [] }()
                guard p.offset <= v.count else { return error(raw, p.handle, .invalidOffset) }
                let end = p.offset + p.part.count
                guard end <= ATT.maximumAttributeValueLength else { return error(raw, p.handle, .invalidAttributeValueLength) }
                if end > v.count { v.append(contentsOf: repeatElement(0, count: end - v.count)) }
                v.replaceSubrange(p.offset..<end, with: p.part)
                values[p.handle] = v
            }
            var items: [ExecuteItem] = []
            for h in order {
                guard let a = database.attribute(h), let v = values[h] else { return error(raw, h, .unlikelyError) }
                switch a.kind {
                case .cccd(let i):
                    guard v.count == 2 else { return error(raw, h, .invalidAttributeValueLength) }
                    let bits = UInt16(v[0]) | UInt16(v[1]) << 8
                    if let code = cccdProblem(index: i, bits) { return error(raw, h, code) }
                    items.append(.cccd(handle: h, index: i, value: bits))
                case .characteristicValue(let i):
                    items.append(.value(handle: h, index: i, bytes: v))
                    s.snapshots[h] = nil
                case .service, .characteristicDeclaration, .descriptor:
                    return error(raw, h, .writeNotPermitted)
                }
            }
            if items.allSatisfy({ if case .cccd = $0 { return true }; return false }) {
                for case .cccd(_, let i, let bits) in items { applyCCCD(index: i, bits, &s) }
                return .reply([ATTOpcode.executeWriteResponse.rawValue])
            }
            return .deferred(.execute(items))

        case .signedWriteCommand:
            return .silent

        case .readMultipleVariableRequest:
            return error(raw, 0, .requestNotSupported)

        case .errorResponse, .exchangeMTUResponse, .findInformationResponse, .findByTypeValueResponse,
             .readByTypeResponse, .readResponse, .readBlobResponse, .readMultipleResponse,
             .readByGroupTypeResponse, .writeResponse, .prepareWriteResponse, .executeWriteResponse,
             .readMultipleVariableResponse, .handleValueNotification, .handleValueIndication,
             .multipleHandleValueNotification, .handleValueConfirmation:
            // Client-role PDUs: this bearer has no client role. Not requests, so no error response.
            return .silent
        }
    }

    private func cccdProblem(index i: Int, _ bits: UInt16) -> ATTErrorCode? {
        let props = database.characteristicEntries[i].properties
        if bits & ~0x0003 != 0 { return .cccdImproperlyConfigured }
        if bits & 0x0001 != 0 && !props.contains(.notify) { return .cccdImproperlyConfigured }
        if bits & 0x0002 != 0 && !props.contains(.indicate) { return .cccdImproperlyConfigured }
        return nil
    }

    private func applyCCCD(index i: Int, _ bits: UInt16, _ s: inout State) {
        guard s.cccd[i] != bits else { return }
        s.cccd[i] = bits
        s.events.append(.subscriptionChanged(valueHandle: database.characteristicEntries[i].handles.value,
                                             GATTClientConfiguration(rawValue: bits)))
    }

    private func writeCCCD(index i: Int, value: [UInt8], _ s: inout State) -> ATTErrorCode? {
        guard value.count == 2 else { return .invalidAttributeValueLength }
        let bits = UInt16(value[0]) | UInt16(value[1]) << 8
        if let code = cccdProblem(index: i, bits) { return code }
        applyCCCD(index: i, bits, &s)
        return nil
    }

    private func findInformation(_ range: ATTHandleRange, mtu: Int) -> Outcome {
        let last = min(Int(range.end), database.attributes.count)
        var out: [UInt8] = [ATTOpcode.findInformationResponse.rawValue, 0]
        var width: BluetoothUUID.Width?
        var h = Int(range.start)
        while h <= last {
            let a = database.attributes[h - 1]
            if let w = width {
                if a.type.width != w { break }
            } else {
                width = a.type.width
                out[1] = a.type.width == .bits16 ? 0x01 : 0x02
            }
            if out.count + 2 + a.type.width.rawValue > mtu { break }
            out.appendLE(a.handle)
            a.type.append(to: &out)
            h += 1
        }
        if width == nil { return error(ATTOpcode.findInformationRequest.rawValue, range.start, .attributeNotFound) }
        return .reply(out)
    }

    private func findByTypeValue(_ req: ATTFindByTypeValueRequest, _ s: State) -> Outcome {
        let type = BluetoothUUID(req.attributeType)
        let last = min(Int(req.range.end), database.attributes.count)
        var out: [UInt8] = [ATTOpcode.findByTypeValueResponse.rawValue]
        var h = Int(req.range.start)
        while h <= last, out.count + 4 <= s.mtu {
            let a = database.attributes[h - 1]
            h += 1
            guard a.type == type else { continue }
            // Only values known without calling a handler take part (GATT uses this for service UUIDs).
            guard case .bytes(let v) = readSource(a, s), v == req.attributeValue else { continue }
            out.appendLE(a.handle)
            if case .service(let si) = a.kind {
                out.appendLE(database.serviceEntries[si].end)
            } else {
                out.appendLE(a.handle)
            }
        }
        if out.count == 1 { return error(ATTOpcode.findByTypeValueRequest.rawValue, req.range.start, .attributeNotFound) }
        return .reply(out)
    }

    private func readByType(_ req: ATTReadByTypeRequest, _ s: State) -> Outcome {
        let raw = ATTOpcode.readByTypeRequest.rawValue
        let last = min(Int(req.range.end), database.attributes.count)
        let maxValue = min(s.mtu - 4, 253)
        var out: [UInt8] = [ATTOpcode.readByTypeResponse.rawValue, 0]
        var firstLength: Int?
        var h = Int(req.range.start)
        while h <= last {
            let a = database.attributes[h - 1]
            h += 1
            guard a.type == req.attributeType else { continue }
            let source = readSource(a, s)
            guard let length = firstLength else {
                switch source {
                case .denied(let code): return error(raw, a.handle, code)
                case .dynamic(let i): return .deferred(.readByType(handle: a.handle, index: i))
                case .bytes(let v):
                    let n = min(v.count, maxValue)
                    firstLength = v.count
                    out[1] = UInt8(n + 2)
                    out.appendLE(a.handle)
                    out.append(contentsOf: v.prefix(n))
                }
                continue
            }
            // Later entries: stop at anything that cannot join this response.
            guard case .bytes(let v) = source, v.count == length else { break }
            let n = min(v.count, maxValue)
            if out.count + 2 + n > s.mtu { break }
            out.appendLE(a.handle)
            out.append(contentsOf: v.prefix(n))
        }
        if firstLength == nil { return error(raw, req.range.start, .attributeNotFound) }
        return .reply(out)
    }

    private func readByGroupType(_ req: ATTReadByGroupTypeRequest, mtu: Int) -> Outcome {
        let wantPrimary = req.groupType == .primaryService
        let maxValue = min(mtu - 6, 251)
        var out: [UInt8] = [ATTOpcode.readByGroupTypeResponse.rawValue, 0]
        var firstLength: Int?
        for svc in database.serviceEntries where svc.isPrimary == wantPrimary {
            guard svc.start >= req.range.start else { continue }
            guard svc.start <= req.range.end else { break }
            let v = svc.uuid.littleEndianBytes
            let n = min(v.count, maxValue)
            if let length = firstLength {
                if v.count != length || out.count + 4 + n > mtu { break }
            } else {
                firstLength = v.count
                out[1] = UInt8(n + 4)
            }
            out.appendLE(svc.start)
            out.appendLE(svc.end)
            out.append(contentsOf: v.prefix(n))
        }
        if firstLength == nil { return error(ATTOpcode.readByGroupTypeRequest.rawValue, req.range.start, .attributeNotFound) }
        return .reply(out)
    }

    // MARK: Handler calls

    private func context(_ handle: UInt16, _ opcode: ATTOpcode) -> GATTRequestContext {
        GATTRequestContext(server: self, valueHandle: handle, opcode: opcode, mtu: mtu)
    }

    /// The error code a handler's thrown error is answered with.
    private static func code(for error: Error) -> ATTErrorCode {
        guard let code = error as? ATTErrorCode else { return .unlikelyError }
        switch code {
        case .application(let v) where !(0x80...0x9F).contains(v): return .unlikelyError
        case .reserved: return .unlikelyError
        default: return code
        }
    }

    private func readHandler(_ index: Int) -> GATTReadHandler? {
        if case .dynamic(let read, _) = database.characteristicEntries[index].value { return read }
        return nil
    }

    private func writeHandler(_ index: Int) -> GATTWriteHandler? {
        if case .dynamic(_, let write) = database.characteristicEntries[index].value { return write }
        return nil
    }

    /// Calls a read handler; nil value means the error outcome in `failure`.
    nonisolated(nonsending) private func callRead(_ index: Int, _ handle: UInt16, _ opcode: ATTOpcode) async -> Result<[UInt8], ATTErrorCode> {
        guard let handler = readHandler(index) else { return .failure(.readNotPermitted) }
        do {
            let v = try await handler(context(handle, opcode))
            // A handler bug (value over 512 bytes) must not reach the air as a protocol violation.
            guard v.count <= ATT.maximumAttributeValueLength else { return .failure(.unlikelyError) }
            return .success(v)
        } catch {
            return .failure(Self.code(for: error))
        }
    }

    nonisolated(nonsending) private func perform(_ d: Deferred) async -> [UInt8]? {
        switch d {
        case .read(let handle, let index, let offset, let opcode):
            switch await callRead(index, handle, opcode) {
            case .failure(let code):
                return ATTErrorResponse(request: opcode, handle: handle, error: code).encode()
            case .success(let value):
                guard offset <= value.count else {
                    return ATTErrorResponse(request: opcode, handle: handle, error: .invalidOffset).encode()
                }
                let mtu = self.mtu
                let end = min(value.count, offset + mtu - 1)
                state.withLock { s in s.snapshots[handle] = end < value.count ? value : nil }
                var out: [UInt8] = [(opcode == .readRequest ? ATTOpcode.readResponse : .readBlobResponse).rawValue]
                out.append(contentsOf: value[offset..<end])
                return out
            }

        case .readByType(let handle, let index):
            switch await callRead(index, handle, .readByTypeRequest) {
            case .failure(let code):
                return ATTErrorResponse(request: .readByTypeRequest, handle: handle, error: code).encode()
            case .success(let value):
                let n = min(value.count, min(mtu - 4, 253))
                var out: [UInt8] = [ATTOpcode.readByTypeResponse.rawValue, UInt8(n + 2)]
                out.appendLE(handle)
                out.append(contentsOf: value.prefix(n))
                return out
            }

        case .readMultiple(let handles):
            var out: [UInt8] = [ATTOpcode.readMultipleResponse.rawValue]
            for h in handles {
                guard let a = database.attribute(h) else {
                    return ATTErrorResponse(request: .readMultipleRequest, handle: h, error: .invalidHandle).encode()
                }
                switch state.withLock({ readSource(a, $0) }) {
                case .denied(let code):
                    return ATTErrorResponse(request: .readMultipleRequest, handle: h, error: code).encode()
                case .bytes(let v):
                    out.append(contentsOf: v)
                case .dynamic(let i):
                    switch await callRead(i, h, .readMultipleRequest) {
                    case .failure(let code):
                        return ATTErrorResponse(request: .readMultipleRequest, handle: h, error: code).encode()
                    case .success(let v):
                        out.append(contentsOf: v)
                    }
                }
            }
            return Array(out.prefix(mtu))

        case .write(let handle, let index, let value, let opcode):
            let isCommand = opcode == .writeCommand
            guard let handler = writeHandler(index) else {
                return isCommand ? nil : ATTErrorResponse(request: opcode, handle: handle, error: .writeNotPermitted).encode()
            }
            do {
                try await handler(context(handle, opcode), value)
                return isCommand ? nil : [ATTOpcode.writeResponse.rawValue]
            } catch {
                return isCommand ? nil : ATTErrorResponse(request: opcode, handle: handle, error: Self.code(for: error)).encode()
            }

        case .execute(let items):
            for item in items {
                switch item {
                case .cccd(_, let i, let bits):
                    let events: [GATTServerEvent] = state.withLock { s in
                        applyCCCD(index: i, bits, &s)
                        defer { s.events = [] }
                        return s.events
                    }
                    for e in events { eventHandler?(e) }
                case .value(let h, let i, let bytes):
                    guard let handler = writeHandler(i) else {
                        return ATTErrorResponse(request: .executeWriteRequest, handle: h, error: .writeNotPermitted).encode()
                    }
                    do {
                        try await handler(context(h, .executeWriteRequest), bytes)
                    } catch {
                        return ATTErrorResponse(request: .executeWriteRequest, handle: h, error: Self.code(for: error)).encode()
                    }
                }
            }
            return [ATTOpcode.executeWriteResponse.rawValue]
        }
    }
}
