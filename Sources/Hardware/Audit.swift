import Foundation
import MobileKey
import KeywayCrypto
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which kind of device wrote an audit record.
public enum DeviceKind: String, Sendable, Hashable, Codable {
    case lock
    case doorController = "door_controller"
    case iq
}

/// How someone asked for access.
public enum AccessMethod: String, Sendable, Hashable, Codable, CaseIterable {
    case mobile
    case tag
    case pin
    /// Through an IQ, from the platform (app or dashboard).
    case remote
    /// The request-to-exit button of a door controller.
    case exitButton = "exit_button"
    /// On the device itself by a technician or the QA engineer (no credential).
    case manual
}

public enum AccessResult: String, Sendable, Hashable, Codable {
    case granted
    case denied
}

/// What happened. Raw values are stable snake_case names (the Events module maps them to event types).
public enum AuditKind: String, Sendable, Hashable, Codable, CaseIterable {
    // Lock decisions and state.
    case accessGranted = "access_granted"
    case accessDenied = "access_denied"
    case unlocked
    case locked
    /// The lock cannot tell whether it is secured (battery depleted, door ajar at relock).
    case lockUncertain = "lock_uncertain"
    case officeModeStarted = "office_mode_started"
    case officeModeEnded = "office_mode_ended"
    case batteryLow = "battery_low"
    case batteryDepleted = "battery_depleted"
    case batteryReplaced = "battery_replaced"
    case keypadLockedOut = "keypad_locked_out"
    /// Records were lost from the device's bounded trail before an IQ collected them.
    case trailOverflow = "trail_overflow"
    case accessListUpdated = "access_list_updated"
    case revocationListUpdated = "revocation_list_updated"
    case timeSynced = "time_synced"
    case lockdownStarted = "lockdown_started"
    case lockdownEnded = "lockdown_ended"
    // Door controller.
    case doorOpened = "door_opened"
    case doorClosed = "door_closed"
    case doorForcedOpen = "door_forced_open"
    case doorHeldOpen = "door_held_open"
    case powerLost = "power_lost"
    case powerRestored = "power_restored"
    // IQ.
    case iqOnline = "iq_online"
    case iqOffline = "iq_offline"
    case iqActivated = "iq_activated"
    case iqActivationFailed = "iq_activation_failed"
    case iqDeactivated = "iq_deactivated"
    case trailCollected = "trail_collected"
    case remoteOpenRequested = "remote_open_requested"
}

