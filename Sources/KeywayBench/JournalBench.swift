import Events
import Foundation
import Hummingbird

/// journal_events_per_s (group commit, fsync per commit) next to SQLite with one transaction per
/// row; webhooks_per_s to a local HTTP receiver.
func benchJournal(_ report: BenchReport) async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-bench-journal-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let journal = try await JournalBenchmark.journalThroughput(path: dir.appendingPathComponent("j.sqlite").path, events: 100_000)
    let sqlite = try JournalBenchmark.sqliteOneTransactionPerRow(path: dir.appendingPathComponent("s.sqlite").path, rows: 2_000)
    report.add("journal_events_per_s", journal.perSecond, unit: "events/s", target: ">= 20000", baseline: sqlite.perSecond,
               baselineWhat: "SQLite, one transaction per row, inserts/s")
    report.add("journal_vs_sqlite_one_txn", journal.perSecond / sqlite.perSecond, unit: "ratio", target: ">= 10", baseline: sqlite.perSecond,
               baselineWhat: "SQLite, one transaction per row, inserts/s")

    // A local receiver that acknowledges every webhook, on an ephemeral port.
    let router = Router()
    router.post("/hook") { _, _ in HTTPResponse.Status.noContent }
    let portBox = PortBox()
    let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                          onServerRunning: { ch in await portBox.set(ch.localAddress?.port ?? 0) })
    let server = Task { try await app.run() }
    let port = await portBox.wait()
    let hooks = try await JournalBenchmark.webhookThroughput(journalPath: dir.appendingPathComponent("w.sqlite").path,
                                                             url: "http://127.0.0.1:\(port)/hook", secret: "whsec_" + Data(repeating: 7, count: 32).base64EncodedString(),
                                                             events: 5_000)
    server.cancel()
    report.add("webhooks_per_s", hooks.perSecond, unit: "deliveries/s", baseline: sqlite.perSecond, baselineWhat: "SQLite, one transaction per row, inserts/s")
}

actor PortBox {
    var port: Int?
    var waiters: [CheckedContinuation<Int, Never>] = []
    func set(_ p: Int) { port = p; for w in waiters { w.resume(returning: p) }; waiters = [] }
    func wait() async -> Int {
        if let port { return port }
        return await withCheckedContinuation { waiters.append($0) }
    }
}
