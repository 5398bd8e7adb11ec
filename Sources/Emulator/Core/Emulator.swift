import Events
import Foundation
import Hardware
import KeywayCrypto
import Logging
import MobileKey

/// One running emulator: a site's devices, their keys, the journal and upstream delivery, and the
/// loopback radio through which the built-in phone taps. The control API and the CLI drive it.
public final class Emulator: Sendable {
    public let options: EmulatorOptions
    public let config: SiteConfig
    public let clock: any KeywayClock
    public let simulatedClock: SimulatedClock?
    public let keys: SiteKeys
    public let journal: EventJournal
    public let bridge: EventBridge
    public let store: KeyStore
    public let logger: Logger
    public let startedAt: Date
    let clockStart: Date

    /// What a reset replaces, behind one lock.
    private struct State {
        var site: Site
        var radio: LoopbackRadio
        var delivery: WebhookDelivery?
        /// Journal position when the site was last reset: `GET /v1/events` starts after it by default.
        var resetPosition: Int64 = 0
        /// Lock certificates replaced by the fault API (`POST /v1/locks/{id}/certificate`), until reset.
        var certificateOverrides: [String: LockCertificate] = [:]
    }
    private let state: PthreadLocked<State>
    let certificateCache = LockCertificateCache()

    public var site: Site { state.withLock { $0.site } }
    var radio: LoopbackRadio { state.withLock { $0.radio } }
    public var resetPosition: Int64 { state.withLock { $0.resetPosition } }
    private var delivery: WebhookDelivery? { state.withLock { $0.delivery } }

    /// The certificate lock `id` presents in its reader hello now.
    public func lockCertificate(_ id: String) -> LockCertificate? {
        state.withLock { $0.certificateOverrides[id] } ?? keys.locks[id]?.certificate
    }

    func overrideCertificate(_ id: String, _ certificate: LockCertificate?) {
        state.withLock { $0.certificateOverrides[id] = certificate }
    }

    /// Lock certificates replaced by the fault API, by lock id.
    var certificateOverrides: [String: LockCertificate] { state.withLock { $0.certificateOverrides } }

    /// Loads the site, creates or loads its keys in `dataDir`, opens the journal, starts devices.
    public static func start(_ options: EmulatorOptions, logger: Logger = Logger(label: "keyway")) async throws -> Emulator {
        let config: SiteConfig
        do { config = try SiteFile.load(path: options.sitePath) } catch { throw EmulatorError.site("\(error)") }
        do { try FileManager.default.createDirectory(atPath: options.dataDir, withIntermediateDirectories: true) } catch {
            // Foundation's own description is a debug dump (Error Domain=… UserInfo=…): say it in words.
            let posix = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError).map { String(cString: strerror(Int32($0.code))) }
            throw EmulatorError.site("--data \(options.dataDir): cannot create the data directory (\(posix ?? (error as NSError).localizedDescription))")
        }

        let keysDir = options.dataDir + "/keys"
        var keys: SiteKeys
        if FileManager.default.fileExists(atPath: keysDir + "/issuer.key.pem") {
            keys = try SiteKeys.load(dir: keysDir)
            guard keys.siteID == config.siteID else {
                throw EmulatorError.site("\(keysDir) holds keys of site '\(keys.siteID)', the site file is '\(config.siteID)' — use another --data directory")
            }
            for l in config.locks where keys.locks[l.id] == nil {
                keys = try keys.addingLock(l.id, certificateValidity: EmulatedWorld.certificateValidity)
            }
            // Data directories from before the world span held certificates for five years from the
            // day they were made: re-issue them (same device keys), so no date breaks a tap.
            for l in config.locks where !EmulatedWorld.coversSpan(keys.locks[l.id]!.certificate) {
                keys = try keys.recertifying(l.id, validity: EmulatedWorld.certificateValidity, persist: true)
            }
        } else {
            keys = try SiteKeys.create(dir: keysDir, siteID: config.siteID, lockIDs: config.locks.map(\.id),
                                       certificateValidity: EmulatedWorld.certificateValidity)
        }

        let clock: any KeywayClock
        var simulated: SimulatedClock? = nil
        let start = options.clockStart ?? Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        if options.clock == .simulated, !EmulatedWorld.span.contains(start) {
            throw EmulatorError.site("the simulated clock must start between 2000 and 2100")
        }
        switch options.clock {
        case .real: clock = RealClock()
        case .simulated:
            let s = SimulatedClock(start: start)
            simulated = s
            clock = s
        }

