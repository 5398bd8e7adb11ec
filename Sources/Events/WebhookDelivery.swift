import AsyncHTTPClient
import Foundation
import Logging

/// Exponential backoff with full jitter: the n-th retry waits a uniformly random time in
/// [0, min(maxDelay, initialDelay × multiplier^(n−1))]. Full jitter spreads the retries of many
/// sources hitting one recovering endpoint instead of letting them arrive in waves.
public struct RetryPolicy: Sendable, Equatable {
    public var initialDelay: Duration
    public var maxDelay: Duration
    public var multiplier: Double

    public init(initialDelay: Duration = .milliseconds(500), maxDelay: Duration = .seconds(300), multiplier: Double = 2) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.multiplier = multiplier
    }

    /// The upper bound of the wait before retry number `attempt` (1-based).
    public func ceiling(forAttempt attempt: Int) -> Duration {
        let exponent = Double(max(0, attempt - 1))
        let raw = initialDelay.seconds * pow(max(1, multiplier), min(exponent, 64))
        return .secondsDouble(min(raw, maxDelay.seconds))
    }

    /// The wait before retry number `attempt`, given a uniform random `unit` in [0, 1). A `Retry-After`
    /// from the server is honoured as a lower bound (still capped by `maxDelay`).
    public func delay(forAttempt attempt: Int, unit: Double, retryAfter: Duration? = nil) -> Duration {
        let u = unit.isFinite ? min(max(unit, 0), 1) : 0
        var d = ceiling(forAttempt: attempt).seconds * u
        if let retryAfter { d = max(d, retryAfter.seconds) }
        return .secondsDouble(min(d, maxDelay.seconds))
    }
}

public struct DeliveryConfiguration: Sendable {
    /// Deliver only events an IQ has collected (what a real deployment sees). Loopback integration tests
    /// turn it off to get events upstream the moment the lock records them.
    public var requireCollected: Bool
    /// Events read from the journal per source per turn; progress is recorded once per batch (so after a
    /// crash at most one batch per source is delivered again — with the same ids).
    public var batchSize: Int
    /// Sources delivered in parallel per endpoint. Within a source, strictly one event at a time.
    public var concurrency: Int
    public var retry: RetryPolicy
    public var requestTimeout: Duration
    public var connectTimeout: Duration
    /// Re-read the journal this often even without a wake-up (events recorded by another process).
    public var pollInterval: Duration
    /// Response body kept with a dead letter.
    public var maxResponseBodyBytes: Int

    public init(requireCollected: Bool = true, batchSize: Int = 100, concurrency: Int = 8, retry: RetryPolicy = RetryPolicy(),
                requestTimeout: Duration = .seconds(10), connectTimeout: Duration = .seconds(3),
                pollInterval: Duration = .seconds(1), maxResponseBodyBytes: Int = 4096) {
        self.requireCollected = requireCollected
        self.batchSize = batchSize
        self.concurrency = concurrency
        self.retry = retry
        self.requestTimeout = requestTimeout
        self.connectTimeout = connectTimeout
        self.pollInterval = pollInterval
        self.maxResponseBodyBytes = maxResponseBodyBytes
    }

    func validate() throws {
        guard (1...10_000).contains(batchSize) else { throw EventError.invalidConfiguration("batchSize must be 1…10000") }
        guard (1...1_024).contains(concurrency) else { throw EventError.invalidConfiguration("concurrency must be 1…1024") }
        guard retry.multiplier >= 1, retry.initialDelay >= .zero, retry.maxDelay >= retry.initialDelay else {
            throw EventError.invalidConfiguration("retry policy needs multiplier ≥ 1 and 0 ≤ initialDelay ≤ maxDelay")
        }
        guard (0...1 << 20).contains(maxResponseBodyBytes) else { throw EventError.invalidConfiguration("maxResponseBodyBytes must be 0…1 MiB") }
        guard pollInterval > .zero, requestTimeout > .zero, connectTimeout > .zero else {
            throw EventError.invalidConfiguration("timeouts and pollInterval must be positive")
        }
    }
}

