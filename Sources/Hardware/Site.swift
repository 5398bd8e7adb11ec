import Foundation
import MobileKey

/// Which locks each IQ reaches: within its range (3-D distance), at most 16, nearest first (ties by lock
/// id), restricted to its explicit pairing list if it has one. A uniform grid keyed by cell makes a
/// 10,000-lock / 700-IQ site cost a few milliseconds to index.
struct ReachIndex {
    private(set) var lockPositions: [Position]
    private let lockIDs: [String]
    private(set) var iqPositions: [Position]
    private(set) var iqRanges: [Double]
    private let iqPairings: [Set<Int>?]
    private let cell: Double
    private var grid: [Int64: [Int32]] = [:]
    /// Per IQ: indices of the locks in reach, nearest first.
    private(set) var reach: [[Int32]]

    init(config: SiteConfig) {
        lockIDs = config.locks.map(\.id)
        lockPositions = config.locks.map(\.position)
        iqPositions = config.iqs.map(\.position)
        iqRanges = config.iqs.map(\.range)
        iqPairings = config.iqs.map { iq in iq.pairedLocks.map { Set($0.compactMap { config.lockIndex[$0] }) } }
        // Cells as large as the largest range: every lock in reach is in the 3×3 cells around the IQ.
        cell = max(iqRanges.max() ?? IQRadio.defaultRange, 1)
        reach = Array(repeating: [], count: config.iqs.count)
        grid.reserveCapacity(lockPositions.count / 4 + 1)
        for (i, p) in lockPositions.enumerated() { grid[key(p), default: []].append(Int32(i)) }
        for q in 0..<iqPositions.count { reach[q] = compute(q) }
    }

    private func cellCoordinates(_ p: Position) -> (Int64, Int64) {
        (Int64((p.x / cell).rounded(.down)), Int64((p.y / cell).rounded(.down)))
    }

    private func key(_ p: Position) -> Int64 {
        let (cx, cy) = cellCoordinates(p)
        return (cx << 32) ^ (cy & 0xFFFF_FFFF)
    }

    private func compute(_ q: Int) -> [Int32] {
        let center = iqPositions[q], range = iqRanges[q]
        let (cx, cy) = cellCoordinates(center)
        var found: [(Double, Int32)] = []
        let span = Int64((range / cell).rounded(.up))
        for dx in -span...span {
            for dy in -span...span {
                guard let bucket = grid[((cx + dx) << 32) ^ ((cy + dy) & 0xFFFF_FFFF)] else { continue }
                for l in bucket {
                    if let pairing = iqPairings[q], !pairing.contains(Int(l)) { continue }
                    let d = center.distance(to: lockPositions[Int(l)])
                    if d <= range { found.append((d, l)) }
                }
            }
        }
        found.sort { $0.0 != $1.0 ? $0.0 < $1.0 : lockIDs[Int($0.1)] < lockIDs[Int($1.1)] }
        return found.prefix(IQRadio.maximumLocks).map(\.1)
    }

    /// Moves a lock; returns the IQs whose reach changed.
    mutating func moveLock(_ l: Int, to p: Position) -> [Int] {
        let old = lockPositions[l]
        let oldKey = key(old), newKey = key(p)
        if oldKey != newKey {
            grid[oldKey]?.removeAll { $0 == Int32(l) }
            if grid[oldKey]?.isEmpty == true { grid[oldKey] = nil }
            grid[newKey, default: []].append(Int32(l))
        }
        lockPositions[l] = p
        var changed: [Int] = []
        for q in 0..<iqPositions.count {
            let r = iqRanges[q]
            // Only IQs that could have seen the lock before or can see it now need recomputing.
            guard iqPositions[q].distance(to: old) <= r || iqPositions[q].distance(to: p) <= r
                    || reach[q].contains(Int32(l)) else { continue }
            let fresh = compute(q)
            if fresh != reach[q] { reach[q] = fresh; changed.append(q) }
        }
        return changed
    }

    /// Moves an IQ or changes its range; returns whether its reach changed.
    mutating func updateIQ(_ q: Int, position: Position, range: Double) -> Bool {
        iqPositions[q] = position
        iqRanges[q] = range
        // A range beyond the cell size is fine: `compute` widens its search to enough cells.
        let fresh = compute(q)
        guard fresh != reach[q] else { return false }
        reach[q] = fresh
        return true
    }
}

