
/// A notification or indication received by a `GATTClient`.
public struct GATTNotification: Sendable, Equatable {
    public let valueHandle: UInt16
    public let value: [UInt8]
    /// True for an indication (the client has already confirmed it).
    public let isIndication: Bool
}

/// A service found by discovery.
public struct GATTRemoteService: Sendable, Equatable {
    public let uuid: BluetoothUUID
    public let handles: ATTHandleRange
    /// Filled by `GATTClient.discoverAll()`; empty otherwise.
    public var characteristics: [GATTRemoteCharacteristic] = []
}

/// A characteristic found by discovery.
public struct GATTRemoteCharacteristic: Sendable, Equatable {
    public let uuid: BluetoothUUID
    public let properties: GATTCharacteristicProperties
    public let declarationHandle: UInt16
    public let valueHandle: UInt16
    /// Last handle belonging to this characteristic (its descriptors end here).
    public let endHandle: UInt16
    /// Filled by `discoverAll()` or `discoverDescriptors(of:)`'s caller; empty otherwise.
    public var descriptors: [GATTRemoteDescriptor] = []
}

/// A descriptor found by discovery.
public struct GATTRemoteDescriptor: Sendable, Equatable {
    public let handle: UInt16
    public let uuid: BluetoothUUID
}

/// Why a GATT client procedure failed.
public enum GATTClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The server answered with an ATT Error Response.
    case attError(ATTErrorCode, handle: UInt16, request: ATTOpcode)
    /// No response within the ATT transaction timeout; the bearer is closed (ATT allows no further
    /// transactions on it, Vol 3 Part F 3.3.3).
    case timeout(request: ATTOpcode)
    /// The connection is closed.
    case closed(ATTBearerCloseReason)
    /// The server broke the protocol (malformed or mismatched response); the text says how.
    case invalidResponse(String)
    /// The value cannot be sent (over 512 bytes, or a write command over ATT_MTU-3).
    case valueTooLong(length: Int, maximum: Int)
    /// A Prepare Write Response did not echo the request (the long write was cancelled).
    case preparedWriteMismatch(handle: UInt16, offset: UInt16)
    /// The characteristic has no Client Characteristic Configuration descriptor.
    case noClientConfiguration(valueHandle: UInt16)

    public var description: String {
        switch self {
        case .attError(let code, let handle, let request): return "\(request) on handle 0x\(hex16(handle)) failed: \(code)"
        case .timeout(let request): return "\(request) timed out"
        case .closed(let r): return "connection \(r)"
        case .invalidResponse(let why): return "invalid response: \(why)"
        case .valueTooLong(let l, let m): return "value of \(l) bytes exceeds \(m)"
        case .preparedWriteMismatch(let h, let o): return "Prepare Write Response for 0x\(hex16(h)) at offset \(o) did not echo the request"
        case .noClientConfiguration(let h): return "characteristic 0x\(hex16(h)) has no CCCD"
        }
    }
}

/// The GATT client of one connection (the phone's side of a tap).
///
/// Requests are serialised as ATT requires (one outstanding request per bearer); concurrent callers
/// queue in call order. A response resumes its caller straight from the bearer's delivery callback —
/// no reader task sits in between. Notifications and indications (confirmed automatically) arrive on
/// `notifications`. Every transaction has a timeout (30 s by default, on the injected clock); after
/// one expires the client fails and closes the bearer, as ATT prescribes.
///
/// The async methods are `nonisolated(nonsending)`: they run on the caller's executor (even the
/// main actor) and, over the in-process loopback, usually complete without a single task switch.
public final class GATTClient: Sendable {
    public struct Configuration: Sendable {
        /// ATT transaction timeout; nil disables it.
        public var transactionTimeout: Duration?
        /// Runs the transaction timeout.
        public var clock: any Clock<Duration>
        /// Notifications buffered for `notifications`; past this they are dropped and counted.
        public var notificationBufferLimit: Int

        public init(transactionTimeout: Duration? = .seconds(30), clock: any Clock<Duration> = ContinuousClock(),
                    notificationBufferLimit: Int = 1024) {
            self.transactionTimeout = transactionTimeout
            self.clock = clock
            self.notificationBufferLimit = notificationBufferLimit
        }
    }

    public let bearer: any ATTBearer
    /// Notifications and indications from the server, in arrival order (single consumer). Finishes
    /// when the connection closes.
    public let notifications: AsyncStream<GATTNotification>

