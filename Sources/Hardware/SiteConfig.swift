import Foundation

// The site as configured: plain values, validated by `SiteFile` and turned into devices by `Site`.
// Kept compact (small enums, fixed-width integers, no per-item dictionaries) because a generated
// 10,000-lock site must fit in well under 10 KiB per lock including its runtime actor.

/// The four kinds of battery BLE lock of the brief.
public enum LockKind: String, Sendable, Hashable, Codable, CaseIterable {
    case escutcheon
    case cylinder
    case wallReader = "wall_reader"
    case locker
}

/// What a door controller's relay drives, and therefore what happens when power is lost.
public enum RelayKind: String, Sendable, Hashable, Codable, CaseIterable {
    /// Energise to unlock; stays locked without power (the usual strike).
    case electricStrikeFailSecure = "electric_strike_fail_secure"
    /// Energise to lock; unlocks without power.
    case electricStrikeFailSafe = "electric_strike_fail_safe"
    /// Energise to lock; always fail-safe (fire codes): releases on power loss.
    case magLock = "mag_lock"

    /// Whether the door is free (not held) when the relay coil is not energised.
    public var failSafe: Bool { self != .electricStrikeFailSecure }
}

/// An RFID tag / fob UID: 4, 7 or 10 bytes for ISO 14443 cards, anything from 4 to 10 bytes accepted.
/// Stored inline (no heap allocation) so that access lists of thousands of tags stay small.
public struct TagUID: Sendable, Hashable, Codable, CustomStringConvertible {
    private let low: UInt64
    private let high: UInt16
    public let count: UInt8

