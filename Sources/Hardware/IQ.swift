import Foundation
import MobileKey

public struct IQStatus: Sendable, Hashable, Codable {
    public let id: String
    public let name: String
    public let position: Position
    public let range: Double
    public let activated: Bool
    /// The user whose activation is in force; nil when not activated or activated by the site file.
    public let activatedBy: String?
    /// Wrong activation PINs in a row since the last right one (a lockout's end starts a new count).
    public let failedActivationAttempts: Int
    /// While set and in the future, the IQ takes no activation PIN.
    public let activationLockedUntil: Date?
    public let online: Bool
    /// Locks in reach, nearest first (at most 16).
    public let locksInReach: [String]
    public let syncInterval: UInt32
    public let lastSync: Date?
    public let recordsCollected: UInt64
    public let lastSequence: UInt64
}

/// What one sync round did.
public struct IQSyncReport: Sendable, Hashable {
    public var locksSynced: [String] = []
    /// Locks in reach that did not answer (no power).
    public var locksUnreachable: [String] = []
    public var recordsCollected = 0
    public var accessListsPushed = 0
    public var revocationListsPushed = 0
    /// Why nothing happened, if nothing did (offline, not activated).
    public var skipped: Reason?
}

/// Receives the records an IQ collected from a lock's trail (the Emulator marks them "collected").
/// Arguments: IQ id, lock id, records oldest first (a `trail_overflow` record first if records were lost).
public typealias TrailCollector = @Sendable (_ iqID: String, _ lockID: String, _ records: [AuditRecord]) -> Void