/// A machine-readable reason: why access was denied, or what caused a state change. A string-backed
/// value rather than a closed enum so that the verifier's reasons (`MobileKey.DenialReason`, e.g.
/// `bad_signature`) pass through unchanged next to the hardware's own.
public struct Reason: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible,
                      ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public init(_ denial: DenialReason) { rawValue = denial.rawValue }
    /// A tap protocol refusal under its one name (`TapDenial.code`).
    public init(_ denial: TapDenial) { rawValue = denial.code }
    public var description: String { rawValue }

    // Denials decided by the lock for tags and PINs (the mobile ones come from DenialReason and
    // share its names where the meaning is the same).
    /// A tag UID that is not on this lock's access list.
    public static let unknownTag: Reason = "unknown_tag"
    /// A PIN that is not on this lock's access list.
    public static let wrongPIN: Reason = "wrong_pin"
    /// Too many wrong PINs: the keypad refuses every PIN for a while.
    public static let keypadLockedOut: Reason = "keypad_locked_out"
    /// The lock has no keypad.
    public static let noKeypad: Reason = "no_keypad"
    public static let notYetValid = Reason(DenialReason.notYetValid)
    public static let expired = Reason(DenialReason.expired)
    public static let outsideSchedule = Reason(DenialReason.outsideSchedule)
    public static let revoked = Reason(DenialReason.revoked)
    /// The credential lacks the right the action needs (office mode).
    public static let actionNotPermitted: Reason = "action_not_permitted"
    /// Office mode was asked of a lock whose access type is `grant` (credentials only open there).
    public static let officeModeNotEnabled: Reason = "office_mode_not_enabled"
    /// The lock has no trust anchor for mobile keys (site keys not provisioned).
    public static let mobileKeysNotProvisioned: Reason = "mobile_keys_not_provisioned"
    /// A door controller has no power: its reader is dark and its relay cannot move.
    public static let noPower: Reason = "no_power"
    /// The lock is not sure it is secured and refuses to act until it has relocked.
    public static let lockUncertain: Reason = "lock_uncertain"
    /// The directory blocks the user (any credential).
    public static let userBlocked: Reason = "user_blocked"
    /// The lock is in lockdown and the user is in no `lockdown_override` group.
    public static let lockedDown: Reason = "locked_down"
    /// The lock reaches no online IQ and the tag is not on its offline list (SALTO KS offline access).
    public static let offlineNotPermitted: Reason = "offline_not_permitted"
    /// The user's only way in here is a booking whose window (grace included) has not begun…
    public static let membershipNotStarted: Reason = "membership_not_started"
    /// … or has ended (or was for another time).
    public static let membershipEnded: Reason = "membership_ended"

    // Causes of state changes.
    public static let credential: Reason = "credential"
    public static let openTimeElapsed: Reason = "open_time_elapsed"
    public static let lockSchedule: Reason = "lock_schedule"
    public static let easyOfficeModeEnded: Reason = "easy_office_mode_ended"
    /// The lock was switched to access type `grant` while in office mode.
    public static let accessTypeChanged: Reason = "access_type_changed"
    public static let powerLost: Reason = "power_lost"
    public static let powerRestored: Reason = "power_restored"
    public static let doorAjar: Reason = "door_ajar"
    public static let doorClosed: Reason = "door_closed"
    public static let batteryDepleted: Reason = "battery_depleted"
    public static let batteryReplaced: Reason = "battery_replaced"
    public static let heldOpenLimit: Reason = "held_open_limit"
    public static let platformLockdown: Reason = "platform_lockdown"

    // IQ outcomes.
    public static let iqOffline: Reason = "iq_offline"
    public static let iqNotActivated: Reason = "iq_not_activated"
    public static let notInReach: Reason = "not_in_reach"
    public static let wrongActivationPIN: Reason = "wrong_activation_pin"
    /// An activation PIN offered while the IQ refuses them after too many wrong ones.
    public static let activationLockedOut: Reason = "activation_locked_out"
}

/// One entry of a device's audit trail: who did what, where, when (device time), how, with what result.
///
/// Hardware does not depend on the Events module; the Emulator maps records to CloudEvents. A record's
/// identity is (device kind, device id, sequence): the sequence is per device, starts at 1 and has no
/// gaps, so a consumer can see exactly which records it holds and which were lost.
public struct AuditRecord: Sendable, Hashable, Codable {
    public var deviceKind: DeviceKind
    public var deviceID: String
    public var sequence: UInt64
    /// Device time: the lock's own clock (which may have drifted until an IQ syncs it).
    public var time: Date
    public var kind: AuditKind
    /// The lock concerned, for records of a controller or an IQ (a lock's own records name itself).
    public var lockID: String?
    /// The IQ involved: the one a remote opening or a sync came through.
    public var iqID: String?
    public var userID: String?
    /// The credential: hex of a mobile key's 16-byte `cti`, or a tag UID (`04:A2:…`). Never a PIN.
    public var keyID: String?
    public var method: AccessMethod?
    public var action: TapAction?
    public var result: AccessResult?
    public var reason: Reason?
    /// The lock's state after a state-change record (`locked`, `unlocked`, `office_mode_*`, …).
    public var lockState: LockState?
    /// The revocation list version the lock held when it decided (mobile decisions and list updates).
    public var revocationListVersion: UInt64?
    /// The access list version the lock held (tag and PIN decisions, list updates).
    public var accessListVersion: UInt64?
    /// Seconds the lock stays unlocked for this grant.
    public var openTime: UInt16?
    /// Battery percentage, for battery records.
    public var batteryLevel: UInt8?
    /// For `trail_overflow`: how many records were lost and their sequence numbers.
    public var lostCount: UInt64?
    public var lostSequences: ClosedRange<UInt64>?
    /// For `trail_collected`: how many records an IQ collected.
    public var count: UInt64?
    /// Free text for people (never secrets).
    public var detail: String?