    private let notificationSink: AsyncStream<GATTNotification>.Continuation
    private let timeout: Duration?
    private let clock: ErasedClock

    private struct Pending {
        let request: ATTOpcode
        let response: ATTOpcode
        let continuation: CheckedContinuation<[UInt8], Error>
        let sequence: UInt64
        var started: Duration = .zero
    }

    private struct State {
        var mtu = ATT.defaultMTU
        var inFlight: Pending?
        var waiting = FIFO<(pdu: [UInt8], pending: Pending)>()
        var failure: GATTClientError?
        var sequence: UInt64 = 0
        var watchdogStarted = false
        var watchdogParked: CheckedContinuation<Void, Never>?
        var watchdog: Task<Void, Never>?
        var droppedNotifications = 0
    }

    private let state = Locked(State())

    /// Creates the client and starts receiving on `bearer` at once.
    /// - Throws: `ATTBearerError.alreadyStarted` if the bearer already has a receiver.
    public init(bearer: any ATTBearer, configuration: Configuration = .init()) throws {
        self.bearer = bearer
        timeout = configuration.transactionTimeout
        clock = ErasedClock(configuration.clock)
        (notifications, notificationSink) = AsyncStream<GATTNotification>.makeStream(
            bufferingPolicy: .bufferingOldest(max(configuration.notificationBufferLimit, 1)))
        try bearer.start { [self] event in self.receive(event) }
    }

    /// The connection's ATT_MTU (23 until `exchangeMTU` succeeds).
    public var mtu: Int { state.withLock { $0.mtu } }

    /// Notifications dropped because `notifications` was not read fast enough.
    public var droppedNotificationCount: Int { state.withLock { $0.droppedNotifications } }

    /// Closes the connection; pending requests fail with `.closed(.local)`.
    public func close() { bearer.close() }

    // MARK: Procedures

    /// Exchange MTU (Vol 3 Part G 4.3.1). Offers min(`clientRxMTU`, link MTU); returns the new ATT_MTU.
    @discardableResult
    nonisolated(nonsending) public func exchangeMTU(clientRxMTU: Int = ATT.maximumMTU) async throws -> Int {
        let offer = UInt16(min(max(clientRxMTU, ATT.defaultMTU), bearer.linkMTU, 0xFFFF))
        let rsp = try await transact(ATTExchangeMTURequest(clientRxMTU: offer).encode(), .exchangeMTURequest,
                                     as: ATTExchangeMTUResponse.self, handle: 0)
        let mtu = max(ATT.defaultMTU, min(Int(offer), Int(rsp.serverRxMTU)))
        state.withLock { $0.mtu = mtu }
        return mtu
    }

    /// Discover All Primary Services (4.4.1): Read By Group Type over the whole handle space.
    nonisolated(nonsending) public func discoverPrimaryServices() async throws -> [GATTRemoteService] {
        var services: [GATTRemoteService] = []
        var start: UInt16 = 0x0001
        while true {
            let req = ATTReadByGroupTypeRequest(range: ATTHandleRange(start: start, end: 0xFFFF), groupType: .primaryService)
            let rsp: ATTReadByGroupTypeResponse
            do {
                rsp = try await transact(req.encode(), .readByGroupTypeRequest, as: ATTReadByGroupTypeResponse.self, handle: start)
            } catch GATTClientError.attError(.attributeNotFound, _, _) {
                return services
            }
            for e in rsp.attributeData {
                guard e.handle >= start, e.endGroupHandle >= e.handle else {
                    throw GATTClientError.invalidResponse("service range 0x\(hex16(e.handle))…0x\(hex16(e.endGroupHandle)) before 0x\(hex16(start))")
                }
                services.append(GATTRemoteService(uuid: try uuid(e.value), handles: ATTHandleRange(start: e.handle, end: e.endGroupHandle)))
            }
            guard let last = rsp.attributeData.last?.endGroupHandle, last < 0xFFFF else { return services }
            start = last + 1
        }
    }

