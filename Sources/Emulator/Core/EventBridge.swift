import Events
import Foundation
import Hardware
import MobileKey

/// Carries every audit record a device writes into the durable journal, in the order devices wrote
/// them, and IQ collections after the records they cover.
///
/// Devices call the sink synchronously while they change state, so the sink only appends to a queue;
/// one consumer drains whatever has accumulated into a single journal transaction (group commit).
/// Callers that need the event id — the tap API answers with it — wait for their record by
/// (device, sequence).
public final class EventBridge: @unchecked Sendable {
    public let journal: EventJournal
    public let siteID: String

    private enum Item { case record(AuditRecord), collected(iq: String, lock: String, through: UInt64) }

    private let lock = NSLock()
    private var queue: [Item] = []
    private var wake: CheckedContinuation<Void, Never>?
    private var recorded: [String: String] = [:]          // device key → event id
    private var recordedOrder: [String] = []
    private var waiters: [String: [CheckedContinuation<String?, Never>]] = [:]
    /// Per lock: device sequence → journal sequence, for translating an IQ collection.
    private var journalSequence: [String: [(device: UInt64, journal: Int64)]] = [:]
    private var consumer: Task<Void, Never>?
    private var stopped = false
    /// Records the journal could not take. Written by the consumer, read by anyone: under `lock`.
    private var _failures = 0
    public var failures: Int { lock.withLock { _failures } }

    public init(journal: EventJournal, siteID: String) {
        self.journal = journal
        self.siteID = siteID
        consumer = Task.detached { [weak self] in await self?.run() }
    }

    /// For `Site(sink:)`.
    public var sink: AuditSink { { [weak self] record in self?.enqueue(.record(record)) } }

    /// For `Site(collector:)`.
    public var collector: TrailCollector {
        { [weak self] iq, lockID, records in
            guard let last = records.map(\.sequence).max() else { return }
            self?.enqueue(.collected(iq: iq, lock: lockID, through: last))
        }
    }

    static func key(_ r: AuditRecord) -> String { "\(r.deviceKind.rawValue)/\(r.deviceID)/\(r.sequence)" }

    /// The journal id of `record` once it is durable (nil if the journal refused it).
    public func eventID(for record: AuditRecord) async -> String? {
        let k = Self.key(record)
        return await withCheckedContinuation { (c: CheckedContinuation<String?, Never>) in
            lock.lock()
            if let id = recorded[k] { lock.unlock(); c.resume(returning: id.isEmpty ? nil : id); return }
            waiters[k, default: []].append(c)
            lock.unlock()
        }
    }

    /// Waits until everything enqueued so far is in the journal.
    public func flush() async {
        let marker = AuditRecord.flushMarker(sequence: UInt64.random(in: 1...UInt64.max))
        enqueue(.record(marker))
        _ = await eventID(for: marker)
    }

    public func stop() async {
        await flush()
        let w = lock.withLock { () -> CheckedContinuation<Void, Never>? in stopped = true; defer { wake = nil }; return wake }
        w?.resume()
        await consumer?.value
    }

    private func enqueue(_ item: Item) {
        lock.lock()
        queue.append(item)
        let w = wake; wake = nil
        lock.unlock()
        w?.resume()
    }

    private func run() async {
        while let batch = await nextBatch() { await process(batch) }
    }

    /// Everything queued so far, waiting for the next enqueue when empty; nil once stopped and drained.
    private func nextBatch() async -> [Item]? {
        while true {
            let taken: [Item]? = lock.withLock {
                if !queue.isEmpty { let b = queue; queue = []; return b }
                return stopped ? [] : nil
            }
            if let taken { return taken.isEmpty ? nil : taken }
            await withCheckedContinuation { (w: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = lock.withLock {
                    if !queue.isEmpty || stopped { return true }
                    wake = w
                    return false
                }
                if resumeNow { w.resume() }
            }
        }
    }

    private func process(_ batch: [Item]) async {
        var i = 0
        while i < batch.count {
            // Consecutive records go in one transaction; a collection marker is applied in order.
            var records: [AuditRecord] = []
            while i < batch.count, case .record(let r) = batch[i], records.count < 500 { records.append(r); i += 1 }
            if !records.isEmpty { await write(records) }
            if i < batch.count, case .collected(let iq, let lockID, let through) = batch[i] {
                await collect(iq: iq, lock: lockID, through: through)
                i += 1
            }
        }
    }

    private func write(_ records: [AuditRecord]) async {
        var events: [KeywayEvent] = []
        var mapped: [(record: AuditRecord, key: String)] = []
        var markers: [String] = []
        for r in records {
            if r.isFlushMarker { markers.append(Self.key(r)); continue }
            do {
                let e = try EventMapping.event(for: r, siteID: siteID)
                // Checked one by one: the journal refuses a whole batch for one bad event, and one record
                // must never take the others of its batch down with it.
                try e.validate()
                events.append(e)
                mapped.append((r, Self.key(r)))
            } catch {
                // A record the journal cannot express is a bug; count it and answer its waiter.
                lock.withLock { _failures += 1 }
                resolve(Self.key(r), nil)
            }
        }
        var results: [RecordedEvent] = []
        if !events.isEmpty {
            // Retry: losing an event is worse than blocking devices for a moment.
            for attempt in 0..<50 {
                do { results = try await journal.record(events); break } catch {
                    if attempt == 49 { lock.withLock { _failures += events.count } }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
        }
        for ((r, k), e) in zip(mapped, results) {
            if r.deviceKind == .lock {
                lock.withLock { journalSequence[r.deviceID, default: []].append((r.sequence, e.sequence)) }
            }
            resolve(k, e.id)
        }
        if results.isEmpty { for (_, k) in mapped { resolve(k, nil) } }
        for m in markers { resolve(m, "flush") }
    }

    private func collect(iq: String, lock lockID: String, through deviceSeq: UInt64) async {
        let covered = lock.withLock { () -> [(device: UInt64, journal: Int64)] in
            var pairs = journalSequence[lockID] ?? []
            let covered = pairs.filter { $0.device <= deviceSeq }
            pairs.removeAll { $0.device <= deviceSeq }
            journalSequence[lockID] = pairs
            return covered
        }
        guard let through = covered.map(\.journal).max(), let source = try? EventSource.lock(site: siteID, id: lockID) else { return }
        _ = try? await journal.markCollected(source: source, through: through, by: iq)
    }

    private func resolve(_ key: String, _ id: String?) {
        lock.lock()
        let w = waiters.removeValue(forKey: key) ?? []
        // A refused record is remembered too (as ""): a caller that asks only after the refusal must
        // get its nil answer, not wait for ever.
        recorded[key] = id ?? ""
        recordedOrder.append(key)
        if recordedOrder.count > 20_000 {
            for old in recordedOrder.prefix(10_000) { recorded.removeValue(forKey: old) }
            recordedOrder.removeFirst(10_000)
        }
        lock.unlock()
        for c in w { c.resume(returning: id) }
    }
}

extension AuditRecord {
    static let flushDevice = "__flush__"
    static func flushMarker(sequence: UInt64) -> AuditRecord {
        AuditRecord(deviceKind: .lock, deviceID: flushDevice, sequence: sequence, time: Date(timeIntervalSince1970: 0), kind: .locked)
    }
    var isFlushMarker: Bool { deviceID == Self.flushDevice }
}