/// Where events go upstream.
public enum DeliveryTarget: Sendable {
    /// HTTP webhooks signed per Standard Webhooks (the HTTP client is created and owned by the delivery).
    case webhook(WebhookEndpoint)
    /// One CloudEvent per line appended to a file, fsynced before progress is recorded.
    case ndjsonFile(path: String, name: String = "ndjson")
    /// One CloudEvent per line on standard output.
    case stdout(name: String = "stdout")
    /// Anything else implementing `EventSink`.
    case custom(any EventSink)
}

/// Upstream delivery: one worker per target, in order per source, at least once, with retries and dead
/// letters. Progress lives in the journal, so a restarted process continues where the last one stopped.
public actor WebhookDelivery {
    public let journal: EventJournal
    public let configuration: DeliveryConfiguration
    let sinks: [any EventSink]
    let clock: any EventClock
    let random: @Sendable () -> Double
    let logger: Logger
    private let httpClient: HTTPClient?
    private var workers: [Task<Void, Never>] = []
    private var bells: [Doorbell] = []
    private var listener: UInt64?
    private var started = false
    private var stopped = false

    /// - Parameters:
    ///   - clock: timestamps (`webhook-timestamp`) and backoff sleeps; inject one to make tests fast.
    ///   - random: uniform [0, 1) for jitter; inject for deterministic tests.
    public init(journal: EventJournal, targets: [DeliveryTarget], configuration: DeliveryConfiguration = DeliveryConfiguration(),
                clock: any EventClock = SystemEventClock(),
                random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
                logger: Logger = Logger(label: "keyway.events.delivery")) throws {
        try configuration.validate()
        var client: HTTPClient?
        var sinks: [any EventSink] = []
        var names = Set<String>()
        for target in targets {
            let sink: any EventSink
            switch target {
            case .webhook(let endpoint):
                if client == nil {
                    let timeout = HTTPClient.Configuration.Timeout(
                        connect: .milliseconds(max(1, Int64(configuration.connectTimeout.seconds * 1000))),
                        read: .milliseconds(max(1, Int64(configuration.requestTimeout.seconds * 1000))))
                    // Redirects are not followed: a webhook URL that redirects is misconfigured, and
                    // following it would send signed events somewhere nobody configured.
                    var httpConfig = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: timeout)
                    // A refused connection must come back to us at once: our backoff with full jitter (per
                    // source, recorded in the journal) governs retries. Left on, the client would hold each
                    // request while retrying the connection on its own schedule until the request timeout.
                    httpConfig.connectionPool.retryConnectionEstablishment = false
                    client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfig)
                }
                guard let client else { throw EventError.invalidConfiguration("no HTTP client") }
                sink = WebhookSink(endpoint: endpoint, client: client, clock: clock,
                                   requestTimeout: configuration.requestTimeout,
                                   maxResponseBodyBytes: configuration.maxResponseBodyBytes)
            case .ndjsonFile(let path, let name):
                sink = try NDJSONFileSink(path: path, name: name)
            case .stdout(let name):
                sink = try StdoutSink(name: name)
            case .custom(let s):
                try EventSource.validateIdentifier(s.name, field: "endpoint")
                sink = s
            }
            guard names.insert(sink.name).inserted else {
                try? client?.syncShutdown()
                throw EventError.duplicateEndpointName(sink.name)
            }
            sinks.append(sink)
        }
        self.journal = journal
        self.configuration = configuration
        self.sinks = sinks
        self.clock = clock
        self.random = random
        self.logger = logger
        self.httpClient = client
    }

    public var endpointNames: [String] { sinks.map(\.name) }

    /// Registers the endpoints in the journal and starts delivering.
    public func start() async throws {
        guard !started else { return }
        guard !stopped else { throw EventError.invalidConfiguration("a stopped delivery cannot be restarted; create a new one") }
        for sink in sinks {
            try await journal.registerEndpoint(sink.name, description: sink.targetDescription, startFrom: sink.startFrom)
        }
        started = true
        bells = sinks.map { _ in Doorbell() }
        let ringAll = bells
        listener = journal.addListener { _ in ringAll.forEach { $0.ring() } }
        for (sink, bell) in zip(sinks, bells) {
            let worker = DeliveryWorker(journal: journal, sink: sink, configuration: configuration, clock: clock,
                                        random: random, logger: logger)
            logger.info("delivering events", metadata: ["endpoint": "\(sink.name)", "target": "\(sink.targetDescription)",
                                                         "require_collected": "\(configuration.requireCollected)"])
            workers.append(Task { await worker.run(bell: bell) })
        }
    }

    /// Stops the workers (an attempt in flight is abandoned and will be retried by the next run), then
    /// closes the sinks and the HTTP client.
    public func stop() async {
        guard !stopped else { return }
        stopped = true
        if let listener { journal.removeListener(listener) }
        workers.forEach { $0.cancel() }
        bells.forEach { $0.ring() }
        for w in workers { await w.value }
        workers = []
        for s in sinks { await s.shutdown() }
        try? await httpClient?.shutdown()
    }

    /// Wakes the workers now (e.g. after the emulator changed what IQs can reach).
    public func poke() { bells.forEach { $0.ring() } }

    public func status() async throws -> [EndpointStatus] {
        let names = Set(sinks.map(\.name))
        return try await journal.deliveryStatus().filter { names.contains($0.name) }
    }

    /// Waits until no endpoint has anything deliverable left (under the collection policy) or `timeout`
    /// of real time passes. Returns whether it got there. For tests, `journal-stress` and graceful shutdown.
    public func waitUntilIdle(timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var busy = false
            for s in sinks {
                let pending = try await journal.pendingSources(endpoint: s.name, requireCollected: configuration.requireCollected)
                if !pending.isEmpty { busy = true; break }
                if !(try await journal.requeuedDeadLetters(endpoint: s.name, limit: 1)).isEmpty { busy = true; break }
            }
            if !busy { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return false
    }
}