/// An IQ hub: reaches up to 16 locks by BLE within its range, and — when activated and online —
/// syncs them every `syncInterval` seconds: time, access list, revocation list, and their audit trails.
/// Remote opening goes through it, only while online and only to a lock in reach.
public actor IQ {
    public nonisolated let id: String

    private var config: IQConfig
    private let clock: any KeywayClock
    private let directory: SiteDirectory
    private var audit: AuditWriter
    private let collector: TrailCollector?
    private var activated: Bool
    private var activatedBy: String?
    private var failedActivations = 0
    private var activationLockedUntil: Date?
    private var online: Bool
    private var reach: [Lock] = []
    private var syncTimer: ClockTimer?
    private var started = false
    private var lastSync: Date?
    private var recordsCollected: UInt64 = 0
    private let uplinks: SiteUplinks?

    init(config: IQConfig, clock: any KeywayClock, directory: SiteDirectory, sink: AuditSink?,
         collector: TrailCollector?, reach: [Lock], uplinks: SiteUplinks? = nil) {
        id = config.id
        self.config = config
        self.clock = clock
        self.directory = directory
        audit = AuditWriter(deviceKind: .iq, deviceID: config.id, capacity: LockConfig.defaultTrailCapacity, sink: sink)
        self.collector = collector
        activated = config.activated
        online = config.online
        self.reach = reach
        self.uplinks = uplinks
        uplinks?.publish(iq: config.id, locks: config.online && config.activated ? reach.map(\.id) : [])
    }

    /// Tells the site's locks whether this IQ links them now (online, activated, in reach).
    private func publishUplink() {
        uplinks?.publish(iq: id, locks: online && activated ? reach.map(\.id) : [])
    }

    public var status: IQStatus {
        IQStatus(id: id, name: config.name, position: config.position, range: config.range, activated: activated,
                 activatedBy: activatedBy, failedActivationAttempts: failedActivations,
                 activationLockedUntil: activationLockedUntil.flatMap { $0 > clock.now() ? $0 : nil }, online: online, locksInReach: reach.map(\.id), syncInterval: config.syncInterval, lastSync: lastSync,
                 recordsCollected: recordsCollected, lastSequence: audit.nextSequence - 1)
    }

    public var isOnline: Bool { online }
    public var isActivated: Bool { activated }
    public var locksInReach: [String] { reach.map(\.id) }
    public var position: Position { config.position }
    public var range: Double { config.range }

    /// What an IQ remembers of its activation besides being activated (that, its uplink and where it
    /// stands are the site's to build): who activated it, wrong PINs in a row and a lockout. A snapshot
    /// saves it; its restore puts it back, recording nothing.
    public struct ActivationState: Codable, Sendable, Equatable {
        public var activatedBy: String?
        public var failedAttempts: Int
        public var lockedUntil: Date?
    }

    public func exportActivation() -> ActivationState {
        ActivationState(activatedBy: activatedBy, failedAttempts: failedActivations, lockedUntil: activationLockedUntil)
    }

    public func importActivation(_ state: ActivationState) {
        activatedBy = activated ? state.activatedBy : nil
        failedActivations = max(0, state.failedAttempts)
        activationLockedUntil = state.lockedUntil
    }
    public func trail(limit: Int = .max) -> [AuditRecord] { audit.trail.peek(limit: limit) }
    public func collectTrail(limit: Int = .max) -> [AuditRecord] { audit.drain(limit: limit, at: clock.now()) }

    // MARK: - Lifecycle

    /// Arms the periodic sync on the clock (idempotent).
    public func start() {
        guard !started else { return }
        started = true
        armSync()
    }

    public func stop() {
        started = false
        syncTimer?.cancel()
        syncTimer = nil
    }

    private func armSync() {
        syncTimer?.cancel()
        guard started else { return }
        syncTimer = clock.schedule(after: TimeInterval(config.syncInterval)) { [weak self] in
            await self?.periodicSync()
        }
    }

    private func periodicSync() async {
        syncTimer = nil
        _ = await syncNow()
        armSync()
    }

    /// Takes the IQ online or offline (its uplink). Coming online syncs at once.
    @discardableResult
    public func setOnline(_ on: Bool) async -> IQSyncReport? {
        guard on != online else { return nil }
        online = on
        publishUplink()
        audit.write(on ? .iqOnline : .iqOffline, at: clock.now())
        return on ? await syncNow() : nil
    }

    /// Wrong activation PINs in a row after which the IQ takes none for `activationLockout` seconds.
    /// SALTO publishes no figure; these follow the keypad's brute-force rule (PINLockoutPolicy).
    public static let activationAttempts = 5
    public static let activationLockout: TimeInterval = 900

    /// Activates the IQ with the PIN the platform issued, for `user` (who alone may deactivate it). Each
    /// wrong PIN is recorded (`iq_activation_failed`, with the count so far) and refused; the
    /// `activationAttempts`-th in a row locks activation for `activationLockout` seconds, during which
    /// every PIN — the right one too — is refused unchecked and recorded as `activation_locked_out`.
    /// The right PIN resets the count. Activating an IQ already activated by the same user changes
    /// nothing; by anyone else it is refused.
    public func activate(pin: String, by user: String? = nil) async throws {
        let now = clock.now()
        if let until = activationLockedUntil {
            if now < until {
                audit.write(.iqActivationFailed, at: now) {
                    $0.reason = .activationLockedOut
                    $0.userID = user
                }
                throw HardwareError.activationLockedOut(iqID: id, until: until)
            }
            activationLockedUntil = nil
            failedActivations = 0
        }
        guard pin.count <= 32, pin == config.activationPIN else {
            failedActivations += 1
            let count = failedActivations
            // The offered PIN is never recorded.
            audit.write(.iqActivationFailed, at: now) {
                $0.reason = .wrongActivationPIN
                $0.userID = user
                $0.count = UInt64(count)
            }
            if count >= IQ.activationAttempts { activationLockedUntil = now.addingTimeInterval(IQ.activationLockout) }
            throw HardwareError.wrongActivationPIN(iqID: id)
        }
        failedActivations = 0
        guard !activated else {
            if activatedBy == user { return }
            throw HardwareError.iqAlreadyActivated(iqID: id, by: activatedBy)
        }
        activated = true
        activatedBy = user
        publishUplink()
        audit.write(.iqActivated, at: clock.now()) { $0.userID = user }
        _ = await syncNow()
    }

    /// Takes the IQ out of service. Only the user whose activation is in force may; an IQ the site file
    /// activated has no such user, and any user may. `user` nil is the emulator's own tooling (tests),
    /// unchecked. A refusal is the platform's: nothing reaches the IQ and nothing is recorded.
    public func deactivate(by user: String? = nil) throws {
        guard activated else { return }
        if let owner = activatedBy, let user, user != owner {
            throw HardwareError.notActivatingUser(iqID: id, user: user)
        }
        activated = false
        activatedBy = nil
        publishUplink()
        audit.write(.iqDeactivated, at: clock.now()) { $0.userID = user }
    }

    // MARK: - Reach

    /// Set by `Site` whenever geometry changes. Locks that just came into reach are synced at once
    /// (the IQ sees their advertisements), the others at the next periodic sync.
    func setReach(_ locks: [Lock]) async {
        let old = Set(reach.map(\.id))
        reach = locks
        publishUplink()
        let newcomers = locks.filter { !old.contains($0.id) }
        if !newcomers.isEmpty, online, activated {
            var report = IQSyncReport()
            for lock in newcomers { await sync(lock, into: &report) }
        }
    }

    func move(to position: Position) { config.position = position }
    func setRange(_ range: Double) { config.range = range }

    // MARK: - Sync

    /// Syncs every lock in reach now (if online and activated).
    @discardableResult
    public func syncNow() async -> IQSyncReport {
        var report = IQSyncReport()
        guard activated else { report.skipped = .iqNotActivated; return report }
        guard online else { report.skipped = .iqOffline; return report }
        for lock in reach { await sync(lock, into: &report) }
        lastSync = clock.now()
        return report
    }

    private func sync(_ lock: Lock, into report: inout IQSyncReport) async {
        do {
            // The IQ's own time is network time: the site clock. The lock reads it when the sync
            // arrives (on its own actor), not when the IQ sent it: simulated time may move while the
            // IQ waits for the lock, and a time read before the wait would set the lock behind.
            try await lock.syncTimeToSiteClock(via: id)
            let current = await directory.accessListVersion
            if await lock.accessListVersion < current {
                let list = await directory.accessList(for: lock.id)
                if try await lock.installAccessList(list, via: id) { report.accessListsPushed += 1 }
            }
            if let signed = await directory.signedRevocationList,
               await directory.revocationList.version > lock.revocationListVersion,
               await lock.mobileKeysProvisioned {
                let before = await lock.revocationListVersion
                let after = try await lock.installRevocationList(signed: signed, via: id)
                if after > before { report.revocationListsPushed += 1 }
            }
            let lockdown = await directory.isLockedDown(lock.id)
            if await lock.isLockedDown != lockdown { try await lock.setLockdown(lockdown, via: id) }
            let records = try await lock.collectTrail(by: id)
            if !records.isEmpty {
                recordsCollected += UInt64(records.count)
                report.recordsCollected += records.count
                audit.write(.trailCollected, at: clock.now()) {
                    $0.lockID = lock.id
                    $0.count = UInt64(records.count)
                }
                collector?(id, lock.id, records)
            }
            report.locksSynced.append(lock.id)
        } catch {
            report.locksUnreachable.append(lock.id)
        }
    }

    /// Delivers the platform's lockdown state now to the given locks this IQ links (online, activated,
    /// in reach). Returns the ids of the locks that now hold it.
    public func deliverLockdown(to lockIDs: Set<String>) async -> [String] {
        guard online, activated else { return [] }
        var delivered: [String] = []
        for lock in reach where lockIDs.contains(lock.id) {
            let want = await directory.isLockedDown(lock.id)
            do {
                if await lock.isLockedDown != want { try await lock.setLockdown(want, via: id) }
                delivered.append(lock.id)
            } catch {
                continue // unpowered: it learns at a later sync
            }
        }
        return delivered
    }

    // MARK: - Remote opening

    /// Opens (or sets office mode on) a lock remotely for the platform. Only while activated and online,
    /// and only for a lock this IQ reaches.
    @discardableResult
    public func remote(_ action: TapAction = .open, lockID: String, userID: String?) async throws -> Decision {
        guard activated else { throw HardwareError.iqNotActivated(iqID: id) }
        // Refusals are recorded by the IQ: the lock never heard of them.
        func refuse(_ reason: Reason) {
            audit.write(.remoteOpenRequested, at: clock.now()) {
                $0.lockID = lockID
                $0.userID = userID
                $0.method = .remote
                $0.action = action
                $0.result = .denied
                $0.reason = reason
            }
        }
        // An offline IQ never receives the command: the platform refuses it (no IQ record).
        guard online else { throw HardwareError.iqOffline(iqID: id) }
        guard let lock = reach.first(where: { $0.id == lockID }) else {
            refuse(.notInReach)
            throw HardwareError.notInReach(lockID: lockID, iqID: id)
        }
        let decision: Decision
        do {
            decision = try await lock.remote(action, userID: userID, via: id)
        } catch let error as HardwareError {
            if case let .unpowered(_, reason) = error { refuse(reason) }
            throw error
        }
        audit.write(.remoteOpenRequested, at: clock.now()) {
            $0.lockID = lockID
            $0.userID = userID
            $0.method = .remote
            $0.action = action
            $0.result = decision.result
            $0.reason = decision.reason
        }
        return decision
    }
}
