import CBlueZ
#if canImport(Glibc)
import Glibc
#endif

/// Which HCI command set advertises.
public enum LEAdvertisingMode: String, Sendable, CaseIterable {
    /// Legacy commands; if the controller refuses them because extended advertising was used on it,
    /// fall back to an extended advertising set that sends legacy PDUs (visible to every scanner).
    case automatic
    /// Legacy commands only; a refusal is reported as `BlueZError.legacyAdvertisingDisallowed`.
    case legacy
    /// An extended advertising set (Bluetooth 5 controllers) sending legacy PDUs.
    case extended
}

/// LE advertising over a raw HCI socket bound to one adapter: sets parameters, advertising data and
/// scan response, enables and disables — and re-enables after each phone disconnects (a controller
/// stops connectable advertising when a connection is made).
///
/// Commands and their Command Complete events travel on the same non-blocking socket, read by one
/// loop that also watches LE Connection Complete and Disconnection Complete; nothing polls. Sending LE
/// commands on a raw HCI socket needs CAP_NET_RAW.
public actor BlueZAdvertiser {
    public nonisolated let adapter: BlueZAdapterInfo
    /// How long to wait for a controller's answer to one command.
    public let commandTimeout: Duration
    /// The handle of Keyway's extended advertising set (BlueZ's own instances use 0 and small numbers).
    public static let extendedSetHandle: UInt8 = 0x0A

    private let handle: BlueZSocketHandle
    private var pending: [UInt16: (token: Int, continuation: CheckedContinuation<[UInt8], Error>)] = [:]
    private var nextToken = 0
    private var reader: Task<Void, Never>?
    private var wanted: (payload: LEAdvertisingPayload, parameters: LEAdvertisingParameters)?
    /// The command set in use while advertising (nil when stopped).
    public private(set) var activeMode: LEAdvertisingMode?
    /// Connection handles of phones connected to this adapter (as peripheral).
    public private(set) var connectedHandles: Set<UInt16> = []
    /// Times advertising was turned back on after a disconnection.
    public private(set) var restartCount = 0
    /// The last failure of an automatic restart, if any (reported by `serve` loops).
    public private(set) var restartError: BlueZError?
    private var restartHandler: (@Sendable (Result<Int, BlueZError>) -> Void)?

    // Several locks (`startLocks`): each slot's lock changes only on the controller's answers (see
    // `LEConnectionAttribution`), recorded in `handleEvent` in the order the events arrive.
    /// The slots and the locks they carry while several locks are advertised (nil otherwise).
    public private(set) var roster: LEAdvertisingRoster?
    private var siteLocks: [LEAdvertisedLock] = []
    private var siteParameters = LEAdvertisingParameters()
    private var attribution = LEConnectionAttribution(extended: false)
    /// What a pending enable/disable command will change once the controller accepts it, by opcode
    /// (one command per opcode is outstanding at a time).
    private var slotIntent: [UInt16: (slot: UInt8, lock: Int?)] = [:]
    private var rotationStep = 0
    private var rotation: Task<Void, Never>?
    private var sequenceBusy = false
    private var sequenceWaiters: [CheckedContinuation<Void, Never>] = []
    private var originWaiters: [UInt16: [(token: Int, continuation: CheckedContinuation<LEConnectionOrigin, Never>)]] = [:]

    /// Called after each automatic restart of advertising: the restart count, or why it failed.
    public func onRestart(_ handler: @escaping @Sendable (Result<Int, BlueZError>) -> Void) {
        restartHandler = handler
    }

    /// Opens a raw HCI socket on `adapter` (which must be up).
    public init(adapter: BlueZAdapterInfo, commandTimeout: Duration = .seconds(3)) throws {
        guard adapter.isUp else { throw BlueZError.adapterDown(adapter.name) }
        let fd = try BlueZSys.socket(type: Int32(SOCK_RAW.rawValue), proto: BTPROTO_HCI,
                                     operation: "opening an HCI socket")
        var ok = false
        defer { if !ok { _ = Glibc.close(fd) } }

        var filter = hci_filter()
        hci_filter_clear(&filter)
        hci_filter_set_ptype(HCI_EVENT_PKT, &filter)
        for event in [EVT_CMD_COMPLETE, EVT_CMD_STATUS, EVT_DISCONN_COMPLETE, EVT_LE_META_EVENT] {
            hci_filter_set_event(event, &filter)
        }
        if let code = BlueZSys.setOption(fd, level: SOL_HCI, name: HCI_FILTER, filter) {
            throw BlueZError.classify(errno: code, operation: "setting the HCI event filter", adapter: adapter.name)
        }
        var address = sockaddr_hci()
        address.hci_family = sa_family_t(AF_BLUETOOTH)
        address.hci_dev = adapter.index
        address.hci_channel = UInt16(HCI_CHANNEL_RAW)
        if BlueZSys.withSockaddr(address, { bind(fd, $0, $1) }) < 0 {
            let code = errno
            if code == EBUSY {
                throw BlueZError.system(operation: "binding an HCI socket to \(adapter.name) (another program has "
                                        + "taken exclusive control of it through the HCI user channel)", errno: code)
            }
            throw BlueZError.classify(errno: code, operation: "binding an HCI socket to \(adapter.name)",
                                      adapter: adapter.name)
        }
        ok = true
        self.adapter = adapter
        self.commandTimeout = commandTimeout
        handle = BlueZSocketHandle(fd: fd, label: "hci.\(adapter.name)")
    }

    /// Drives a controller on the other end of `descriptor` (a connected SOCK_SEQPACKET socket speaking
    /// H4 packets, like a raw HCI socket). For tests of controller behaviour no virtual controller shows,
    /// such as a Bluetooth 5 controller refusing legacy commands. Takes ownership of the descriptor.
    init(controllerDescriptor descriptor: Int32, adapter: BlueZAdapterInfo, commandTimeout: Duration) {
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        self.adapter = adapter
        self.commandTimeout = commandTimeout
        handle = BlueZSocketHandle(fd: descriptor, label: "hci.test.\(adapter.name)")
    }

    deinit {
        reader?.cancel()
        handle.close()
    }

    // MARK: Advertising

    /// Starts advertising `payload` with `parameters`. Returns the command set that worked.
    @discardableResult
    public func start(_ payload: LEAdvertisingPayload, parameters: LEAdvertisingParameters = .init(),
                      mode: LEAdvertisingMode = .automatic) async throws -> LEAdvertisingMode {
        wanted = (payload, parameters)
        do {
            let used = try await enable(payload, parameters, mode)
            activeMode = used
            return used
        } catch {
            wanted = nil
            throw error
        }
    }

    /// Stops advertising (and no longer restarts it after disconnections).
    public func stop() async throws {
        wanted = nil
        guard let mode = activeMode else { return }
        activeMode = nil
        switch mode {
        case .extended:
            let h = Self.extendedSetHandle
            try check(await execute(.leSetExtendedAdvertisingEnable(false, handle: h)), .leSetExtendedAdvertisingEnable(false, handle: h))
            _ = try await execute(.leRemoveAdvertisingSet(handle: h))
        case .legacy, .automatic:
            try check(await execute(.leSetAdvertisingEnable(false)), .leSetAdvertisingEnable(false))
        }
    }

    /// Stops advertising if it runs and closes the socket.
    public func close() async {
        await stopLocks()
        try? await stop()
        reader?.cancel()
        reader = nil
        handle.close()
    }

    private func enable(_ payload: LEAdvertisingPayload, _ parameters: LEAdvertisingParameters,
                        _ mode: LEAdvertisingMode) async throws -> LEAdvertisingMode {
        switch mode {
        case .legacy:
            try await enableLegacy(payload, parameters)
            return .legacy
        case .extended:
            try await enableExtended(payload, parameters)
            return .extended
        case .automatic:
            do {
                try await enableLegacy(payload, parameters)
                return .legacy
            } catch BlueZError.legacyAdvertisingDisallowed {
                try await enableExtended(payload, parameters)
                return .extended
            }
        }
    }

    private func enableLegacy(_ payload: LEAdvertisingPayload, _ parameters: LEAdvertisingParameters) async throws {
        // Parameters cannot change while advertising; a controller that is not advertising may answer
        // Command Disallowed to a disable, which is fine.
        _ = try await execute(.leSetAdvertisingEnable(false))
        let setParameters = HCICommand.leSetAdvertisingParameters(parameters)
        let status = try await execute(setParameters).first ?? 0xFF
        if status == HCIStatus.commandDisallowed {
            // Bluetooth 5 controllers refuse legacy commands once extended ones were used (Core Vol 4
            // Part E §3.1.1); anything else refusing a fresh parameter set is reported as it is.
            if try await supportsExtendedAdvertising() {
                throw BlueZError.legacyAdvertisingDisallowed(adapter: adapter.name)
            }
        }
        try check([status], setParameters)
        let data = try HCICommand.leSetAdvertisingData(payload.advertisingData)
        try check(await execute(data), data)
        let scan = try HCICommand.leSetScanResponseData(payload.scanResponseData)
        try check(await execute(scan), scan)
        try check(await execute(.leSetAdvertisingEnable(true)), .leSetAdvertisingEnable(true))
    }

    private func enableExtended(_ payload: LEAdvertisingPayload, _ parameters: LEAdvertisingParameters) async throws {
        let h = Self.extendedSetHandle
        // Our own set may still be enabled from an earlier run; disabling an unknown set is harmless.
        _ = try await execute(.leSetExtendedAdvertisingEnable(false, handle: h))
        let setParameters = HCICommand.leSetExtendedAdvertisingParameters(handle: h, parameters)
        try check(await execute(setParameters), setParameters)
        let data = try HCICommand.leSetExtendedAdvertisingData(handle: h, payload.advertisingData)
        try check(await execute(data), data)
        let scan = try HCICommand.leSetExtendedScanResponseData(handle: h, payload.scanResponseData)
        try check(await execute(scan), scan)
        let on = HCICommand.leSetExtendedAdvertisingEnable(true, handle: h)
        try check(await execute(on), on)
    }

    /// LE Supported Features bit 12: LE Extended Advertising.
    public func supportsExtendedAdvertising() async throws -> Bool {
        let answer = try await execute(.leReadLocalSupportedFeatures())
        guard answer.count >= 9, answer[0] == HCIStatus.success else { return false }
        return answer[2] & 0x10 != 0
    }

    private func check(_ returnParameters: [UInt8], _ command: HCICommand) throws {
        let status = returnParameters.first ?? 0xFF
        guard status == HCIStatus.success else {
            throw BlueZError.advertisingRejected(command: command.name, status: status)
        }
    }

    // MARK: HCI command/event plumbing

    /// Sends one command and returns its Command Complete return parameters (status first), or the
    /// status of a failing Command Status.
    public func execute(_ command: HCICommand) async throws -> [UInt8] {
        startReaderIfNeeded()
        guard pending[command.opcode] == nil else {
            throw BlueZError.system(operation: "\(command.name) (another one is still outstanding)", errno: EBUSY)
        }
        nextToken += 1
        let token = nextToken
        let timeout = commandTimeout
        let packet = command.encoded()
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8], Error>) in
            let written = packet.withUnsafeBytes { Glibc.write(handle.fd, $0.baseAddress, $0.count) }
            if written != packet.count {
                let code = written < 0 ? errno : EIO
                c.resume(throwing: BlueZError.classify(errno: code, operation: "sending \(command.name) to \(adapter.name)",
                                                       adapter: adapter.name))
                return
            }
            pending[command.opcode] = (token, c)
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.expire(opcode: command.opcode, token: token, name: command.name)
            }
        }
    }

    private func expire(opcode: UInt16, token: Int, name: String) {
        guard let entry = pending[opcode], entry.token == token else { return }
        pending[opcode] = nil
        slotIntent[opcode] = nil
        entry.continuation.resume(throwing: BlueZError.hciCommandTimeout(command: name))
    }

    private func startReaderIfNeeded() {
        guard reader == nil else { return }
        reader = Task { [weak self] in await self?.readLoop() }
    }

    private func readLoop() async {
        var buffer = [UInt8](repeating: 0, count: 260)   // indicator + header + 255 parameter bytes
        while !Task.isCancelled {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(handle.fd, $0.baseAddress, $0.count) }
            if n > 0 {
                if let event = try? HCIEvent.decode(Array(buffer[0..<n])) { handleEvent(event) }
                continue
            }
            let code = n < 0 ? errno : ENETDOWN
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK {
                do { try await handle.waitReadable() } catch { failAll(BlueZError.closed); return }
                continue
            }
            // The adapter went away or down: nothing more will be answered.
            failAll(BlueZError.classify(errno: code, operation: "reading HCI events from \(adapter.name)",
                                        adapter: adapter.name))
            return
        }
    }

    private func failAll(_ error: BlueZError) {
        let waiting = pending
        pending = [:]
        slotIntent = [:]
        for (_, entry) in waiting { entry.continuation.resume(throwing: error) }
        reader = nil
    }

    private func handleEvent(_ event: HCIEvent) {
        if roster != nil { attribute(event) }
        switch event {
        case .commandComplete(let opcode, let returnParameters):
            // The slot's state changes here, in the controller's order, not when the caller resumes
            // (a connection event may be read before the caller runs again).
            if let intent = slotIntent.removeValue(forKey: opcode), returnParameters.first == HCIStatus.success {
                if let lock = intent.lock { attribution.enabled(slot: intent.slot, lock: lock) }
                else { attribution.disabled(slot: intent.slot) }
            }
            if let entry = pending.removeValue(forKey: opcode) { entry.continuation.resume(returning: returnParameters) }
        case .commandStatus(let status, let opcode) where status != HCIStatus.success:
            if let entry = pending.removeValue(forKey: opcode) { entry.continuation.resume(returning: [status]) }
        case .leConnectionComplete(let status, let connection, let role, _, _) where status == 0 && role == 0x01:
            // We are the peripheral: the controller stopped advertising to take this connection.
            connectedHandles.insert(connection)
        case .disconnectionComplete(let status, let connection, _) where status == 0:
            guard connectedHandles.remove(connection) != nil else { return }
            if wanted != nil {
                Task { [weak self] in await self?.restart() }
            }
        default:
            break
        }
    }

    /// Turns advertising back on after a phone left, so the next one finds the lock.
    private func restart() async {
        guard let w = wanted, let mode = activeMode else { return }
        do {
            _ = try await enable(w.payload, w.parameters, mode)
            restartCount += 1
            restartError = nil
            restartHandler?(.success(restartCount))
        } catch {
            let failure = (error as? BlueZError) ?? .system(operation: "restarting advertising", errno: EIO)
            restartError = failure
            restartHandler?(.failure(failure))
        }
    }
}