    /// Discover Primary Service by Service UUID (4.4.2): Find By Type Value.
    nonisolated(nonsending) public func discoverPrimaryServices(uuid: BluetoothUUID) async throws -> [GATTRemoteService] {
        var services: [GATTRemoteService] = []
        var start: UInt16 = 0x0001
        while true {
            let req = ATTFindByTypeValueRequest(range: ATTHandleRange(start: start, end: 0xFFFF), attributeType: 0x2800,
                                                attributeValue: uuid.littleEndianBytes)
            let rsp: ATTFindByTypeValueResponse
            do {
                rsp = try await transact(req.encode(), .findByTypeValueRequest, as: ATTFindByTypeValueResponse.self, handle: start)
            } catch GATTClientError.attError(.attributeNotFound, _, _) {
                return services
            }
            for h in rsp.handlesInformation {
                guard h.start >= start, h.end >= h.start else { throw GATTClientError.invalidResponse("service range out of order") }
                services.append(GATTRemoteService(uuid: uuid, handles: h))
            }
            guard let last = rsp.handlesInformation.last?.end, last < 0xFFFF else { return services }
            start = last + 1
        }
    }

    /// Discover All Characteristics of a Service (4.6.1): Read By Type 0x2803 over its range.
    nonisolated(nonsending) public func discoverCharacteristics(of service: GATTRemoteService) async throws -> [GATTRemoteCharacteristic] {
        var found: [(uuid: BluetoothUUID, props: UInt8, decl: UInt16, value: UInt16)] = []
        var start = service.handles.start
        while start <= service.handles.end {
            let req = ATTReadByTypeRequest(range: ATTHandleRange(start: start, end: service.handles.end), attributeType: .characteristic)
            let rsp: ATTReadByTypeResponse
            do {
                rsp = try await transact(req.encode(), .readByTypeRequest, as: ATTReadByTypeResponse.self, handle: start)
            } catch GATTClientError.attError(.attributeNotFound, _, _) {
                break
            }
            for e in rsp.attributeData {
                let v = e.value
                guard e.handle >= start, v.count == 5 || v.count == 19 else {
                    throw GATTClientError.invalidResponse("characteristic declaration at 0x\(hex16(e.handle)) of \(v.count) bytes")
                }
                found.append((try uuid(v[3...]), v[0], e.handle, v.readLE16(at: 1)))
            }
            guard let last = rsp.attributeData.last?.handle, last < 0xFFFF else { break }
            start = last + 1
        }
        return found.enumerated().map { i, c in
            let end = i + 1 < found.count ? found[i + 1].decl - 1 : service.handles.end
            return GATTRemoteCharacteristic(uuid: c.uuid, properties: GATTCharacteristicProperties(rawValue: c.props),
                                            declarationHandle: c.decl, valueHandle: c.value, endHandle: end)
        }
    }

    /// Discover All Characteristic Descriptors (4.7.1): Find Information after the value handle.
    nonisolated(nonsending) public func discoverDescriptors(of characteristic: GATTRemoteCharacteristic) async throws -> [GATTRemoteDescriptor] {
        var out: [GATTRemoteDescriptor] = []
        guard characteristic.valueHandle < characteristic.endHandle else { return out }
        var start = characteristic.valueHandle + 1
        while start <= characteristic.endHandle {
            let req = ATTFindInformationRequest(startHandle: start, endHandle: characteristic.endHandle)
            let rsp: ATTFindInformationResponse
            do {
                rsp = try await transact(req.encode(), .findInformationRequest, as: ATTFindInformationResponse.self, handle: start)
            } catch GATTClientError.attError(.attributeNotFound, _, _) {
                break
            }
            for e in rsp.entries {
                guard e.handle >= start else { throw GATTClientError.invalidResponse("descriptor handle 0x\(hex16(e.handle)) before 0x\(hex16(start))") }
                out.append(GATTRemoteDescriptor(handle: e.handle, uuid: e.type))
            }
            guard let last = rsp.entries.last?.handle, last < 0xFFFF else { break }
            start = last + 1
        }
        return out
    }

    /// Primary services with their characteristics and descriptors.
    nonisolated(nonsending) public func discoverAll() async throws -> [GATTRemoteService] {
        var services = try await discoverPrimaryServices()
        for i in services.indices {
            var chars = try await discoverCharacteristics(of: services[i])
            for j in chars.indices {
                chars[j].descriptors = try await discoverDescriptors(of: chars[j])
            }
            services[i].characteristics = chars
        }
        return services
    }