        let journal = try EventJournal(path: options.dataDir + "/journal.sqlite")
        let bridge = EventBridge(journal: journal, siteID: config.siteID)
        // Each device comes back as its flash left it: trail, sequence numbers, state and lists.
        try await bridge.load(restoringState: true)
        let store = try KeyStore(path: options.dataDir + "/state.sqlite")
        let emulator = try Emulator(options: options, config: config, clock: clock, simulated: simulated, clockStart: start,
                                    keys: keys, journal: journal, bridge: bridge, store: store, logger: logger)
        try await emulator.restoreDirectory()
        try await emulator.restoreRevocations()
        for lock in emulator.site.locks { await lock.resume() }
        await emulator.site.start()
        try await emulator.startDelivery()
        return emulator
    }

    private init(options: EmulatorOptions, config: SiteConfig, clock: any KeywayClock, simulated: SimulatedClock?, clockStart: Date,
                 keys: SiteKeys, journal: EventJournal, bridge: EventBridge, store: KeyStore, logger: Logger) throws {
        self.options = options; self.config = config; self.clock = clock; self.simulatedClock = simulated
        self.clockStart = clockStart; self.keys = keys; self.journal = journal; self.bridge = bridge
        self.store = store; self.logger = logger; self.startedAt = Date()
        let site = Emulator.buildSite(config: config, clock: clock, keys: keys, bridge: bridge, store: store, logger: logger)
        state = PthreadLocked(State(site: site, radio: try LoopbackRadio(site: site, capturePath: options.capturePath, clock: clock)))
    }

    static func buildSite(config: SiteConfig, clock: any KeywayClock, keys: SiteKeys, bridge: EventBridge,
                          store: KeyStore, logger: Logger) -> Site {
        let siteID = config.siteID, siteFile = directoryOfSiteFile(config)
        return Site(config: config, clock: clock, sink: bridge.sink,
                    tapIdentities: Site.tapIdentities(keys: keys), issuer: keys.issuer,
                    persistDirectory: { state in
                        do {
                            let json = String(decoding: try directoryCoder.encode(state), as: UTF8.self)
                            try store.saveDirectory(site: siteID, siteFile: siteFile, state: json)
                        } catch {
                            // The state holds PINs: say what failed, never what was being written.
                            logger.error("could not store the directory in state.sqlite: \(type(of: error))")
                        }
                    })
    }

    private static let directoryCoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        return e
    }()

    /// The site file's users and groups, as stored beside a saved directory: when they differ from the
    /// file's now, the file was edited since and wins over what the access core did at run time.
    static func directoryOfSiteFile(_ config: SiteConfig) -> String {
        struct Initial: Encodable { let users: [UserConfig]; let groups: [AccessGroupConfig] }
        return String(decoding: (try? directoryCoder.encode(Initial(users: config.users, groups: config.accessGroups))) ?? Data(), as: UTF8.self)
    }

    /// The directory the access core left at the last run (users, groups, bookings, lockdown), unless the
    /// site file's own directory changed since.
    private func restoreDirectory() async throws {
        guard let saved = try store.directory(site: config.siteID) else { return }
        guard saved.siteFile == Emulator.directoryOfSiteFile(config) else {
            logger.notice("the site file's users or groups changed since the last run: the directory starts from the site file again")
            return
        }
        let state: SiteDirectory.State
        do { state = try JSONDecoder().decode(SiteDirectory.State.self, from: Data(saved.state.utf8)) } catch {
            throw EmulatorError.site("\(options.dataDir)/state.sqlite: the saved directory cannot be read (\(type(of: error))); start with another --data directory or remove the file")
        }
        do { try await site.directory.importState(state) } catch {
            throw EmulatorError.site("\(options.dataDir)/state.sqlite: the saved directory does not fit the site file (\(error))")
        }
    }

    /// Revocations survive a restart: re-publish the last signed list to the directory (IQs push it).
    private func restoreRevocations() async throws {
        if let signed = try store.signedRevocationList(site: config.siteID) {
            try await site.directory.publish(signedRevocationList: signed)
        }
    }

    private func startDelivery() async throws {
        var targets: [DeliveryTarget] = []
        for (i, u) in options.upstreams.enumerated() {
            switch options.upstreamFormat {
            case .cloudevents:
                targets.append(.webhook(try WebhookEndpoint(name: "upstream-\(i + 1)", url: u.url, secret: try WebhookSecret(u.secret))))
            case .kisi:
                // Own cursors ("kisi-upstream-N"): switching formats does not skip or repeat events on either.
                var endpoint = try WebhookEndpoint(name: "kisi-upstream-\(i + 1)", url: u.url, secret: nil)
                endpoint.encoding = KisiEvents.webhookEncoding(self, signatureKey: u.secret)
                targets.append(.webhook(endpoint))
            }
        }
        if let f = options.eventsFile { targets.append(f == "-" ? .stdout(name: "stdout") : .ndjsonFile(path: f, name: "ndjson")) }
        guard !targets.isEmpty else { return }
        let d = try WebhookDelivery(journal: journal, targets: targets,
                                    configuration: DeliveryConfiguration(requireCollected: !options.deliverHeld))
        try await d.start()
        state.withLock { $0.delivery = d }
    }

    public func shutdown() async {
        await site.stop()
        await bridge.stop()
        let d = delivery
        if let d {
            _ = try? await d.waitUntilIdle(timeout: .seconds(2))
            await d.stop()
        }
        radio.close()
        try? await journal.close()
    }

    /// Tell delivery new events exist (cheaper than waiting for its poll).
    func pokeDelivery() {
        guard let d = delivery else { return }
        Task { await d.poke() }
    }

    public var deliveryStatus: [EndpointStatus] {
        get async { (try? await delivery?.status()) ?? [] }
    }

    /// Back to the site file's initial state: devices, keys, revocations and (simulated) time.
    /// The journal keeps everything; listings start after the reset.
    public func reset() async throws -> Int64 {
        await bridge.flush()
        let old = site
        await old.stop()
        try store.reset()
        if let s = simulatedClock { await s.set(to: clockStart) }
        // The fresh devices keep their numbering and trails (nothing orphaned, no sequence repeated);
        // their state is the site file's, and stored as such.
        try await bridge.load(restoringState: false)
        let fresh = Emulator.buildSite(config: config, clock: clock, keys: keys, bridge: bridge, store: store, logger: logger)
        for lock in fresh.locks { await lock.persist() }
        // As at start: a lock commissioned on a weak battery reports it.
        for lock in fresh.locks { await lock.resume() }
        let newRadio = try LoopbackRadio(site: fresh, capturePath: options.capturePath, clock: clock)
        let oldRadio = state.withLock { s -> LoopbackRadio in
            let r = s.radio
            s.site = fresh
            s.radio = newRadio
            s.certificateOverrides = [:]
            return r
        }
        oldRadio.close()
        await fresh.start()
        await bridge.flush()
        let position = try await journal.lastPosition()
        state.withLock { $0.resetPosition = position }
        return position
    }
}

