import Events
import Foundation
import Logging
import BLE

/// The body of the hidden `keyway journal-stress` command, used by Tests/peers/test_events_kill.py to
/// SIGKILL a process in the middle of a stream and check that nothing acknowledged was lost or renamed.
///
/// It records events from `concurrency` tasks across `sources` locks and, after each `record` call
/// returns (the event is durable), emits one JSON line `{"id":…,"source":…,"sequence":…,"position":…}`.
/// With a webhook it also delivers; once `count` events are recorded it waits until everything is
/// delivered, emits `{"done":true,…}` and returns.
enum JournalStress {
    struct Options: Sendable {
        var databasePath: String
        var sources: Int
        /// Events to record in this run; nil = until killed; 0 = record nothing (only deliver what's there).
        var count: Int?
        var concurrency: Int
        var site: String
        var webhookURL: String?
        /// `whsec_…` or a raw secret.
        var webhookSecret: String?
        var durability: JournalConfiguration.Durability
        /// How long to wait for the deliveries to finish after recording.
        var deliveryTimeout: Duration

        init(databasePath: String, sources: Int = 8, count: Int? = nil, concurrency: Int = 64, site: String = "stress",
                    webhookURL: String? = nil, webhookSecret: String? = nil,
                    durability: JournalConfiguration.Durability = .full, deliveryTimeout: Duration = .seconds(60)) {
            self.databasePath = databasePath
            self.sources = sources
            self.count = count
            self.concurrency = concurrency
            self.site = site
            self.webhookURL = webhookURL
            self.webhookSecret = webhookSecret
            self.durability = durability
            self.deliveryTimeout = deliveryTimeout
        }
    }

    /// The command's flags, for callers without ArgumentParser (the CLI may parse them itself):
    /// `--db PATH` (required), `--sources N`, `--count N`, `--concurrency N`, `--site S`, `--webhook URL`,
    /// `--secret S`, `--durability full|normal`, `--delivery-timeout SECONDS`.
    static func parse(arguments: [String]) throws -> Options {
        var values: [String: String] = [:]
        var i = 0
        let known: Set<String> = ["--db", "--sources", "--count", "--concurrency", "--site", "--webhook", "--secret",
                                  "--durability", "--delivery-timeout"]
        while i < arguments.count {
            let flag = arguments[i]
            guard known.contains(flag), i + 1 < arguments.count else {
                throw EventError.invalidConfiguration("journal-stress: unknown or incomplete option \(flag.prefix(40))")
            }
            values[flag] = arguments[i + 1]
            i += 2
        }
        guard let db = values["--db"] else { throw EventError.invalidConfiguration("journal-stress: --db PATH is required") }
        func int(_ flag: String) throws -> Int? {
            guard let v = values[flag] else { return nil }
            guard let n = Int(v) else { throw EventError.invalidConfiguration("journal-stress: \(flag) needs an integer") }
            return n
        }
        var o = Options(databasePath: db)
        if let n = try int("--sources") { o.sources = n }
        o.count = try int("--count")
        if let n = try int("--concurrency") { o.concurrency = n }
        if let s = values["--site"] { o.site = s }
        o.webhookURL = values["--webhook"]
        o.webhookSecret = values["--secret"]
        if let d = values["--durability"] {
            guard let v = JournalConfiguration.Durability(rawValue: d) else {
                throw EventError.invalidConfiguration("journal-stress: --durability is full or normal")
            }
            o.durability = v
        }
        if let t = try int("--delivery-timeout") { o.deliveryTimeout = .seconds(t) }
        return o
    }

    /// Returns the process exit status: 0 when done (everything delivered if a webhook was given), 1 when
    /// delivery did not finish within `deliveryTimeout`.
    static func run(_ options: Options, clock: any EventClock = SystemEventClock(),
                           logger: Logger = Logger(label: "keyway.journal-stress"),
                           emit: @escaping @Sendable (String) -> Void) async throws -> Int32 {
        guard (1...100_000).contains(options.sources), (1...4096).contains(options.concurrency) else {
            throw EventError.invalidConfiguration("sources must be 1…100000 and concurrency 1…4096")
        }
        if let c = options.count, c < 0 { throw EventError.invalidConfiguration("count must be ≥ 0") }
        let journal = try EventJournal(path: options.databasePath,
                                       configuration: JournalConfiguration(durability: options.durability), clock: clock)
        let locks = try (0..<options.sources).map { try EventSource.lock(site: options.site, id: "lock-\($0)") }
        var delivery: WebhookDelivery?
        if let url = options.webhookURL {
            let secret = try options.webhookSecret.map(WebhookSecret.init)
            let endpoint = try WebhookEndpoint(name: "stress-webhook", url: url, secret: secret)
            let d = try WebhookDelivery(
                journal: journal, targets: [.webhook(endpoint)],
                configuration: DeliveryConfiguration(batchSize: 100, concurrency: 8,
                                                     retry: RetryPolicy(initialDelay: .milliseconds(20), maxDelay: .milliseconds(500)),
                                                     requestTimeout: .seconds(5), pollInterval: .milliseconds(200)),
                clock: clock, logger: logger)
            try await d.start()
            delivery = d
        }
        let counter = StressCounter(limit: options.count)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<options.concurrency {
                group.addTask {
                    while let n = counter.next() {
                        let source = locks[(n + worker) % locks.count]
                        let event = KeywayEvent(type: n % 10 == 9 ? .accessDenied : .accessGranted, source: source, time: clock.now(),
                                                user: "user-\(n % 97)", method: .mobile, action: .open,
                                                reason: n % 10 == 9 ? "outside_schedule" : nil,
                                                stage: .collected(by: "iq-stress"))
                        let r = try await journal.record(event)
                        emit("{\"id\":\"\(r.id)\",\"source\":\"\(r.source.path)\",\"sequence\":\(r.sequence),\"position\":\(r.position)}")
                    }
                }
            }
            try await group.waitForAll()
        }
        var status: Int32 = 0
        if let delivery {
            let idle = try await delivery.waitUntilIdle(timeout: options.deliveryTimeout)
            status = idle ? 0 : 1
            await delivery.stop()
        }
        let last = try await journal.lastPosition()
        emit("{\"done\":true,\"recorded\":\(counter.issued),\"last_position\":\(last),\"delivered\":\(status == 0)}")
        try await journal.close()
        return status
    }
}

final class StressCounter: Sendable {
    private let limit: Int?
    private let n = Locked(0)
    init(limit: Int?) { self.limit = limit }
    func next() -> Int? {
        n.withLock { n in
            if let limit, n >= limit { return nil }
            defer { n += 1 }
            return n
        }
    }
    var issued: Int { n.withLock { $0 } }
}
