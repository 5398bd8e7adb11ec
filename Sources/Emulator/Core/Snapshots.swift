import Events
import Foundation
import Hardware
import KeywayAPI
import MobileKey

/// Snapshots of the whole emulated world (`/v1/snapshots`): taken from what each part owns — a lock's
/// flash (its memory parts in the journal), the site's geometry, IQs and door controllers, the
/// directory, the key store, certificate faults, the clock — and put back by `Emulator.restore`.
extension Emulator {
    var snapshotStore: SnapshotStore { SnapshotStore(directory: options.dataDir + "/snapshots") }

    public func listSnapshots() throws -> [Schemas.Snapshot] {
        let store = snapshotStore
        // A damaged file is skipped here (listing must not fail for it); getting it says why.
        return try store.ids().compactMap { id in try? store.read(id) }.map { try Emulator.snapshotDescription($0.summary) }
    }

    public func snapshot(id: String) throws -> Schemas.Snapshot {
        try Emulator.snapshotDescription(try readSnapshot(id).summary)
    }

    public func deleteSnapshot(id: String) throws -> Schemas.SnapshotDeleted {
        guard SnapshotStore.isValidID(id) else { throw APIError.notFound("snapshot", id) }
        let deleted: Bool
        do { deleted = try snapshotStore.delete(id) } catch { throw apiError(error) }
        guard deleted else { throw APIError.notFound("snapshot", id) }
        return Schemas.SnapshotDeleted(id: id, deleted: true)
    }

    public func createSnapshot(_ body: Schemas.SnapshotRequest) async throws -> Schemas.Snapshot {
        let store = snapshotStore
        let id: String
        if let given = try Input.text(body.id, "id", maxLength: 64) {
            guard SnapshotStore.isValidID(given) else {
                throw APIError.badRequest("id", "1–64 of A–Z a–z 0–9 - _ . not starting with '.'")
            }
            id = given
        } else {
            id = "snap-" + String(format: "%08x", UInt32.random(in: 0...UInt32.max))
        }
        let description = try Input.text(body.description, "description", maxLength: 256)
        if store.exists(id) { throw APIError(409, "snapshot_exists", "there is already a snapshot '\(id)'", field: "id") }
        guard store.ids().count < SnapshotStore.maximumCount else {
            throw APIError(409, "too_many_snapshots", "at most \(SnapshotStore.maximumCount) snapshots per data directory: delete one first")
        }
        let snapshot = try await captureWorld(id: id, description: description)
        do { try store.create(snapshot) } catch {
            if case .exists = error { throw APIError(409, "snapshot_exists", "there is already a snapshot '\(id)'", field: "id") }
            throw apiError(error)
        }
        return try Emulator.snapshotDescription(snapshot.summary)
    }

    /// Everything a restore needs, read from each part's owner once every write so far is durable.
    func captureWorld(id: String, description: String?) async throws -> WorldSnapshot {
        await settle()
        let site = self.site
        let time = clock.now()
        let flash = try await journal.deviceFlash(site: config.siteID)
        var blobs: [String: Data] = [:]
        var locks: [WorldSnapshot.LockImage] = []
        for lock in site.locks {
            let path = try EventSource.lock(site: config.siteID, id: lock.id).path
            var memory: [String: String] = [:]
            // The trail's loss bookkeeping is the journal's (what was lost stays lost).
            for (part, bytes) in flash[path]?.memory ?? [:] where part != "trail" {
                let key = WorldSnapshot.blobKey(bytes)
                blobs[key] = Data(bytes)
                memory[part] = key
            }
            locks.append(.init(id: lock.id, position: await lock.currentPosition, memory: memory))
        }
        var iqs: [WorldSnapshot.IQImage] = []
        for q in site.iqs {
            let s = await q.status
            iqs.append(.init(id: s.id, position: s.position, range: s.range, online: s.online, activated: s.activated,
                             activation: await q.exportActivation()))
        }
        var controllers: [WorldSnapshot.ControllerImage] = []
        for c in site.doorControllers { controllers.append(.init(id: c.id, state: await c.exportState())) }
        let directory = await site.directory.exportState()
        let revocationVersion = await site.directory.revocationList.version
        let keyState = try store.exportState()
        let overrides = certificateOverrides.sorted { $0.key < $1.key }.map {
            WorldSnapshot.CertificateOverride(lock: $0.key, notBefore: $0.value.issuedAt, expires: $0.value.expires)
        }
        let summary = WorldSnapshot.Summary(
            id: id, description: description, createdAt: rfc3339(Date()), time: rfc3339(time), clockMode: options.clock.rawValue,
            eventsAfter: try await journal.lastPosition(), users: directory.users.count, groups: directory.groups.count,
            keys: keyState.keyCount, accessListVersion: directory.accessListVersion, revocationListVersion: revocationVersion)
        return WorldSnapshot(format: WorldSnapshot.currentFormat, summary: summary, siteID: config.siteID,
                             issuerKeyID: Hex.encode(keys.issuerKeyID), time: time, directory: directory, keys: keyState,
                             locks: locks, iqs: iqs, controllers: controllers, certificateOverrides: overrides, blobs: blobs)
    }