    /// Read Long Characteristic Value (4.8.3): Read, then Read Blob while responses come back full.
    nonisolated(nonsending) public func read(_ handle: UInt16) async throws -> [UInt8] {
        var value = try await transact(ATTReadRequest(handle: handle).encode(), .readRequest,
                                       as: ATTReadResponse.self, handle: handle).value
        var chunk = mtu - 1
        var lastCount = value.count
        while lastCount == chunk && value.count < ATT.maximumAttributeValueLength {
            let req = ATTReadBlobRequest(handle: handle, offset: UInt16(value.count))
            let part: [UInt8]
            do {
                part = try await transact(req.encode(), .readBlobRequest, as: ATTReadBlobResponse.self, handle: handle).partValue
            } catch GATTClientError.attError(.attributeNotLong, _, _) {
                break
            }
            value.append(contentsOf: part)
            lastCount = part.count
            chunk = mtu - 1
        }
        guard value.count <= ATT.maximumAttributeValueLength else {
            throw GATTClientError.valueTooLong(length: value.count, maximum: ATT.maximumAttributeValueLength)
        }
        return value
    }

    /// Write Characteristic Value (4.9.3), or Write Long Characteristic Values (4.9.4) with Prepare
    /// and Execute Write when the value does not fit one Write Request (ATT_MTU-3 bytes).
    nonisolated(nonsending) public func write(_ handle: UInt16, _ value: [UInt8]) async throws {
        guard value.count <= ATT.maximumAttributeValueLength else {
            throw GATTClientError.valueTooLong(length: value.count, maximum: ATT.maximumAttributeValueLength)
        }
        let mtu = self.mtu
        if value.count <= mtu - 3 {
            _ = try await transact(ATTWriteRequest(handle: handle, value: value).encode(), .writeRequest,
                                   as: ATTWriteResponse.self, handle: handle)
            return
        }
        var offset = 0
        do {
            while offset < value.count {
                let part = Array(value[offset..<min(value.count, offset + mtu - 5)])
                let req = ATTPrepareWriteRequest(handle: handle, offset: UInt16(offset), partValue: part)
                let rsp = try await transact(req.encode(), .prepareWriteRequest, as: ATTPrepareWriteResponse.self, handle: handle)
                guard rsp.handle == req.handle, rsp.offset == req.offset, rsp.partValue == req.partValue else {
                    throw GATTClientError.preparedWriteMismatch(handle: handle, offset: req.offset)
                }
                offset += part.count
            }
        } catch let e as GATTClientError {
            // Leave no half-written queue behind on the server.
            if case .attError = e { _ = try? await transact(ATTExecuteWriteRequest(flags: .cancel).encode(), .executeWriteRequest,
                                                            as: ATTExecuteWriteResponse.self, handle: handle) }
            if case .preparedWriteMismatch = e { _ = try? await transact(ATTExecuteWriteRequest(flags: .cancel).encode(), .executeWriteRequest,
                                                                         as: ATTExecuteWriteResponse.self, handle: handle) }
            throw e
        }
        _ = try await transact(ATTExecuteWriteRequest(flags: .write).encode(), .executeWriteRequest,
                               as: ATTExecuteWriteResponse.self, handle: handle)
    }

    /// Write Without Response (4.9.1): a Write Command; nothing confirms it.
    public func writeWithoutResponse(_ handle: UInt16, _ value: [UInt8]) throws {
        let max = mtu - 3
        guard value.count <= max else { throw GATTClientError.valueTooLong(length: value.count, maximum: max) }
        if let failure = state.withLock({ $0.failure }) { throw failure }
        do {
            try bearer.send(ATTWriteCommand(handle: handle, value: value).encode())
        } catch ATTBearerError.closed(let r) {
            throw GATTClientError.closed(r)
        }
    }

    /// Enables notifications (or indications) by writing the characteristic's CCCD. Discovers the
    /// descriptors first if `characteristic.descriptors` is empty.
    nonisolated(nonsending) public func subscribe(_ characteristic: GATTRemoteCharacteristic, indications: Bool = false) async throws {
        try await writeCCCD(characteristic, indications ? 0x0002 : 0x0001)
    }

    /// Disables notifications and indications (writes 0x0000 to the CCCD).
    nonisolated(nonsending) public func unsubscribe(_ characteristic: GATTRemoteCharacteristic) async throws {
        try await writeCCCD(characteristic, 0x0000)
    }

    /// Sends one raw ATT request PDU and returns the raw response PDU (including an Error
    /// Response, which is not thrown). For tests and procedures this client does not implement.
    nonisolated(nonsending) public func rawRequest(_ pdu: [UInt8]) async throws -> [UInt8] {
        guard let first = pdu.first, let op = ATTOpcode(rawValue: first), op.isRequest else {
            throw GATTClientError.invalidResponse("not an ATT request PDU")
        }
        return try await transact(pdu, op)
    }

