import Events
import Foundation
import Hardware
import MobileKey
import BLE

/// The devices' flash: every write a device makes (a record, what its trail dropped, its trail handed
/// to an IQ, its memory) goes straight into the journal's queue as one `DeviceWrite`, in the order the
/// device made it — one durable queue from record to delivery. Nothing here buffers or decides: the
/// lock's trail decides what is lost, the journal makes it durable, delivery reads the journal.
///
/// When a site is built, each device asks `saved(_:_:)` what its flash held: its last sequence number,
/// the records still in its trail (a lock's held events) and its memory. `load(restoringState:)` reads
/// that from the journal first.
public final class EventBridge: AuditStore {
    public let journal: EventJournal
    public let siteID: String

    private struct State {
        var saved: [String: SavedDevice] = [:]
        var failures = 0
    }
    private let state = Locked(State())
    /// Bumped by every `load`: the devices of an earlier build (before a reset) are gone, and whatever
    /// their leftover timers write is dropped — they must not number or store anything. A port holds
    /// it while it enqueues, so a write is either in the journal before `load` reads it, or dropped.
    private let generation = Locked(0)

    /// Records the journal refused (a mapping bug) or writes it could not make.
    public var failures: Int { state.withLock { $0.failures } }

    public init(journal: EventJournal, siteID: String) {
        self.journal = journal
        self.siteID = siteID
    }

    /// For `Site(sink:)`: the flash of the devices built now (until the next `load`).
    public var sink: AuditSink { Port(bridge: self, generation: generation.withLock { $0 }) }

    /// The store as the devices of one build see it.
    final class Port: AuditStore {
        let bridge: EventBridge
        let generation: Int
        init(bridge: EventBridge, generation: Int) { self.bridge = bridge; self.generation = generation }

        func saved(_ kind: DeviceKind, _ id: String) -> SavedDevice? {
            bridge.generation.withLock { $0 } == generation ? bridge.saved(kind, id) : nil
        }

        func write(_ w: AuditWrite) -> AuditReceipt {
            let receipt: AuditReceipt? = bridge.generation.withLock { current in
                current == generation ? bridge.write(w) : nil
            }
            if let receipt { return receipt }
            let dropped = AuditReceipt()
            dropped.resolve(nil)
            return dropped
        }
    }

    static func key(_ kind: DeviceKind, _ id: String) -> String { "\(kind.rawValue)/\(id)" }

    /// Reads what every device's flash holds from the journal, for the devices built next. Without
    /// `restoringState` (a reset to the site file) devices keep only their numbering and trails —
    /// records are never orphaned and sequence numbers never repeat — and start from the site file's state.
    /// `lockMemory` (a snapshot being restored: lock id → memory parts) then stands in for the locks'
    /// state: numbering, trails and the trail's loss bookkeeping stay the journal's.
    public func load(restoringState: Bool, lockMemory: [String: [String: [UInt8]]] = [:]) async throws {
        // From here on the devices built earlier write nothing; then everything they wrote is read back.
        generation.withLock { $0 += 1 }
        state.withLock { $0.saved = [:] }
        await journal.barrier()
        let flash = try await journal.deviceFlash(site: siteID)
        var saved: [String: SavedDevice] = [:]
        for (path, f) in flash {
            guard let source = try? EventSource(path: path) else { continue }
            let kind: DeviceKind
            switch source.kind {
            case .lock: kind = .lock
            case .controller: kind = .doorController
            case .iq: kind = .iq
            case .emulator: continue
            }
            let trail = f.held.compactMap { EventMapping.record(from: $0) }
            var memory = restoringState ? f.memory : f.memory.filter { $0.key == "trail" }
            if kind == .lock, let parts = lockMemory[source.id] {
                memory.merge(parts.filter { $0.key != "trail" }) { _, snapshot in snapshot }
            }
            saved[Self.key(kind, source.id)] = SavedDevice(lastSequence: UInt64(max(0, f.lastSequence)), trail: trail, memory: memory)
        }
        for (id, parts) in lockMemory where saved[Self.key(.lock, id)] == nil {
            saved[Self.key(.lock, id)] = SavedDevice(lastSequence: 0, memory: parts.filter { $0.key != "trail" })
        }
        state.withLock { $0.saved = saved }
    }

    public func saved(_ kind: DeviceKind, _ id: String) -> SavedDevice? {
        state.withLock { $0.saved[Self.key(kind, id)] }
    }

    public func write(_ w: AuditWrite) -> AuditReceipt {
        let receipt = AuditReceipt()
        let source: EventSource
        do {
            switch w.deviceKind {
            case .lock: source = try .lock(site: siteID, id: w.deviceID)
            case .doorController: source = try .controller(site: siteID, id: w.deviceID)
            case .iq: source = try .iq(site: siteID, id: w.deviceID)
            }
        } catch {
            state.withLock { $0.failures += 1 }
            receipt.resolve(nil)
            return receipt
        }
        var event: KeywayEvent?
        if let r = w.record {
            do {
                var e = try EventMapping.event(for: r, siteID: siteID)
                e.sequence = Int64(clamping: r.sequence)
                try e.validate()
                event = e
            } catch {
                // A record the journal cannot express is a bug: counted, and its caller gets no id. The
                // rest of the write (trail, memory) still goes to the journal.
                state.withLock { $0.failures += 1 }
            }
        }
        let hadRecord = w.record != nil

        let write = DeviceWrite(source: source, event: event, lost: w.dropped.map { Int64(clamping: $0) },
                                collectedThrough: w.collectedThrough.map { Int64(clamping: $0) },
                                collectedBy: w.collectedBy, memory: w.memory)
        journal.enqueue(write) { [weak self] result in
            switch result {
            case .success(let r):
                if r.eventError != nil { self?.state.withLock { $0.failures += 1 } }
                receipt.resolve(r.recorded?.id)
            case .failure:
                if hadRecord || !write.memory.isEmpty { self?.state.withLock { $0.failures += 1 } }
                receipt.resolve(nil)
            }
        }
        return receipt
    }

    /// The journal id of `decision`'s record once durable (nil if the journal refused it).
    public func eventID(for decision: Decision) async -> String? {
        await decision.eventID()
    }

    /// The journal id of `record` (by its device and sequence), once everything written so far is durable.
    public func eventID(for record: AuditRecord) async -> String? {
        await journal.barrier()
        let source: EventSource?
        switch record.deviceKind {
        case .lock: source = try? .lock(site: siteID, id: record.deviceID)
        case .doorController: source = try? .controller(site: siteID, id: record.deviceID)
        case .iq: source = try? .iq(site: siteID, id: record.deviceID)
        }
        guard let source, let e = try? await journal.event(source: source, sequence: Int64(clamping: record.sequence)) else { return nil }
        // The same device and number, and the same kind of event: this record, not another one.
        guard e.event.attributes["device_sequence"] == .int(Int64(clamping: record.sequence)),
              e.type == EventMapping.type(record.kind) else { return nil }
        return e.id
    }

    /// Waits until everything written so far is in the journal.
    public func flush() async {
        await journal.barrier()
    }

    public func stop() async {
        await flush()
    }
}