    public func restoreSnapshot(id: String) async throws -> Schemas.SnapshotRestoreResult {
        let snapshot = try readSnapshot(id)
        // Every part is checked before anything is touched: a refused restore changes nothing.
        try checkCompatible(snapshot)
        var lockMemory: [String: [String: [UInt8]]] = [:]
        for l in snapshot.locks {
            var parts: [String: [UInt8]] = [:]
            for (part, key) in l.memory {
                guard let bytes = snapshot.blobs[key] else { throw unreadable(id, "lock '\(l.id)' names memory it does not hold") }
                parts[part] = Array(bytes)
            }
            if !parts.isEmpty { lockMemory[l.id] = parts }
        }
        var world = config
        for l in snapshot.locks {
            guard let i = world.lockIndex[l.id], Emulator.isPlausible(l.position) else { throw unreadable(id, "lock '\(l.id)': bad position") }
            world.locks[i].position = l.position
        }
        for q in snapshot.iqs {
            guard let i = world.iqIndex[q.id], Emulator.isPlausible(q.position), IQConfig.rangeLimits.contains(q.range) else {
                throw unreadable(id, "IQ '\(q.id)': bad position or range")
            }
            world.iqs[i].position = q.position
            world.iqs[i].range = q.range
            world.iqs[i].online = q.online
            world.iqs[i].activated = q.activated
        }
        // The directory is tried on a scratch copy (references, the revocation list's signature).
        do {
            try await SiteDirectory(config: config, clock: clock, issuer: keys.issuer).importState(snapshot.directory)
        } catch {
            throw unreadable(id, "its directory does not fit this site: \(error)")
        }
        guard Set(snapshot.keys.keyIDs).count == snapshot.keys.keyCount else { throw unreadable(id, "a key id appears twice") }
        var certificates: [String: LockCertificate] = [:]
        for o in snapshot.certificateOverrides {
            guard o.expires > o.notBefore,
                  let c = try? keys.recertifying(o.lock, validity: ValidityWindow(notBefore: o.notBefore, expires: o.expires), persist: false)
                    .locks[o.lock]?.certificate else {
                throw unreadable(id, "the certificate fault of lock '\(o.lock)' cannot be re-issued")
            }
            certificates[o.lock] = c
        }
        let restoresTime = simulatedClock != nil
        if restoresTime { try Emulator.requireInWorld(snapshot.time, field: "id") }

        let siteID = config.siteID
        let recorded = try await restore(snapshot, world: world, lockMemory: lockMemory, certificates: certificates) { now in
            KeywayEvent(type: .snapshotRestored, source: try .emulatorControl(site: siteID), time: now,
                        attributes: ["snapshot": .string(id), "snapshot_position": .int(snapshot.summary.eventsAfter),
                                     "clock_restored": .bool(restoresTime),
                                     "detail": .string("the world is back at snapshot '\(id)' of \(snapshot.summary.time)")])
        }
        await settle()
        return Schemas.SnapshotRestoreResult(restored: true, snapshot: try Emulator.snapshotDescription(snapshot.summary),
                                             clockRestored: restoresTime, time: rfc3339(clock.now()),
                                             eventsAfter: Int(recorded.position - 1), eventId: recorded.id)
    }

    private func readSnapshot(_ id: String) throws -> WorldSnapshot {
        guard SnapshotStore.isValidID(id) else { throw APIError.notFound("snapshot", id) }
        let snapshot: WorldSnapshot?
        do { snapshot = try snapshotStore.read(id) } catch { throw apiError(error) }
        guard let snapshot else { throw APIError.notFound("snapshot", id) }
        return snapshot
    }

    /// The snapshot was taken of this site file with these site keys.
    private func checkCompatible(_ s: WorldSnapshot) throws {
        func incompatible(_ why: String) -> APIError { APIError(409, "snapshot_incompatible", "snapshot '\(s.summary.id)' \(why)") }
        guard s.siteID == config.siteID else { throw incompatible("is of site '\(s.siteID)', this is '\(config.siteID)'") }
        guard s.issuerKeyID == Hex.encode(keys.issuerKeyID) else {
            throw incompatible("was taken with other site keys (issuer \(s.issuerKeyID)): its keys and signed lists do not verify here")
        }
        func compare(_ kind: String, _ saved: [String], _ site: [String]) throws {
            if let extra = Set(saved).subtracting(site).sorted().first { throw incompatible("has \(kind) '\(extra)', the site has no such \(kind)") }
            if let missing = Set(site).subtracting(saved).sorted().first { throw incompatible("has no \(kind) '\(missing)' (the site file changed since)") }
            if saved.count != Set(saved).count { throw unreadable(s.summary.id, "a \(kind) appears twice") }
        }
        try compare("lock", s.locks.map(\.id), config.locks.map(\.id))
        try compare("IQ", s.iqs.map(\.id), config.iqs.map(\.id))
        try compare("door controller", s.controllers.map(\.id), config.doorControllers.map(\.id))
    }

    private func unreadable(_ id: String, _ why: String) -> APIError {
        APIError(409, "snapshot_unreadable", "snapshot '\(id)' cannot be restored: \(why)")
    }

    private static func isPlausible(_ p: Position) -> Bool {
        [p.x, p.y, p.z].allSatisfy { $0.isFinite && abs($0) <= Position.maximumCoordinate }
    }

    func apiError(_ e: SnapshotStoreError) -> APIError {
        switch e {
        case .exists(let id): return APIError(409, "snapshot_exists", "there is already a snapshot '\(id)'", field: "id")
        case .unreadable(let why): return APIError(409, "snapshot_unreadable", why)
        case .io(let why):
            // The data directory failed us (disk full, permissions): the server's fault; its paths stay in the log.
            logger.error("snapshot store: \(why)")
            return APIError(500, "snapshot_io", "the data directory could not store or remove the snapshot file (see the server log)")
        }
    }

    static func snapshotDescription(_ s: WorldSnapshot.Summary) throws -> Schemas.Snapshot {
        Schemas.Snapshot(id: s.id, description: s.description, createdAt: s.createdAt, time: s.time, clockMode: try wire(s.clockMode),
                         eventsAfter: Int(s.eventsAfter), users: s.users, groups: s.groups, keys: s.keys,
                         accessListVersion: Int(s.accessListVersion), revocationListVersion: Int(s.revocationListVersion))
    }
}