    public static let maximumLength = 10
    public static let minimumLength = 4

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count >= TagUID.minimumLength, bytes.count <= TagUID.maximumLength else { return nil }
        var lo: UInt64 = 0, hi: UInt16 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { lo |= UInt64(b) << (8 * UInt64(i)) } else { hi |= UInt16(b) << (8 * UInt16(i - 8)) }
        }
        low = lo
        high = hi
        count = UInt8(bytes.count)
    }

    /// Parses hex with optional `:`, `-` or space separators between bytes (`04:A2:3B:1C`, `04a23b1c`).
    public init?(hex text: String) {
        var bytes: [UInt8] = []
        var nibble: UInt8?
        for ch in text.utf8 {
            if ch == UInt8(ascii: ":") || ch == UInt8(ascii: "-") || ch == UInt8(ascii: " ") {
                if nibble != nil { return nil }
                continue
            }
            let v: UInt8
            switch ch {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = ch - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = ch - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = ch - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let hi = nibble { bytes.append(hi << 4 | v); nibble = nil } else { nibble = v }
            if bytes.count > TagUID.maximumLength { return nil }
        }
        guard nibble == nil else { return nil }
        self.init(bytes: bytes)
    }

    public var bytes: [UInt8] {
        (0..<Int(count)).map { i in i < 8 ? UInt8(truncatingIfNeeded: low >> (8 * UInt64(i))) : UInt8(truncatingIfNeeded: high >> (8 * UInt16(i - 8))) }
    }

    /// Canonical form: upper-case hex bytes separated by colons.
    public var description: String {
        bytes.map { b in
            let s = String(b, radix: 16, uppercase: true)
            return b < 16 ? "0" + s : s
        }.joined(separator: ":")
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let uid = TagUID(hex: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid tag UID"))
        }
        self = uid
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

public struct BatteryConfig: Sendable, Hashable, Codable {
    /// Percent, 0…100.
    public var level: UInt8
    /// Below this percentage the lock reports a low battery.
    public var lowThreshold: UInt8

    public init(level: UInt8 = 100, lowThreshold: UInt8 = 20) {
        self.level = min(level, 100)
        self.lowThreshold = min(lowThreshold, 100)
    }
}

/// Keypad brute-force protection: after `attempts` consecutive wrong PINs the keypad refuses every PIN,
/// even a right one, for `duration` seconds.
public struct PINLockoutPolicy: Sendable, Hashable, Codable {
    public var attempts: UInt8
    public var durationSeconds: UInt32

    public init(attempts: UInt8 = 5, durationSeconds: UInt32 = 300) {
        self.attempts = max(attempts, 1)
        self.durationSeconds = max(durationSeconds, 1)
    }
}

public struct LockConfig: Sendable, Hashable {
    public static let openTimeRange: ClosedRange<Int> = 1...240
    public static let defaultOpenTime = 7
    public static let trailCapacityRange: ClosedRange<Int> = 2...1_000_000
    public static let defaultTrailCapacity = 1_000
    public static let defaultOfflineCapacity = 39
    public static let offlineCapacityRange: ClosedRange<Int> = 0...1_000
    /// A reader's reach a site file may set (`reach_m`): from a 1 cm touch to a 10 m hands-free zone.
    public static let reachRange: ClosedRange<Double> = 0.01...10

    public var id: String
    public var name: String
    public var kind: LockKind
    public var position: Position
    /// Seconds a grant keeps the lock unlocked, 1…240.
    public var openTime: UInt8
    /// Local times at which the lock locks (never unlocks).
    public var lockSchedule: [ScheduledTime]
    /// Windows during which a credential with the office right toggles office mode with a simple tap and
    /// at whose end an office mode so started ends.
    public var easyOfficeMode: Timetable
    /// Whether credentials may toggle office mode here at all (set at runtime with PATCH /v1/locks).
    public var accessType: LockAccessType = .grantOfficeMode
    /// nil for a reader powered by a door controller.
    public var battery: BatteryConfig?
    public var keypad: Bool
    public var trailCapacity: UInt32
    public var pinLockout: PINLockoutPolicy
    /// Users the lock's offline list holds at most (SALTO KS firmware: 39 on most locks).
    public var offlineCapacity: Int
    /// The reader's reach in metres when the site file sets it (`reach_m`); nil: its kind's (`ReaderReach`).
    public var reach: Double?

    /// How far from the reader a phone, fob or card is still read: `reach`, else the kind's.
    public var readerReach: Double { reach ?? ReaderReach.maximumDistance(for: kind) }

    public init(id: String, name: String? = nil, kind: LockKind, position: Position = Position(x: 0, y: 0),
                openTime: Int = LockConfig.defaultOpenTime, lockSchedule: [ScheduledTime] = [],
                easyOfficeMode: Timetable = .never, battery: BatteryConfig? = BatteryConfig(),
                keypad: Bool? = nil, trailCapacity: Int = LockConfig.defaultTrailCapacity,
                pinLockout: PINLockoutPolicy = PINLockoutPolicy(), offlineCapacity: Int = LockConfig.defaultOfflineCapacity,
                reach: Double? = nil) {
        self.id = id
        self.name = name ?? id
        self.kind = kind
        self.position = position
        self.openTime = UInt8(clamping: min(max(openTime, 1), 240))
        self.lockSchedule = lockSchedule
        self.easyOfficeMode = easyOfficeMode
        self.battery = battery
        self.keypad = keypad ?? (kind == .wallReader)
        self.trailCapacity = UInt32(clamping: min(max(trailCapacity, 2), 1_000_000))
        self.pinLockout = pinLockout
        self.offlineCapacity = min(max(offlineCapacity, 0), LockConfig.offlineCapacityRange.upperBound)
        self.reach = reach.map { min(max($0, LockConfig.reachRange.lowerBound), LockConfig.reachRange.upperBound) }
    }
}

public struct DoorControllerConfig: Sendable, Hashable {
    public static let heldOpenLimitRange: ClosedRange<Int> = 1...3_600
    public static let defaultHeldOpenLimit = 30

    public var id: String
    public var name: String
    /// The lock (its reader) whose decisions this controller's relay carries out.
    public var lockID: String
    public var relay: RelayKind
    public var doorPositionSwitch: Bool
    public var requestToExit: Bool
    /// Seconds an authorised opening may last before the held-open alarm.
    public var heldOpenLimit: UInt32

    public init(id: String, name: String? = nil, lockID: String, relay: RelayKind,
                doorPositionSwitch: Bool = true, requestToExit: Bool = true,
                heldOpenLimit: Int = DoorControllerConfig.defaultHeldOpenLimit) {
        self.id = id
        self.name = name ?? id
        self.lockID = lockID
        self.relay = relay
        self.doorPositionSwitch = doorPositionSwitch
        self.requestToExit = requestToExit
        self.heldOpenLimit = UInt32(clamping: min(max(heldOpenLimit, 1), 3_600))
    }
}

public struct IQConfig: Sendable, Hashable {
    public static let syncIntervalRange: ClosedRange<Int> = 1...86_400
    public static let defaultSyncInterval = 60
    public static let rangeLimits: ClosedRange<Double> = 0.1...100

    public var id: String
    public var name: String
    public var position: Position
    /// Metres; default 9.144 (30 ft).
    public var range: Double
    /// The PIN requested from the platform and entered on the IQ to activate it. Never logged.
    public var activationPIN: String
    /// Whether the IQ is activated when the site starts.
    public var activated: Bool
    /// Whether the IQ has its internet uplink when the site starts.
    public var online: Bool
    public var syncInterval: UInt32
    /// Explicit pairing: if set, the IQ serves only these locks (when in range). At most 16.
    public var pairedLocks: [String]?

    public init(id: String, name: String? = nil, position: Position, range: Double = IQRadio.defaultRange,
                activationPIN: String, activated: Bool = true, online: Bool = true,
                syncInterval: Int = IQConfig.defaultSyncInterval, pairedLocks: [String]? = nil) {
        self.id = id
        self.name = name ?? id
        self.position = position
        self.range = range
        self.activationPIN = activationPIN
        self.activated = activated
        self.online = online
        self.syncInterval = UInt32(clamping: min(max(syncInterval, 1), 86_400))
        self.pairedLocks = pairedLocks
    }
}

/// Which locks an access group opens.
public enum LockSelection: Sendable, Hashable, Codable {
    case all
    case only([String])

    public func includes(_ lockID: String) -> Bool {
        switch self {
        case .all: return true
        case .only(let ids): return ids.contains(lockID)
        }
    }
}

public struct AccessGroupConfig: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var locks: LockSelection
    public var schedule: Timetable
    /// Members may start and end office mode on the group's locks.
    public var officeMode: Bool
    /// Members still open the group's locks during a lockdown (security staff, first responders).
    /// Only a standing membership counts: a booking never lets anyone through a lockdown.
    public var lockdownOverride: Bool

    public init(id: String, name: String? = nil, locks: LockSelection, schedule: Timetable = .always,
                officeMode: Bool = false, lockdownOverride: Bool = false) {
        self.id = id
        self.name = name ?? id
        self.locks = locks
        self.schedule = schedule
        self.officeMode = officeMode
        self.lockdownOverride = lockdownOverride
    }
}

public struct UserConfig: Sendable, Hashable, Codable {
    public static let maximumTags = 4
    public static let pinLengths: ClosedRange<Int> = 4...8

    /// A keypad PIN: 4 to 8 ASCII digits (the site file, the directory and the control API all ask this).
    public static func isValidPIN(_ pin: String) -> Bool { pinLengths.contains(pin.count) && pin.allSatisfy(\.isASCIIDigit) }

    public var id: String
    public var name: String
    public var tags: [TagUID]
    /// Digits only, 4…8. Never logged.
    public var pin: String?
    public var groups: [String]
    /// Tags and PINs work from this instant (a subscription starts at 00:00 of its start date).
    public var validFrom: Date?
    /// … and until this instant (exclusive).
    public var validUntil: Date?
    /// SALTO KS offline access for the user's tags: they still open a lock that cannot reach an online
    /// IQ (24/7, from the lock's offline list). A PIN has it without asking.
    public var offlineAccess: Bool
    /// Refused at every lock that holds a list saying so, with every credential, until unblocked.
    public var blocked: Bool

    public init(id: String, name: String? = nil, tags: [TagUID] = [], pin: String? = nil, groups: [String] = [],
                validFrom: Date? = nil, validUntil: Date? = nil, offlineAccess: Bool = false, blocked: Bool = false) {
        self.id = id
        self.name = name ?? id
        self.tags = tags
        self.pin = pin
        self.groups = groups
        self.validFrom = validFrom
        self.validUntil = validUntil
        self.offlineAccess = offlineAccess
        self.blocked = blocked
    }

    /// Whether the user takes a place on a lock's offline list (SALTO KS: a PIN always does, tags only
    /// with offline access; a blocked user never does).
    public var isOfflineListed: Bool { !blocked && (offlineAccess && !tags.isEmpty || pin != nil) }
}

/// A complete, validated site. Produced only by `SiteFile` (or `SiteConfig.validated`), so every
/// reference in it resolves and every value is in range.
public struct SiteConfig: Sendable {
    public var organisation: String
    public var siteID: String
    public var name: String
    public var timeZone: SiteTimeZone
    public var locks: [LockConfig]
    public var doorControllers: [DoorControllerConfig]
    public var iqs: [IQConfig]
    public var accessGroups: [AccessGroupConfig]
    public var users: [UserConfig]

    // id → index, built once at validation.
    public private(set) var lockIndex: [String: Int] = [:]
    public private(set) var controllerIndex: [String: Int] = [:]
    public private(set) var iqIndex: [String: Int] = [:]
    public private(set) var groupIndex: [String: Int] = [:]
    public private(set) var userIndex: [String: Int] = [:]

    init(organisation: String, siteID: String, name: String, timeZone: SiteTimeZone, locks: [LockConfig],
         doorControllers: [DoorControllerConfig], iqs: [IQConfig], accessGroups: [AccessGroupConfig],
         users: [UserConfig]) {
        self.organisation = organisation
        self.siteID = siteID
        self.name = name
        self.timeZone = timeZone
        self.locks = locks
        self.doorControllers = doorControllers
        self.iqs = iqs
        self.accessGroups = accessGroups
        self.users = users
        reindex()
    }

    mutating func reindex() {
        func index<T>(_ items: [T], _ id: (T) -> String) -> [String: Int] {
            var d = [String: Int](minimumCapacity: items.count)
            for (i, item) in items.enumerated() where d[id(item)] == nil { d[id(item)] = i }
            return d
        }
        lockIndex = index(locks, \.id)
        controllerIndex = index(doorControllers, \.id)
        iqIndex = index(iqs, \.id)
        groupIndex = index(accessGroups, \.id)
        userIndex = index(users, \.id)
    }

    public func lock(_ id: String) -> LockConfig? { lockIndex[id].map { locks[$0] } }
    public func doorController(_ id: String) -> DoorControllerConfig? { controllerIndex[id].map { doorControllers[$0] } }
    public func iq(_ id: String) -> IQConfig? { iqIndex[id].map { iqs[$0] } }
    public func accessGroup(_ id: String) -> AccessGroupConfig? { groupIndex[id].map { accessGroups[$0] } }
    public func user(_ id: String) -> UserConfig? { userIndex[id].map { users[$0] } }

    /// The controller driving a lock, if any.
    public func controller(forLock lockID: String) -> DoorControllerConfig? {
        doorControllers.first { $0.lockID == lockID }
    }
}