    nonisolated(nonsending) private func writeCCCD(_ characteristic: GATTRemoteCharacteristic, _ bits: UInt16) async throws {
        var descriptors = characteristic.descriptors
        if descriptors.isEmpty { descriptors = try await discoverDescriptors(of: characteristic) }
        guard let cccd = descriptors.first(where: { $0.uuid == .clientCharacteristicConfiguration }) else {
            throw GATTClientError.noClientConfiguration(valueHandle: characteristic.valueHandle)
        }
        try await write(cccd.handle, [UInt8(bits & 0xFF), UInt8(bits >> 8)])
    }

    private func uuid<C: Collection<UInt8>>(_ bytes: C) throws -> BluetoothUUID {
        do { return try BluetoothUUID(littleEndian: bytes) } catch { throw GATTClientError.invalidResponse(error.description) }
    }

    // MARK: Transactions

    /// Sends a request and decodes its response, turning an Error Response into `.attError`.
    nonisolated(nonsending) private func transact<R: ATTPDUCodable>(_ pdu: [UInt8], _ request: ATTOpcode, as: R.Type, handle: UInt16) async throws -> R {
        let rsp = try await transact(pdu, request)
        if rsp.first == ATTOpcode.errorResponse.rawValue {
            guard let e = try? ATTErrorResponse.decode(rsp) else { throw GATTClientError.invalidResponse("malformed Error Response") }
            throw GATTClientError.attError(e.error, handle: e.handle, request: request)
        }
        do { return try R.decode(rsp) } catch { throw GATTClientError.invalidResponse(error.description) }
    }

    private enum Admission { case fail(GATTClientError), send(startWatchdog: Bool), queued }