// MARK: Several locks on one adapter

extension BlueZAdvertiser {
    /// Advertises every lock in `locks`, each under its own static random address with its own payload:
    /// one extended advertising set per lock where the controller has enough (LE Read Number of Supported
    /// Advertising Sets), otherwise the sets (or the one legacy advertiser) time-shared, each slot moving
    /// to its next lock every `rotationInterval`. `mode` `.legacy` forces the legacy rotation.
    /// - Returns: the slots in use.
    @discardableResult
    public func startLocks(_ locks: [LEAdvertisedLock], parameters: LEAdvertisingParameters = .init(),
                           mode: LEAdvertisingMode = .automatic,
                           rotationInterval: Duration = .milliseconds(500),
                           maximumSets: Int? = nil) async throws -> LEAdvertisingRoster {
        guard !locks.isEmpty else { throw BlueZError.invalidArgument("no lock to advertise") }
        var reported: Int? = nil
        if mode != .legacy {
            let answer = try await execute(.leReadNumberOfSupportedAdvertisingSets())
            if answer.first == HCIStatus.success, answer.count >= 2, answer[1] > 0 { reported = Int(answer[1]) }
            else if mode == .extended {
                throw BlueZError.advertisingRejected(command: HCICommand.leReadNumberOfSupportedAdvertisingSets().name,
                                                     status: answer.first ?? 0xFF)
            }
        }
        var p = parameters
        p.ownAddressType = .random
        siteLocks = locks
        siteParameters = p
        rotationStep = 0
        // Fewer sets than the controller has, when asked (`maximumSets`): the rest rotate.
        var sets = reported.map { min($0, max(maximumSets ?? $0, 1)) }
        while true {
            let plan = LEAdvertisingRoster(lockCount: locks.count, availableSets: sets)
            roster = plan
            attribution = LEConnectionAttribution(extended: plan.isExtended)
            do {
                for index in plan.slots.indices { try await put(slotIndex: index) }
                break
            } catch BlueZError.advertisingRejected(_, let status)
                        where plan.isExtended && (status == 0x07 || status == 0x43) && plan.slots.count > 1 {
                // The controller counts sets others (the kernel) hold too: fewer sets, more rotation.
                await removeSets(plan)
                sets = max(1, plan.slots.count - 1)
            } catch {
                await stopLocks()
                throw error
            }
        }
        // Keep what the controller reported (the plan above may use fewer sets than that).
        let plan = LEAdvertisingRoster(reported: reported, using: roster!)
        roster = plan
        if plan.rotates {
            rotation = Task { [weak self] in
                while !Task.isCancelled {
                    do { try await Task.sleep(for: rotationInterval) } catch { return }
                    await self?.rotate()
                }
            }
        }
        return plan
    }

