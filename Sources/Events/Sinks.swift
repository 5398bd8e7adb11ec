import AsyncHTTPClient
import Foundation
import KeywayCrypto
#if canImport(Glibc)
import Glibc
#endif

/// What one delivery attempt came to.
public enum DeliveryOutcome: Sendable, Equatable {
    /// Acknowledged (2xx, or written by a file/stdout sink).
    case delivered(status: Int?)
    /// Try again later: no answer, 408, 429, 5xx, 3xx. `retryAfter` from a `Retry-After` header.
    case retry(status: Int?, error: String, retryAfter: Duration?)
    /// Refused for good: a 4xx other than 408/429. The event goes to the endpoint's dead letters.
    case rejected(status: Int, body: String, truncated: Bool)
}

/// A delivery target. The worker calls `deliver` for one event at a time per source, in sequence order,
/// and calls `flush` before it records progress, so a sink that buffers (the NDJSON file) makes its
/// output durable before the journal says "delivered".
public protocol EventSink: Sendable {
    /// Stable name (the delivery cursors are keyed by it): 1–128 of A–Z a–z 0–9 - . _ ~
    var name: String { get }
    /// For logs and `EndpointStatus.description`: must not contain secrets.
    var targetDescription: String { get }
    var startFrom: EndpointStart { get }
    func deliver(_ event: RecordedEvent, body: [UInt8]) async -> DeliveryOutcome
    func flush() async throws
    func shutdown() async
}

extension EventSink {
    public var startFrom: EndpointStart { .beginning }
    public func flush() async throws {}
    public func shutdown() async {}
}

/// What a webhook request carries for one event, when it is not the default (the CloudEvent, signed
/// per Standard Webhooks): another vendor's event shape and signature (`keyway serve --upstream-format
/// kisi`, docs/KISI.md). The journal, ordering, retries and dead letters stay the delivery's.
public struct WebhookEncoding: Sendable {
    public var contentType: String
    /// The request body for `event` (whose CloudEvent bytes are given), or nil when the event has no
    /// counterpart in that shape: it is then acknowledged without a request.
    public var body: @Sendable (RecordedEvent, [UInt8]) async -> [UInt8]?
    /// The headers that sign `body` (called for each attempt).
    public var signature: @Sendable ([UInt8]) -> [(name: String, value: String)]

    public init(contentType: String, body: @escaping @Sendable (RecordedEvent, [UInt8]) async -> [UInt8]?,
                signature: @escaping @Sendable ([UInt8]) -> [(name: String, value: String)]) {
        self.contentType = contentType
        self.body = body
        self.signature = signature
    }
}

/// An access core's webhook URL and its signing secret.
public struct WebhookEndpoint: Sendable {
    public let name: String
    public let url: String
    public let secret: WebhookSecret?
    public var startFrom: EndpointStart
    /// nil: the CloudEvent with Standard Webhooks headers.
    public var encoding: WebhookEncoding?
    /// Scheme, host, port and path only — what logs and status show.
    public let redactedURL: String

    /// `name` defaults to `webhook-` + 8 hex digits of SHA-256(url): stable across restarts, so the
    /// endpoint keeps its delivery cursors. `secret` nil sends unsigned requests (still with
    /// `webhook-id`/`webhook-timestamp`).
    public init(name: String? = nil, url: String, secret: WebhookSecret?, startFrom: EndpointStart = .beginning) throws {
        guard url.utf8.count <= 2048, let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = c.host, !host.isEmpty
        else { throw EventError.invalidURL("need an absolute http:// or https:// URL with a host") }
        let digest = SHA256.hash(Array(url.utf8)).prefix(4).map { String(format: "%02x", $0) }.joined()
        let finalName = name ?? "webhook-\(digest)"
        try EventSource.validateIdentifier(finalName, field: "endpoint")
        self.name = finalName
        self.url = url
        self.secret = secret
        self.startFrom = startFrom
        var r = URLComponents()
        r.scheme = scheme
        r.host = host
        r.port = c.port
        r.percentEncodedPath = c.percentEncodedPath
        redactedURL = r.string ?? "\(scheme)://\(host)"
    }
}

/// POSTs each event as a CloudEvents structured-mode JSON document with Standard Webhooks headers.
public struct WebhookSink: EventSink {
    public let endpoint: WebhookEndpoint
    let client: HTTPClient
    let clock: any EventClock
    let requestTimeout: Duration
    let maxResponseBodyBytes: Int

    public init(endpoint: WebhookEndpoint, client: HTTPClient, clock: any EventClock = SystemEventClock(),
                requestTimeout: Duration = .seconds(10), maxResponseBodyBytes: Int = 4096) {
        self.endpoint = endpoint
        self.client = client
        self.clock = clock
        self.requestTimeout = requestTimeout
        self.maxResponseBodyBytes = max(0, maxResponseBodyBytes)
    }

    public var name: String { endpoint.name }
    public var targetDescription: String { endpoint.redactedURL }
    public var startFrom: EndpointStart { endpoint.startFrom }