    public init(deviceKind: DeviceKind, deviceID: String, sequence: UInt64, time: Date, kind: AuditKind,
                lockID: String? = nil, iqID: String? = nil, userID: String? = nil, keyID: String? = nil,
                method: AccessMethod? = nil, action: TapAction? = nil, result: AccessResult? = nil,
                reason: Reason? = nil, lockState: LockState? = nil, revocationListVersion: UInt64? = nil, accessListVersion: UInt64? = nil,
                openTime: UInt16? = nil, batteryLevel: UInt8? = nil, lostCount: UInt64? = nil,
                lostSequences: ClosedRange<UInt64>? = nil, count: UInt64? = nil, detail: String? = nil) {
        self.deviceKind = deviceKind
        self.deviceID = deviceID
        self.sequence = sequence
        self.time = time
        self.kind = kind
        self.lockID = lockID
        self.iqID = iqID
        self.userID = userID
        self.keyID = keyID
        self.method = method
        self.action = action
        self.result = result
        self.reason = reason
        self.lockState = lockState
        self.revocationListVersion = revocationListVersion
        self.accessListVersion = accessListVersion
        self.openTime = openTime
        self.batteryLevel = batteryLevel
        self.lostCount = lostCount
        self.lostSequences = lostSequences
        self.count = count
        self.detail = detail
    }
}

/// One durable write of a device: a new record (or none), the sequence numbers its trail dropped to
/// make room for it, the trail handed to an IQ, and the device's memory after the change. The store
/// applies it all or nothing, in the order the device made its writes — so after a crash a device
/// comes back exactly as its last durable write left it (a lock's flash).
public struct AuditWrite: Sendable {
    public let deviceKind: DeviceKind
    public let deviceID: String
    public var record: AuditRecord?
    /// Records the trail dropped, oldest first, before any IQ collected them: they are lost.
    public var dropped: [UInt64]
    /// The trail was handed to this IQ, through this sequence.
    public var collectedBy: String?
    public var collectedThrough: UInt64?
    /// Named parts of the device's memory, as they are after this write.
    public var memory: [String: [UInt8]]

    public init(deviceKind: DeviceKind, deviceID: String, record: AuditRecord? = nil, dropped: [UInt64] = [],
                collectedBy: String? = nil, collectedThrough: UInt64? = nil, memory: [String: [UInt8]] = [:]) {
        self.deviceKind = deviceKind
        self.deviceID = deviceID
        self.record = record
        self.dropped = dropped
        self.collectedBy = collectedBy
        self.collectedThrough = collectedThrough
        self.memory = memory
    }
}

/// What a device's flash held when it last ran: restored when the device is built.
public struct SavedDevice: Sendable {
    /// The device's last sequence number: numbering continues after it, never repeating one.
    public var lastSequence: UInt64
    /// The records still in its trail (not yet collected, not lost), oldest first.
    public var trail: [AuditRecord]
    /// Its memory parts as of its last durable write (empty: back to the site file's state).
    public var memory: [String: [UInt8]]

    public init(lastSequence: UInt64, trail: [AuditRecord] = [], memory: [String: [UInt8]] = [:]) {
        self.lastSequence = lastSequence
        self.trail = trail
        self.memory = memory
    }
}

/// Becomes the event id of a write once the store made it durable (nil if the store refused the record).
/// Returned to whoever caused the write — a decision carries it — so the id comes back on the call chain.
public final class AuditReceipt: Sendable, Equatable {
    private let state = PthreadLocked<(done: Bool, id: String?, waiters: [CheckedContinuation<String?, Never>])>((false, nil, []))

    public init() {}

    public static func == (a: AuditReceipt, b: AuditReceipt) -> Bool { a === b }

