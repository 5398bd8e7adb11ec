// Several locks on one adapter: which lock each advertising slot carries, in turn, and which lock a
// phone's connection was made to. Pure value types, driven by the HCI events the advertiser reads, so
// the mapping is testable on event sequences without a controller.

/// One lock as advertised: its own static random address and its own payload (service UUID, name).
public struct LEAdvertisedLock: Equatable, Sendable {
    public let id: String
    public let address: LEStaticRandomAddress
    public let payload: LEAdvertisingPayload

    public init(id: String, address: LEStaticRandomAddress, payload: LEAdvertisingPayload) {
        self.id = id
        self.address = address
        self.payload = payload
    }
}

/// Which locks each advertising slot carries. A slot is one extended advertising set (its advertising
/// handle), or the controller's single legacy advertiser. With at least as many slots as locks each
/// slot carries one lock for good; with fewer, slot `s` carries locks `s`, `s + slots`, `s + 2·slots`, …
/// in turn, one per rotation step — every lock is on the air once every `ceil(locks / slots)` steps.
public struct LEAdvertisingRoster: Equatable, Sendable {
    /// The slot key of legacy advertising (extended advertising handles are 0x00…0xEF).
    public static let legacySlot: UInt8 = 0xFF
    /// The first advertising handle Keyway uses (BlueZ's own instances take 0 and small numbers).
    public static let firstSetHandle: UInt8 = 0x0A

    public let lockCount: Int
    /// The sets the controller reported (nil: no extended advertising, or legacy asked for).
    public let availableSets: Int?
    /// The slots' keys, in order: advertising handles, or `[legacySlot]`.
    public let slots: [UInt8]

    /// `availableSets`: what the controller reported (LE Read Number of Supported Advertising Sets), or
    /// nil without extended advertising (then one legacy slot).
    public init(lockCount: Int, availableSets: Int?) {
        self.lockCount = max(lockCount, 0)
        self.availableSets = availableSets
        if let sets = availableSets, sets > 0 {
            let usable = min(sets, self.lockCount, Int(0xEF - Self.firstSetHandle) + 1)
            slots = (0..<max(usable, 1)).map { Self.firstSetHandle + UInt8($0) }
        } else {
            slots = [Self.legacySlot]
        }
    }

    /// `plan`'s slots, remembering that the controller reported `reported` sets.
    init(reported: Int?, using plan: LEAdvertisingRoster) {
        lockCount = plan.lockCount
        availableSets = reported
        slots = plan.slots
    }

    public var isExtended: Bool { slots.first != Self.legacySlot }
    /// True when some slot carries more than one lock (advertising rotates).
    public var rotates: Bool { slots.count < lockCount }
    /// Rotation steps until every lock has been on the air once.
    public var cycleLength: Int { lockCount == 0 ? 0 : (lockCount + slots.count - 1) / slots.count }

    /// The index of the lock slot number `slotIndex` carries at rotation step `step` (nil: that slot has
    /// nothing at this step, when locks do not divide evenly).
    public func lock(slotIndex: Int, step: Int) -> Int? {
        guard slotIndex >= 0, slotIndex < slots.count, cycleLength > 0 else { return nil }
        let index = slotIndex + (step % cycleLength) * slots.count
        return index < lockCount ? index : nil
    }
}

/// Where a phone's connection came from, as the controller reported it.
public enum LEConnectionOrigin: Equatable, Sendable {
    /// Made from the advertising of lock number `Int` (an index into the advertised locks).
    case lock(Int)
    /// A connection the events do not tie to one lock (advertising not ours, or nothing advertised at
    /// that instant). Such a connection is refused: deny by default.
    case unknown
}

/// The connection → lock mapping, fed with the controller's events in the order they arrive on the HCI
/// socket (the controller's order). The state of each slot changes only on the controller's answers:
/// a lock is "on the air" in a slot from the Command Complete of the enable that put it there until
/// the Command Complete of the disable that took it off, or the connection that stopped it.
///
/// - Extended sets: LE Advertising Set Terminated names the advertising handle and the connection
///   handle; the lock is the one the slot carried. A set's address and data cannot change while it is
///   enabled, so that lock is the one whose address the phone connected to.
/// - Legacy: LE Connection Complete (peripheral role) is the connection made from the one legacy
///   advertiser; the lock is the one it carried. LE Set Random Address is refused while legacy
///   advertising is enabled, so the address and payload on the air always belong to that lock.
/// Anything else (a connection while nothing of ours is on the air, a set that is not ours) is
/// `.unknown`.
public struct LEConnectionAttribution: Equatable, Sendable {
    public let extended: Bool
    /// Slot key → index of the lock on the air in it, as confirmed by the controller.
    public private(set) var onAir: [UInt8: Int] = [:]
    /// Live connection handles → where they came from.
    public private(set) var connections: [UInt16: LEConnectionOrigin] = [:]

    public init(extended: Bool) { self.extended = extended }

    /// The controller accepted the enable of `slot` carrying lock `lock`.
    public mutating func enabled(slot: UInt8, lock: Int) { onAir[slot] = lock }

    /// The controller accepted the disable of `slot`.
    public mutating func disabled(slot: UInt8) { onAir[slot] = nil }

    /// Feeds one event. Returns the origin settled by it, if it settled one (with the slot that the
    /// connection stopped, which the advertiser turns back on).
    @discardableResult
    public mutating func handle(_ event: HCIEvent) -> (connection: UInt16, origin: LEConnectionOrigin, slot: UInt8?)? {
        switch event {
        case .leConnectionComplete(let status, let connection, let role, _, _) where status == 0 && role == 0x01:
            // Extended: the Advertising Set Terminated that follows (Core Vol 4 Part E §7.7.65.18) says
            // which set; legacy: the one legacy advertiser, stopped by this connection.
            guard !extended else { return nil }
            let slot = LEAdvertisingRoster.legacySlot
            let origin: LEConnectionOrigin = onAir[slot].map { .lock($0) } ?? .unknown
            onAir[slot] = nil
            connections[connection] = origin
            return (connection, origin, slot)
        case .leAdvertisingSetTerminated(let status, let handle, let connection, _) where status == 0 && extended:
            var origin: LEConnectionOrigin = onAir[handle].map { .lock($0) } ?? .unknown
            onAir[handle] = nil
            // One connection comes from one set (Core Vol 4 Part E §7.7.65.18). A second set claiming a
            // live connection makes its lock ambiguous: unknown, refused. (BlueZ's emulated controller
            // terminates every connectable set for each connection.)
            if connections[connection] != nil { origin = .unknown }
            connections[connection] = origin
            return (connection, origin, handle)
        case .leAdvertisingSetTerminated(_, let handle, _, _) where extended:
            // Ended without a connection (duration or event limit, or an error): off the air.
            onAir[handle] = nil
            return nil
        case .disconnectionComplete(let status, let connection, _) where status == 0:
            connections[connection] = nil
            return nil
        default:
            return nil
        }
    }

    /// Where `connection` came from: nil while the controller has not said (yet).
    public func origin(ofConnection connection: UInt16) -> LEConnectionOrigin? { connections[connection & 0x0FFF] }
}