/// A site at run time: every device of a site file, built and wired, with lookups and the geometry
/// operations a QA engineer performs (moving locks and IQs). The Emulator drives it.
public actor Site {
    public nonisolated let config: SiteConfig
    public nonisolated let clock: any KeywayClock
    /// The platform's users, groups and revocation list.
    public nonisolated let directory: SiteDirectory
    /// Which locks reach an online IQ now (their tags and PINs fall back on offline lists otherwise).
    /// A site with no IQ at all is a standalone installation: its locks judge by the whole list they
    /// were commissioned with, as they have no online mode to fall back from.
    public nonisolated let uplinks = SiteUplinks()
    /// In site-file order.
    public nonisolated let locks: [Lock]
    public nonisolated let doorControllers: [DoorController]
    public nonisolated let iqs: [IQ]

    private nonisolated let controllerOfLock: [Int: Int]
    private var index: ReachIndex

    /// Builds every device. `sink` receives every audit record as it is written; `collector` the
    /// batches IQs collect; `tapIdentities` provisions locks with site keys for mobile credentials
    /// (see `Site.tapIdentities(keys:)`); `issuer` lets the directory sign revocation lists.
    public init(config: SiteConfig, clock: any KeywayClock, sink: AuditSink? = nil, collector: TrailCollector? = nil,
                tapIdentities: [String: TapLockIdentity] = [:], issuer: CredentialIssuer? = nil,
                persistDirectory: (@Sendable (SiteDirectory.State) -> Void)? = nil) {
        self.config = config
        self.clock = clock
        directory = SiteDirectory(config: config, clock: clock, issuer: issuer, persist: persistDirectory)
        let initialList = SiteDirectory.initialAccessLists(config: config)
        let revocations = RevocationList.empty(siteID: config.siteID)

        var controllerOfLock: [Int: Int] = [:]
        for (ci, c) in config.doorControllers.enumerated() {
            if let li = config.lockIndex[c.lockID] { controllerOfLock[li] = ci }
        }
        var links: [Int: DoorLink] = [:]
        var locks: [Lock] = []
        locks.reserveCapacity(config.locks.count)
        for (li, lc) in config.locks.enumerated() {
            var link: DoorLink?
            if let ci = controllerOfLock[li] {
                let l = DoorLink(relay: config.doorControllers[ci].relay)
                links[ci] = l
                link = l
            }
            locks.append(Lock(config: lc, siteID: config.siteID, zone: config.timeZone, clock: clock, sink: sink,
                              door: link, accessList: initialList(lc.id), revocations: revocations,
                              tapIdentity: tapIdentities[lc.id], uplinks: config.iqs.isEmpty ? nil : uplinks))
        }
        self.locks = locks
        var controllers: [DoorController] = []
        for (ci, cc) in config.doorControllers.enumerated() {
            guard let li = config.lockIndex[cc.lockID], let link = links[ci] else { continue }
            controllers.append(DoorController(config: cc, lock: locks[li], link: link, clock: clock, sink: sink))
        }
        doorControllers = controllers
        self.controllerOfLock = controllerOfLock
        let index = ReachIndex(config: config)
        self.index = index
        var iqs: [IQ] = []
        iqs.reserveCapacity(config.iqs.count)
        for (qi, qc) in config.iqs.enumerated() {
            iqs.append(IQ(config: qc, clock: clock, directory: directory, sink: sink, collector: collector,
                          reach: index.reach[qi].map { locks[Int($0)] }, uplinks: uplinks))
        }
        self.iqs = iqs
    }

    /// Loads a site file and builds it.
    public static func load(path: String, clock: any KeywayClock, sink: AuditSink? = nil,
                            collector: TrailCollector? = nil, tapIdentities: [String: TapLockIdentity] = [:],
                            issuer: CredentialIssuer? = nil) throws -> Site {
        Site(config: try SiteFile.load(path: path), clock: clock, sink: sink, collector: collector,
             tapIdentities: tapIdentities, issuer: issuer)
    }

    /// Lock identities for the tap protocol from a site key directory (`keyway site init`).
    public static func tapIdentities(keys: SiteKeys,
                                     clockSkewTolerance: TimeInterval = Verifier.defaultClockSkewTolerance) -> [String: TapLockIdentity] {
        var out: [String: TapLockIdentity] = [:]
        for (lockID, lock) in keys.locks {
            let verifier = Verifier(siteID: keys.siteID, lockID: lockID, issuers: keys.trustedIssuers,
                                    clockSkewTolerance: clockSkewTolerance)
            out[lockID] = TapLockIdentity(lockID: lockID, deviceKey: lock.deviceKey, certificate: lock.certificate.bytes,
                                          verifier: verifier)
        }
        return out
    }

    /// Starts every IQ's periodic sync.
    public func start() async {
        for iq in iqs { await iq.start() }
    }

    public func stop() async {
        for iq in iqs { await iq.stop() }
    }

    // MARK: - Lookups

    public nonisolated func lock(_ id: String) -> Lock? { config.lockIndex[id].map { locks[$0] } }
    public nonisolated func doorController(_ id: String) -> DoorController? {
        doorControllers.first { $0.id == id }
    }
    public nonisolated func doorController(forLock lockID: String) -> DoorController? {
        guard let li = config.lockIndex[lockID], let ci = controllerOfLock[li] else { return nil }
        let cid = config.doorControllers[ci].id
        return doorControllers.first { $0.id == cid }
    }
    public nonisolated func iq(_ id: String) -> IQ? { config.iqIndex[id].map { iqs[$0] } }

    public func requireLock(_ id: String) throws -> Lock {
        guard let l = lock(id) else { throw HardwareError.unknownLock(id) }
        return l
    }

    /// The locks an IQ reaches now, nearest first.
    public func locksInReach(ofIQ iqID: String) throws -> [String] {
        guard let q = config.iqIndex[iqID] else { throw HardwareError.unknownIQ(iqID) }
        return index.reach[q].map { config.locks[Int($0)].id }
    }

    /// The IQs that reach a lock now.
    public func iqsReaching(lock lockID: String) throws -> [String] {
        guard let l = config.lockIndex[lockID] else { throw HardwareError.unknownLock(lockID) }
        return index.reach.enumerated().filter { $0.element.contains(Int32(l)) }.map { config.iqs[$0.offset].id }
    }

    /// Locks no IQ reaches (they work offline; their trails wait).
    public func locksOutOfReach() -> [String] {
        var covered = [Bool](repeating: false, count: config.locks.count)
        for r in index.reach { for l in r { covered[Int(l)] = true } }
        return covered.enumerated().filter { !$0.element }.map { config.locks[$0.offset].id }
    }

    public func position(ofLock lockID: String) throws -> Position {
        guard let l = config.lockIndex[lockID] else { throw HardwareError.unknownLock(lockID) }
        return index.lockPositions[l]
    }

    /// Puts locks in lockdown or lifts it (`locks` nil: every lock). Online IQs deliver it at once to the
    /// locks they link; the others learn it at a later sync. Returns (changed, delivered now) lock ids.
    public func setLockdown(_ on: Bool, locks ids: [String]?) async throws -> (changed: [String], delivered: [String]) {
        let changed = try await directory.setLockdown(on, locks: ids)
        let target = Set(ids ?? config.locks.map(\.id))
        var delivered = Set<String>()
        for iq in iqs { delivered.formUnion(await iq.deliverLockdown(to: target)) }
        return (changed, delivered.sorted())
    }

    // MARK: - Geometry

    private static func checkPosition(_ p: Position) throws {
        for v in [p.x, p.y, p.z] where !v.isFinite || abs(v) > Position.maximumCoordinate {
            throw HardwareError.invalidValue(field: "position", message: "coordinates must be finite and within ±\(Int(Position.maximumCoordinate)) m")
        }
    }

    /// Moves a lock (a locker relocated, a lock out of range for a test). IQs that now reach it sync it.
    public func moveLock(_ lockID: String, to position: Position) async throws {
        guard let l = config.lockIndex[lockID] else { throw HardwareError.unknownLock(lockID) }
        try Site.checkPosition(position)
        await locks[l].move(to: position)
        let changed = index.moveLock(l, to: position)
        for q in changed { await iqs[q].setReach(index.reach[q].map { locks[Int($0)] }) }
    }

    /// Moves an IQ and/or changes its range. Locks newly in reach are synced at once if it is online.
    public func moveIQ(_ iqID: String, to position: Position, range: Double? = nil) async throws {
        guard let q = config.iqIndex[iqID] else { throw HardwareError.unknownIQ(iqID) }
        try Site.checkPosition(position)
        let newRange = range ?? index.iqRanges[q]
        guard IQConfig.rangeLimits.contains(newRange) else {
            throw HardwareError.invalidValue(field: "range_m", message: "must be from 0.1 to 100 m")
        }
        await iqs[q].move(to: position)
        await iqs[q].setRange(newRange)
        if index.updateIQ(q, position: position, range: newRange) {
            await iqs[q].setReach(index.reach[q].map { locks[Int($0)] })
        }
    }
}