    /// Where the phone on `connection` came from; `.unknown` when the controller has not said within
    /// `timeout` (the accepted socket can be read before the event that made it).
    public func origin(ofConnection connection: UInt16, within timeout: Duration = .seconds(2)) async -> LEConnectionOrigin {
        if let known = attribution.origin(ofConnection: connection) { return known }
        guard roster != nil else { return .unknown }
        let handle = connection & 0x0FFF
        nextToken += 1
        let token = nextToken
        return await withCheckedContinuation { (c: CheckedContinuation<LEConnectionOrigin, Never>) in
            originWaiters[handle, default: []].append((token, c))
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.expireOrigin(handle, token)
            }
        }
    }

    /// The locks being advertised, in the order `origin` indexes them.
    public var advertisedLocks: [LEAdvertisedLock] { siteLocks }

    /// Stops every slot (and the rotation).
    public func stopLocks() async {
        rotation?.cancel()
        rotation = nil
        guard let plan = roster else { return }
        roster = nil
        await beginSequence()
        defer { endSequence() }
        do {
            for slot in plan.slots {
                if plan.isExtended {
                    _ = try? await execute(.leSetExtendedAdvertisingEnable(false, handle: slot))
                    _ = try? await execute(.leRemoveAdvertisingSet(handle: slot))
                } else {
                    _ = try? await execute(.leSetAdvertisingEnable(false))
                }
            }
        }
        for (_, waiters) in originWaiters { for w in waiters { w.continuation.resume(returning: .unknown) } }
        originWaiters = [:]
    }

    private func expireOrigin(_ handle: UInt16, _ token: Int) {
        guard var waiters = originWaiters[handle], let i = waiters.firstIndex(where: { $0.token == token }) else { return }
        let w = waiters.remove(at: i)
        originWaiters[handle] = waiters.isEmpty ? nil : waiters
        w.continuation.resume(returning: attribution.origin(ofConnection: handle) ?? .unknown)
    }

    fileprivate func attribute(_ event: HCIEvent) {
        guard let settled = attribution.handle(event) else {
            if case .disconnectionComplete(let status, _, _) = event, status == 0 { refillIdleSlots() }
            return
        }
        if let waiters = originWaiters.removeValue(forKey: settled.connection) {
            for w in waiters { w.continuation.resume(returning: settled.origin) }
        }
        // The connection stopped that slot; put its lock back on the air for the next phone.
        if let slot = settled.slot, let plan = roster, let index = plan.slots.firstIndex(of: slot) {
            Task { [weak self] in await self?.refill(slotIndex: index, reporting: true) }
        }
    }

    private func rotate() async {
        guard let plan = roster else { return }
        rotationStep += 1
        for index in plan.slots.indices where plan.cycleLength > 1 { await refill(slotIndex: index, reporting: false) }
    }

    /// After a disconnection: slots a controller could not re-enable while connected get another try.
    private func refillIdleSlots() {
        guard let plan = roster else { return }
        for (index, slot) in plan.slots.enumerated() where attribution.onAir[slot] == nil
            && plan.lock(slotIndex: index, step: rotationStep) != nil {
            Task { [weak self] in await self?.refill(slotIndex: index, reporting: true) }
        }
    }

    /// Puts slot `slotIndex`'s lock (back) on the air. `reporting`: a restart after a connection or
    /// disconnection, counted and told to `onRestart` (a rotation step is not).
    private func refill(slotIndex: Int, reporting: Bool) async {
        guard roster != nil else { return }
        do {
            try await put(slotIndex: slotIndex)
            if !reporting { restartError = nil; return }
            restartCount += 1
            restartHandler?(.success(restartCount))
        } catch {
            let failure = (error as? BlueZError) ?? .system(operation: "re-enabling advertising", errno: EIO)
            // A controller refusing every rotation step while a phone is connected is told once, not
            // every step.
            let repeated = !reporting && restartError == failure
            restartError = failure
            if !repeated { restartHandler?(.failure(failure)) }
        }
    }

    /// Puts the lock slot `slotIndex` carries at the current rotation step on the air in it (or takes the
    /// slot off the air when it carries none at this step). Address and data change only while the slot
    /// is disabled, so what a phone sees enabled always belongs together.
    private func put(slotIndex: Int) async throws {
        await beginSequence()
        defer { endSequence() }
        do {
            guard let plan = roster, slotIndex < plan.slots.count else { return }
            let slot = plan.slots[slotIndex]
            let index = plan.lock(slotIndex: slotIndex, step: rotationStep)
            let p = siteParameters
            if plan.isExtended {
                // Disabling a set that does not exist yet is answered with an error, which is fine.
                try await executeSlot(.leSetExtendedAdvertisingEnable(false, handle: slot), slot: slot, lock: nil, checked: false)
                guard let index else { return }
                let lock = siteLocks[index]
                try await checked(.leSetExtendedAdvertisingParameters(handle: slot, p))
                try await checked(.leSetAdvertisingSetRandomAddress(handle: slot, lock.address))
                try await checked(try .leSetExtendedAdvertisingData(handle: slot, lock.payload.advertisingData))
                try await checked(try .leSetExtendedScanResponseData(handle: slot, lock.payload.scanResponseData))
                try await executeSlot(.leSetExtendedAdvertisingEnable(true, handle: slot), slot: slot, lock: index, checked: true)
            } else {
                try await executeSlot(.leSetAdvertisingEnable(false), slot: slot, lock: nil, checked: false)
                guard let index else { return }
                let lock = siteLocks[index]
                try await checked(.leSetRandomAddress(lock.address))
                try await checked(.leSetAdvertisingParameters(p))
                try await checked(try .leSetAdvertisingData(lock.payload.advertisingData))
                try await checked(try .leSetScanResponseData(lock.payload.scanResponseData))
                try await executeSlot(.leSetAdvertisingEnable(true), slot: slot, lock: index, checked: true)
            }
        }
    }

    private func removeSets(_ plan: LEAdvertisingRoster) async {
        await beginSequence()
        defer { endSequence() }
        do {
            for slot in plan.slots {
                _ = try? await executeSlot(.leSetExtendedAdvertisingEnable(false, handle: slot), slot: slot, lock: nil, checked: false)
                _ = try? await execute(.leRemoveAdvertisingSet(handle: slot))
            }
        }
    }

    private func checked(_ command: HCICommand) async throws {
        let status = try await execute(command).first ?? 0xFF
        guard status == HCIStatus.success else { throw BlueZError.advertisingRejected(command: command.name, status: status) }
    }

    /// An enable or disable whose acceptance changes what the slot carries (recorded in `handleEvent`).
    private func executeSlot(_ command: HCICommand, slot: UInt8, lock: Int?, checked: Bool) async throws {
        slotIntent[command.opcode] = (slot, lock)
        let status = try await execute(command).first ?? 0xFF
        if checked && status != HCIStatus.success {
            throw BlueZError.advertisingRejected(command: command.name, status: status)
        }
    }

    /// Command sequences run one after another (each needs its commands in order, and only one command
    /// per opcode may be outstanding): the turn passes straight to the next waiter.
    fileprivate func beginSequence() async {
        if sequenceBusy { await withCheckedContinuation { sequenceWaiters.append($0) } } else { sequenceBusy = true }
    }

    fileprivate func endSequence() {
        if sequenceWaiters.isEmpty { sequenceBusy = false } else { sequenceWaiters.removeFirst().resume() }
    }
}