    nonisolated(nonsending) private func transact(_ pdu: [UInt8], _ request: ATTOpcode) async throws -> [UInt8] {
        guard let response = request.responseOpcode else { throw GATTClientError.invalidResponse("\(request) has no response") }
        let now = timeout == nil ? .zero : clock.now()
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8], Error>) in
            var seq: UInt64 = 0
            let admission: Admission = state.withLock { s in
                if let f = s.failure { return .fail(f) }
                s.sequence += 1
                seq = s.sequence
                var p = Pending(request: request, response: response, continuation: c, sequence: seq)
                guard s.inFlight == nil else {
                    s.waiting.append((pdu, p))
                    return .queued
                }
                p.started = now
                s.inFlight = p
                var startWatchdog = false
                if timeout != nil && !s.watchdogStarted { s.watchdogStarted = true; startWatchdog = true }
                return .send(startWatchdog: startWatchdog)
            }
            switch admission {
            case .fail(let e):
                c.resume(throwing: e)
            case .queued:
                break
            case .send(let startWatchdog):
                if startWatchdog { launchWatchdog() }
                transmit(pdu, sequence: seq)
            }
        }
    }

    /// Sends the in-flight request; a send failure completes it (and moves the queue on).
    private func transmit(_ pdu: [UInt8], sequence: UInt64) {
        do {
            try bearer.send(pdu)
            // Wake an idle watchdog only for a request still outstanding now: over the in-process
            // loopback most answers arrive inside `send`, and those need no timer (nor a thread hop).
            let parked: CheckedContinuation<Void, Never>? = state.withLock { s in
                guard s.inFlight?.sequence == sequence, let w = s.watchdogParked else { return nil }
                s.watchdogParked = nil
                return w
            }
            parked?.resume()
        } catch {
            let reason: ATTBearerCloseReason
            if case ATTBearerError.closed(let r) = error { reason = r } else { reason = .failure("\(error)") }
            finish(sequence: sequence, with: .failure(GATTClientError.closed(reason)))
        }
    }

    /// Completes the in-flight request if it is `sequence` (any if nil), then starts the next one.
    private func finish(sequence: UInt64?, with result: Result<[UInt8], Error>) {
        let now = timeout == nil ? .zero : clock.now()
        let (done, next): (Pending?, (pdu: [UInt8], sequence: UInt64)?) = state.withLock { s in
            guard let p = s.inFlight, sequence == nil || p.sequence == sequence else { return (nil, nil) }
            s.inFlight = nil
            guard var n = s.waiting.popFirst() else { return (p, nil) }
            n.pending.started = now
            s.inFlight = n.pending
            return (p, (n.pdu, n.pending.sequence))
        }
        done?.continuation.resume(with: result)
        if let next { transmit(next.pdu, sequence: next.sequence) }
    }

    private func launchWatchdog() {
        let task = Task { [self] in await self.watch() }
        state.withLock { s in
            if s.failure != nil { task.cancel() } else { s.watchdog = task }
        }
    }

    /// Times out the in-flight request. Sleeps until its deadline; parks while idle and is woken
    /// only by a request that is still outstanding after it was sent. In a steady stream of requests
    /// it wakes once per timeout period, not once per request.
    private func watch() async {
        guard let timeout else { return }
        while !Task.isCancelled {
            enum Look { case exit, park, wait(UInt64, Duration) }
            let look: Look = state.withLock { s in
                if s.failure != nil { return .exit }
                if let p = s.inFlight { return .wait(p.sequence, p.started + timeout) }
                return .park
            }
            switch look {
            case .exit:
                return
            case .park:
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let now: Bool = state.withLock { s in
                        if s.failure != nil || s.inFlight != nil { return true }
                        s.watchdogParked = c
                        return false
                    }
                    if now { c.resume() }
                }
            case .wait(let seq, let deadline):
                do { try await clock.sleepUntil(deadline) } catch { return }
                let expired: (Pending, [Pending])? = state.withLock { s in
                    guard let p = s.inFlight, p.sequence == seq else { return nil }
                    s.inFlight = nil
                    s.failure = .timeout(request: p.request)
                    return (p, s.waiting.removeAll().map(\.pending))
                }
                if let (p, rest) = expired {
                    p.continuation.resume(throwing: GATTClientError.timeout(request: p.request))
                    for r in rest { r.continuation.resume(throwing: GATTClientError.timeout(request: p.request)) }
                    bearer.close()
                    return
                }
            }
        }
    }

    // MARK: Receiving

    private func receive(_ event: ATTBearerEvent) {
        switch event {
        case .closed(let reason):
            let (inFlight, waiting, parked, watchdog) = state.withLock { s -> (Pending?, [Pending], CheckedContinuation<Void, Never>?, Task<Void, Never>?) in
                if s.failure == nil { s.failure = .closed(reason) }
                defer { s.inFlight = nil; s.watchdogParked = nil; s.watchdog = nil }
                return (s.inFlight, s.waiting.removeAll().map(\.pending), s.watchdogParked, s.watchdog)
            }
            let error = GATTClientError.closed(reason)
            inFlight?.continuation.resume(throwing: error)
            for p in waiting { p.continuation.resume(throwing: error) }
            parked?.resume()
            watchdog?.cancel()
            notificationSink.finish()

        case .pdu(let pdu):
            guard let raw = pdu.first else { return }  // bearers never deliver empty PDUs; be safe anyway
            switch raw {
            case ATTOpcode.handleValueNotification.rawValue:
                if let n = try? ATTHandleValueNotification.decode(pdu) {
                    publish(GATTNotification(valueHandle: n.handle, value: n.value, isIndication: false))
                }
            case ATTOpcode.handleValueIndication.rawValue:
                if let n = try? ATTHandleValueIndication.decode(pdu) {
                    publish(GATTNotification(valueHandle: n.handle, value: n.value, isIndication: true))
                    try? bearer.send(ATTHandleValueConfirmation().encode())
                }
            default:
                if let op = ATTOpcode(rawValue: raw), op.isResponse {
                    deliverResponse(pdu, op)
                } else if !ATTOpcode.isCommand(raw) && ATTOpcode(rawValue: raw)?.isRequest ?? true {
                    // A request to our (absent) server role: answer so the peer does not wait 30 s.
                    try? bearer.send(ATTErrorResponse(requestOpcode: raw, handle: 0, error: .requestNotSupported).encode())
                }
            }
        }
    }

    private func publish(_ n: GATTNotification) {
        if case .dropped = notificationSink.yield(n) {
            state.withLock { $0.droppedNotifications += 1 }
        }
    }

    private func deliverResponse(_ pdu: [UInt8], _ op: ATTOpcode) {
        let expected: Pending? = state.withLock { $0.inFlight }
        guard let p = expected else { return }  // unsolicited: nothing to match, ignore
        let matches = op == p.response || (op == .errorResponse && pdu.count >= 2 && pdu[1] == p.request.rawValue)
        if matches {
            finish(sequence: p.sequence, with: .success(pdu))
        } else {
            finish(sequence: p.sequence, with: .failure(GATTClientError.invalidResponse("\(op) in answer to \(p.request)")))
        }
    }
}