/// The loop behind one endpoint.
final class DeliveryWorker: Sendable {
    let journal: EventJournal
    let sink: any EventSink
    let configuration: DeliveryConfiguration
    let clock: any EventClock
    let random: @Sendable () -> Double
    let logger: Logger

    init(journal: EventJournal, sink: any EventSink, configuration: DeliveryConfiguration, clock: any EventClock,
         random: @escaping @Sendable () -> Double, logger: Logger) {
        self.journal = journal
        self.sink = sink
        self.configuration = configuration
        self.clock = clock
        self.random = random
        var l = logger
        l[metadataKey: "endpoint"] = "\(sink.name)"
        self.logger = l
    }

    enum SourceResult: Sendable {
        case progressed
        case backingOff(until: Date)
        case failed
    }

    func run(bell: Doorbell) async {
        var requeueRetryAt: Date?
        var requeueAttempts = 0
        while !Task.isCancelled && !journal.isClosed {
            var didWork = false
            var wakeAt: Date?
            do {
                if requeueRetryAt.map({ $0 <= clock.now() }) ?? true {
                    let (worked, retryAt) = try await deliverRequeued(attempts: &requeueAttempts)
                    didWork = didWork || worked
                    requeueRetryAt = retryAt
                }
                if let r = requeueRetryAt { wakeAt = r }
                let pending = try await journal.pendingSources(endpoint: sink.name, requireCollected: configuration.requireCollected)
                let now = clock.now()
                var ready: [PendingSource] = []
                for p in pending {
                    if let next = p.nextAttempt, next > now {
                        wakeAt = min(wakeAt ?? next, next)
                    } else {
                        ready.append(p)
                    }
                }
                if !ready.isEmpty {
                    let progressed = await withTaskGroup(of: SourceResult.self) { group -> Bool in
                        var iterator = ready.makeIterator()
                        var progressed = false
                        for _ in 0..<configuration.concurrency {
                            guard let p = iterator.next() else { break }
                            group.addTask { await self.deliver(p) }
                        }
                        for await result in group {
                            if case .failed = result {} else { progressed = true }
                            if Task.isCancelled { continue }
                            if let p = iterator.next() { group.addTask { await self.deliver(p) } }
                        }
                        return progressed
                    }
                    // If every source failed on bookkeeping (not on the endpoint), pause instead of spinning.
                    if progressed { didWork = true } else { wakeAt = clock.now().addingTimeInterval(configuration.pollInterval.seconds) }
                }
            } catch {
                if Task.isCancelled || journal.isClosed { break }
                if case EventError.journalClosed = error { break }
                logger.error("journal read failed; retrying", metadata: ["error": "\(error)"])
                wakeAt = clock.now().addingTimeInterval(configuration.pollInterval.seconds)
            }
            if Task.isCancelled { break }
            if !didWork {
                var timeout = configuration.pollInterval
                if let wakeAt {
                    let until = Duration.secondsDouble(wakeAt.timeIntervalSince(clock.now()))
                    timeout = min(timeout, max(until, .milliseconds(1)))
                }
                let clock = self.clock
                await bell.wait(timeout: timeout, sleep: { try await clock.sleep(for: $0) })
            }
        }
    }