    /// Settles the receipt (once; later calls are ignored).
    public func resolve(_ id: String?) {
        let waiters: [CheckedContinuation<String?, Never>] = state.withLock { s in
            guard !s.done else { return [] }
            s.done = true
            s.id = id
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: id) }
    }

    /// The event id, once the write is durable.
    public func eventID() async -> String? {
        await withCheckedContinuation { (c: CheckedContinuation<String?, Never>) in
            let now: String?? = state.withLock { s in
                if s.done { return .some(s.id) }
                s.waiters.append(c)
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }
}

/// A device's durable storage — its flash (the Emulator: the event journal). Devices call it
/// synchronously on their actor, in the order they write; it must not block.
public protocol AuditStore: AnyObject, Sendable {
    /// What device `id` of `kind` held when it last ran (nil: a new device).
    func saved(_ kind: DeviceKind, _ id: String) -> SavedDevice?
    /// Queues one write; the receipt settles once it is durable.
    func write(_ write: AuditWrite) -> AuditReceipt
}

/// Receives every write of the devices of a site (the Emulator journals it durably).
public typealias AuditSink = any AuditStore

/// A device's bounded on-board trail: the records no IQ has collected yet, oldest first.
///
/// When full, the oldest record is dropped to make room and the loss is counted: this trail alone
/// decides what an offline device loses (the store is told of each drop in the same write). The drain
/// that empties it reports the loss as a `trail_overflow` record (written by the device, so it has its
/// own sequence number, after the kept ones) naming how many records and which sequence numbers were
/// lost. Loss is never silent. Storage grows only as records arrive, so 10,000 idle locks cost nothing.
public struct AuditTrail: Sendable {
    public let capacity: Int
    private var storage: [AuditRecord] = []
    private var head = 0
    public private(set) var count = 0
    /// Records dropped since the last drain.
    public private(set) var lost: UInt64 = 0
    public private(set) var lostSequences: ClosedRange<UInt64>?

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    public var isEmpty: Bool { count == 0 }

    /// Appends `record`; returns the sequence of the record dropped to make room, if the trail was full.
    @discardableResult
    public mutating func append(_ record: AuditRecord) -> UInt64? {
        if storage.count < capacity {
            storage.append(record)
            count += 1
            return nil
        }
        if count == capacity {
            let dropped = storage[head].sequence
            lost += 1
            lostSequences = lostSequences.map { min($0.lowerBound, dropped)...max($0.upperBound, dropped) } ?? dropped...dropped
            storage[head] = record
            head = (head + 1) % capacity
            return dropped
        } else {
            storage[(head + count) % capacity] = record
            count += 1
            return nil
        }
    }

    /// The loss bookkeeping a restart must keep (records dropped since the last collection).
    struct Loss: Codable, Equatable {
        var count: UInt64
        var first: UInt64
        var last: UInt64
    }

    var pendingLoss: Loss? {
        guard lost > 0, let r = lostSequences else { return nil }
        return Loss(count: lost, first: r.lowerBound, last: r.upperBound)
    }

    mutating func restoreLoss(_ loss: Loss) {
        lost = loss.count
        lostSequences = loss.first...max(loss.first, loss.last)
    }

    /// The oldest records, up to `limit`, without removing them.
    public func peek(limit: Int = .max) -> [AuditRecord] {
        let n = min(limit, count)
        return (0..<n).map { storage[(head + $0) % storage.count] }
    }

    /// Removes and returns the oldest records, up to `limit`.
    public mutating func removeOldest(limit: Int = .max) -> [AuditRecord] {
        let out = peek(limit: limit)
        head = storage.isEmpty ? 0 : (head + out.count) % storage.count
        count -= out.count
        if count == 0 {
            // Give the memory back: a drained trail of an idle lock should cost nothing.
            storage = []
            head = 0
        }
        return out
    }

    /// Takes the pending loss report (count and sequence range), resetting it.
    public mutating func takeLoss() -> (count: UInt64, sequences: ClosedRange<UInt64>)? {
        guard lost > 0, let range = lostSequences else { return nil }
        defer { lost = 0; lostSequences = nil }
        return (lost, range)
    }
}

/// Numbering and persistence shared by every device: assigns the next sequence number, keeps the
/// record in the trail (which alone decides what is lost when full) and hands the store one write per
/// change — the record, what the trail dropped, and the device's memory — so the store always holds
/// exactly what the device holds.
struct AuditWriter: Sendable {
    let deviceKind: DeviceKind
    let deviceID: String
    var sink: AuditSink?
    private(set) var nextSequence: UInt64 = 1
    var trail: AuditTrail
    /// The receipt of the last write (a decision hands it to its caller).
    private(set) var lastReceipt: AuditReceipt?
    /// The memory parts the device saved last time it ran (consumed by the device when it is built).
    let savedMemory: [String: [UInt8]]

    static let trailPart = "trail"

    init(deviceKind: DeviceKind, deviceID: String, capacity: Int, sink: AuditSink?) {
        self.deviceKind = deviceKind
        self.deviceID = deviceID
        self.sink = sink
        trail = AuditTrail(capacity: capacity)
        let saved = sink?.saved(deviceKind, deviceID)
        savedMemory = saved?.memory ?? [:]
        guard let saved else { return }
        nextSequence = saved.lastSequence + 1
        var dropped: [UInt64] = []
        if let bytes = saved.memory[Self.trailPart], let loss = try? JSONDecoder().decode(AuditTrail.Loss.self, from: Data(bytes)) {
            trail.restoreLoss(loss)
        }
        for r in saved.trail.sorted(by: { $0.sequence < $1.sequence }) {
            if let d = trail.append(r) { dropped.append(d) }
        }
        // A trail restored into a smaller capacity (the site file changed) loses its oldest records now.
        if !dropped.isEmpty {
            _ = sink?.write(AuditWrite(deviceKind: deviceKind, deviceID: deviceID, dropped: dropped, memory: trailMemory()))
        }
    }

    /// The trail's part of the device memory (locks only: other devices are on the network).
    private func trailMemory() -> [String: [UInt8]] {
        guard deviceKind == .lock else { return [:] }
        let loss = trail.pendingLoss ?? AuditTrail.Loss(count: 0, first: 0, last: 0)
        return [Self.trailPart: Array((try? JSONEncoder().encode(loss)) ?? Data())]
    }

    /// Builds a record of `kind` at `time`, lets `fill` set the details, numbers it, keeps it in the
    /// trail and writes it, with whatever the trail dropped and `memory`, to the store.
    @discardableResult
    mutating func write(_ kind: AuditKind, at time: Date, memory: [String: [UInt8]] = [:],
                        _ fill: (inout AuditRecord) -> Void = { _ in }) -> AuditRecord {
        var r = AuditRecord(deviceKind: deviceKind, deviceID: deviceID, sequence: nextSequence, time: time, kind: kind)
        fill(&r)
        r.deviceKind = deviceKind
        r.deviceID = deviceID
        r.sequence = nextSequence
        nextSequence += 1
        let dropped = trail.append(r)
        var parts = memory
        if dropped != nil || deviceKind == .lock { parts.merge(trailMemory()) { a, _ in a } }
        lastReceipt = sink?.write(AuditWrite(deviceKind: deviceKind, deviceID: deviceID, record: r,
                                             dropped: (deviceKind == .lock ? dropped.map { [$0] } : nil) ?? [],
                                             memory: parts))
        return r
    }

    /// Stores the device's memory with no record (a state change nothing reports, e.g. a clock offset).
    mutating func persist(memory: [String: [UInt8]]) {
        guard sink != nil else { return }
        lastReceipt = sink?.write(AuditWrite(deviceKind: deviceKind, deviceID: deviceID, memory: memory.merging(trailMemory()) { a, _ in a }))
    }

    /// Hands up to `limit` records, oldest first, to a collector. When the drain empties the trail and
    /// records were lost since the last one, a fresh `trail_overflow` record (with its own, higher
    /// sequence number) comes last, naming how many records and which sequence numbers were lost. The
    /// store learns of the hand-over in the same write, so the records collected are exactly the ones
    /// the trail kept — a lost record never reaches the network.
    mutating func drain(limit: Int, at time: Date, by collector: String? = nil, memory: [String: [UInt8]] = [:]) -> [AuditRecord] {
        var out = trail.removeOldest(limit: max(0, limit))
        var overflow: AuditRecord?
        if trail.isEmpty, let loss = trail.takeLoss() {
            var r = AuditRecord(deviceKind: deviceKind, deviceID: deviceID, sequence: nextSequence, time: time, kind: .trailOverflow)
            nextSequence += 1
            r.lostCount = loss.count
            r.lostSequences = loss.sequences
            r.reason = "trail_full"
            r.detail = "audit trail overflowed: \(loss.count) records lost (sequences \(loss.sequences.lowerBound)–\(loss.sequences.upperBound))"
            overflow = r
            out.append(r)
        }
        guard !out.isEmpty else { return out }
        lastReceipt = sink?.write(AuditWrite(deviceKind: deviceKind, deviceID: deviceID, record: overflow,
                                             collectedBy: collector, collectedThrough: out.map(\.sequence).max(),
                                             memory: memory.merging(trailMemory()) { a, _ in a }))
        return out
    }
}