    public func deliver(_ event: RecordedEvent, body cloudEvent: [UInt8]) async -> DeliveryOutcome {
        // The timestamp is the time of this attempt (receivers reject stale ones), so each retry re-signs.
        let timestamp = Int64(clock.now().timeIntervalSince1970.rounded(.down))
        var request = HTTPClientRequest(url: endpoint.url)
        request.method = .POST
        request.headers.add(name: "user-agent", value: "Keyway-Webhooks/1")
        let body: [UInt8]
        let signed: [(name: String, value: String)]
        if let encoding = endpoint.encoding {
            guard let encoded = await encoding.body(event, cloudEvent) else { return .delivered(status: nil) }
            body = encoded
            request.headers.add(name: "content-type", value: encoding.contentType)
            signed = encoding.signature(body)
        } else {
            body = cloudEvent
            // Structured content mode of the CloudEvents HTTP binding: the whole event is the body.
            request.headers.add(name: "content-type", value: "application/cloudevents+json; charset=utf-8")
            do { signed = try StandardWebhooks.headers(secret: endpoint.secret, id: event.id, timestamp: timestamp, body: body) } catch {
                return .retry(status: nil, error: "signing failed: \(error)", retryAfter: nil)
            }
        }
        for h in signed { request.headers.add(name: h.name, value: h.value) }
        request.body = .bytes(body)
        do {
            let ms = max(1, Int64(requestTimeout.seconds * 1000))
            let response = try await client.execute(request, timeout: .milliseconds(ms))
            let status = Int(response.status.code)
            var kept: [UInt8] = []
            var total = 0
            do {
                for try await chunk in response.body {
                    total += chunk.readableBytes
                    if kept.count < maxResponseBodyBytes {
                        kept.append(contentsOf: chunk.readableBytesView.prefix(maxResponseBodyBytes - kept.count))
                    }
                    // Stop reading a runaway body; the connection is dropped rather than drained.
                    if total > 1 << 20 { break }
                }
            } catch {
                // A body cut short does not change the status the receiver already gave.
            }
            let text = String(decoding: kept, as: UTF8.self)
            let retryAfter = response.headers.first(name: "retry-after").flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) }
                .map { Duration.seconds(max(0, min($0, 86_400))) }
            switch status {
            case 200..<300:
                return .delivered(status: status)
            case 408, 429:
                return .retry(status: status, error: "HTTP \(status)", retryAfter: retryAfter)
            case 400..<500:
                return .rejected(status: status, body: text, truncated: total > kept.count)
            default:
                return .retry(status: status, error: "HTTP \(status)", retryAfter: status == 503 ? retryAfter : nil)
            }
        } catch {
            return .retry(status: nil, error: redact(String(describing: error)), retryAfter: nil)
        }
    }

    /// Errors from the HTTP stack may quote the URL; the URL may carry credentials (user:password@ or a
    /// token in the query). Replace it with its redacted form and bound the length.
    func redact(_ text: String) -> String {
        var t = text.replacingOccurrences(of: endpoint.url, with: endpoint.redactedURL)
        if t.utf8.count > 300 { t = String(t.prefix(300)) + "…" }
        return t
    }
}

/// Writes one CloudEvent JSON document per line to a file (NDJSON), appending. `flush` fsyncs, and the
/// delivery worker flushes before it records progress, so a line the journal calls delivered is on disk.
public final class NDJSONFileSink: EventSink, Sendable {
    public let name: String
    public let path: String
    private let fd: Int32
    /// Whether `fd` was closed; writes, fsyncs and the close hold this lock.
    private let isClosed = PthreadLocked(false)
    private let sync: Bool

    public init(path: String, name: String = "ndjson", fsync: Bool = true) throws {
        try EventSource.validateIdentifier(name, field: "endpoint")
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw EventError.invalidConfiguration("cannot open NDJSON sink \(path): \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        self.name = name
        self.path = path
        self.sync = fsync
    }

    deinit { if !isClosed.withLock({ $0 }) { _ = Glibc.close(fd) } }

    public var targetDescription: String { "file:\(path)" }

    public func deliver(_ event: RecordedEvent, body: [UInt8]) async -> DeliveryOutcome {
        var line = body
        line.append(0x0A)
        let error: String? = isClosed.withLock { closed in
            guard !closed else { return "sink closed" }
            return FileWriting.writeAll(fd, line)
        }
        if let error { return .retry(status: nil, error: error, retryAfter: nil) }
        return .delivered(status: nil)
    }

    public func flush() async throws {
        guard sync else { return }
        let rc: Int32 = isClosed.withLock { $0 ? 0 : fsync(fd) }
        if rc != 0 { throw EventError.invalidConfiguration("fsync \(path): \(String(cString: strerror(errno)))") }
    }

    public func shutdown() async {
        isClosed.withLock { closed in
            if !closed { _ = Glibc.close(fd); closed = true }
        }
    }
}

/// Writes one CloudEvent JSON document per line to standard output — `keyway serve` without an access core.
public final class StdoutSink: EventSink, Sendable {
    public let name: String
    /// Held while a line is written, so concurrent deliveries never interleave their bytes.
    private let writing = PthreadLocked(())
    private let fd: Int32

    public init(name: String = "stdout", fileDescriptor: Int32 = 1) throws {
        try EventSource.validateIdentifier(name, field: "endpoint")
        self.name = name
        self.fd = fileDescriptor
    }

    public var targetDescription: String { "stdout" }

    public func deliver(_ event: RecordedEvent, body: [UInt8]) async -> DeliveryOutcome {
        var line = body
        line.append(0x0A)
        let error = writing.withLock { _ in FileWriting.writeAll(fd, line) }
        if let error { return .retry(status: nil, error: error, retryAfter: nil) }
        return .delivered(status: nil)
    }
}

enum FileWriting {
    /// Writes every byte (retrying short writes and EINTR); returns an error text or nil.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> String? {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { buf -> Int in
                guard let base = buf.baseAddress else { return 0 }
                return write(fd, base + offset, bytes.count - offset)
            }
            if n < 0 {
                if errno == EINTR { continue }
                return "write: \(String(cString: strerror(errno)))"
            }
            offset += n
        }
        return nil
    }
}