    /// Delivers up to one batch of one source, strictly in sequence order.
    func deliver(_ p: PendingSource) async -> SourceResult {
        do {
            let events = try await journal.deliverableEvents(source: p.source, after: p.deliveredSeq, through: p.upper,
                                                             limit: configuration.batchSize)
            guard !events.isEmpty else {
                // Everything in range was lost to a trail overflow: nothing to send, move past it.
                try await journal.advanceCursor(endpoint: sink.name, source: p.source, to: p.upper, status: nil)
                return .progressed
            }
            var acked = p.deliveredSeq
            var lastStatus: Int?
            for event in events {
                if Task.isCancelled { break }
                let outcome = await sink.deliver(event, body: event.cloudEventJSON())
                switch outcome {
                case .delivered(let status):
                    acked = event.sequence
                    lastStatus = status
                case .rejected(let status, let body, let truncated):
                    try await sink.flush()
                    let attempts = (acked == p.deliveredSeq ? p.attempts : 0) + 1
                    try await journal.deadLetter(endpoint: sink.name, event: event, status: status, body: body,
                                                 truncated: truncated, attempts: attempts)
                    logger.warning("endpoint rejected event; dead-lettered",
                                   metadata: ["event_id": "\(event.id)", "source": "\(p.source)", "status": "\(status)"])
                    acked = event.sequence
                    lastStatus = status
                case .retry(let status, let error, let retryAfter):
                    try await sink.flush()
                    let attempts = (acked == p.deliveredSeq ? p.attempts : 0) + 1
                    let delay = configuration.retry.delay(forAttempt: attempts, unit: random(), retryAfter: retryAfter)
                    let next = clock.now().addingTimeInterval(delay.seconds)
                    try await journal.recordFailure(endpoint: sink.name, source: p.source, deliveredThrough: acked,
                                                    attempts: attempts, nextAttempt: next, status: status, error: error)
                    // The first failure of an event is worth a notice; the rest of its retries are debug
                    // noise when an endpoint is down for hours.
                    logger.log(level: attempts == 1 ? .notice : .debug, "delivery failed; will retry",
                                  metadata: ["event_id": "\(event.id)", "source": "\(p.source)", "attempt": "\(attempts)",
                                             "error": "\(error)", "retry_in_ms": "\(Int(delay.seconds * 1000))"])
                    return .backingOff(until: next)
                }
            }
            try await sink.flush()
            if acked > p.deliveredSeq {
                try await journal.advanceCursor(endpoint: sink.name, source: p.source, to: acked, status: lastStatus)
            }
            return .progressed
        } catch {
            if !Task.isCancelled {
                logger.error("delivery bookkeeping failed", metadata: ["source": "\(p.source)", "error": "\(error)"])
            }
            return .failed
        }
    }

    /// Requeued dead letters go first. Returns whether anything was attempted and when to try again.
    func deliverRequeued(attempts: inout Int) async throws -> (Bool, Date?) {
        let letters = try await journal.requeuedDeadLetters(endpoint: sink.name, limit: configuration.batchSize)
        guard !letters.isEmpty else { attempts = 0; return (false, nil) }
        for event in letters {
            if Task.isCancelled { break }
            switch await sink.deliver(event, body: event.cloudEventJSON()) {
            case .delivered:
                try await sink.flush()
                try await journal.resolveDeadLetter(endpoint: sink.name, eventID: event.id)
                attempts = 0
            case .rejected(let status, let body, let truncated):
                try await journal.deadLetter(endpoint: sink.name, event: event, status: status, body: body,
                                             truncated: truncated, attempts: 1)
                attempts = 0
            case .retry(_, _, let retryAfter):
                attempts += 1
                let delay = configuration.retry.delay(forAttempt: attempts, unit: random(), retryAfter: retryAfter)
                return (true, clock.now().addingTimeInterval(delay.seconds))
            }
        }
        return (true, nil)
    }
}