extension Emulator {
    /// Back to a saved world: as `reset`, with the snapshot's state where reset takes the site file's.
    /// `world` is the site file with the snapshot's geometry and IQ states; the caller has checked
    /// that every part applies (Snapshots.swift), so nothing stops half-way. Devices keep their
    /// numbering and trails; one `emulator.snapshot_restored` event marks the jump, and listings
    /// start at it. Returns that event.
    func restore(_ snapshot: WorldSnapshot, world: SiteConfig, lockMemory: [String: [String: [UInt8]]],
                 certificates: [String: LockCertificate], event: (Date) throws -> KeywayEvent) async throws -> RecordedEvent {
        await bridge.flush()
        let old = site
        await old.stop()
        // First the old devices lose their flash (nothing they write from here is stored), then time
        // moves: timers of theirs that fall due on the way change nothing.
        try await bridge.load(restoringState: false, lockMemory: lockMemory)
        if let s = simulatedClock { await s.set(to: snapshot.time) }
        try store.importState(snapshot.keys)
        let fresh = Emulator.buildSite(config: world, clock: clock, keys: keys, bridge: bridge, store: store, logger: logger)
        try await fresh.directory.importState(snapshot.directory)
        // Power and door switches before the locks resume: a lock then finds the door it saved.
        for c in snapshot.controllers { await fresh.doorController(c.id)?.importState(c.state) }
        for q in snapshot.iqs { if let a = q.activation { await fresh.iq(q.id)?.importActivation(a) } }
        // The restored memory becomes the locks' flash, so a restart after the restore comes back to it:
        // each lock stores its state, and the lists it holds are stored as the snapshot has them.
        for lock in fresh.locks { await lock.persist() }
        for (id, parts) in lockMemory {
            let lists = parts.filter { $0.key != "state" && $0.key != "trail" }
            if !lists.isEmpty { _ = bridge.write(AuditWrite(deviceKind: .lock, deviceID: id, memory: lists)) }
        }
        for (id, c) in certificates { try await fresh.lock(id)?.replaceCertificate(c.bytes) }
        let newRadio = try LoopbackRadio(site: fresh, capturePath: options.capturePath, clock: clock)
        let oldRadio = state.withLock { s -> LoopbackRadio in
            let r = s.radio
            s.site = fresh
            s.radio = newRadio
            s.certificateOverrides = certificates
            return r
        }
        oldRadio.close()
        await bridge.flush()
        let recorded = try await journal.record(try event(clock.now()))
        state.withLock { $0.resetPosition = recorded.position - 1 }
        // Open windows and office-mode passages run on from where they were.
        for lock in fresh.locks { await lock.resume() }
        await fresh.start()
        await bridge.flush()
        return recorded
    }
}

public enum EmulatorError: Error, CustomStringConvertible {
    case site(String)
    public var description: String {
        switch self {
        case .site(let s): return s
        }
    }
}
