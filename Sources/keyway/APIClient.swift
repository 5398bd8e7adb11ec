import AsyncHTTPClient
import Foundation
import HTTPTypes
import KeywayAPI
import NIOCore
import NIOPosix
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime

// The QA commands' client of `keyway serve`: the `Client` that swift-openapi-generator makes from
// Sources/KeywayAPI/openapi.yaml, over AsyncHTTPClient. Every answer is a document type; every failure
// becomes one UserFacingError line — the server's own error body when it sent one, never a Swift dump.

/// A connected client plus what its messages name: the server URL (for "cannot reach") and, per call,
/// the request line (`POST /v1/taps`) that error messages start with.
struct APIConnection: Sendable {
    let client: Client
    /// As the user gave it, for messages.
    let server: String

    /// Answers are small JSON documents; anything bigger is not our server.
    static let maxResponse = 4 * 1024 * 1024
    /// A whole request, connection to last byte, in seconds. `clock --advance` of a month runs every timer
    /// on the way and takes seconds, so this is generous.
    static let timeoutSeconds: Int64 = 120

    /// Seconds to open the connection.
    static let connectSeconds: Int64 = 10

    /// One HTTP client for the process, never shut down (like `HTTPClient.shared`, whose configuration
    /// this is but for one thing): a refused or unresolvable connection fails at once. The shared client
    /// retries it with backoff until the request's deadline, so `keyway clock` against a stopped server
    /// would sit there for minutes instead of saying "cannot reach".
    static let httpClient: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(connectSeconds)
        return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
    }()

    /// `transport` is AsyncHTTPClient's unless a test brings its own.
    init(serverURL: URL, server: String, token: String?, transport: (any ClientTransport)? = nil) {
        self.server = server
        let transport = transport ?? AsyncHTTPClientTransport(configuration: .init(client: Self.httpClient, timeout: .seconds(Self.timeoutSeconds)))
        client = Client(serverURL: serverURL, transport: transport,
                        middlewares: [BearerToken(token: token), ResponseLimit(maxBytes: Self.maxResponse)])
    }

    /// Runs one operation and returns its 200 answer. `request` is the method and path for messages.
    func call<Output: APIOutput>(_ request: String, _ operation: (Client) async throws -> Output) async throws -> Output.Answer {
        let output: Output
        do { output = try await operation(client) } catch { throw failure(request, error) }
        switch output.outcome {
        case .ok(let answer):
            return answer
        case .failed(let status, let body):
            throw Self.message(request, status: status, body)
        case .undocumented(let status, let payload):
            // A status the document does not list (a 500, say) may still carry the usual error body.
            if let raw = payload.body, let data = try? await Data(collecting: raw, upTo: Self.maxResponse),
               let body = try? JSONDecoder().decode(Components.Schemas._Error.self, from: data) {
                throw Self.message(request, status: status, body)
            }
            throw UserFacingError("\(request): HTTP \(status)")
        }
    }

    static func message(_ request: String, status: Int, _ body: Components.Schemas._Error) -> UserFacingError {
        let e = body.error
        return UserFacingError("\(request): HTTP \(status) \(e.code): \(e.message)\(e.field.map { " (field \($0))" } ?? "")")
    }

    /// What went wrong below the document: no connection, an oversized answer, or an answer that is not
    /// the document's. The generated client wraps all of these in ClientError, whose description is a
    /// debug dump, so only the parts a person can act on are kept.
    func failure(_ request: String, _ error: any Error) -> UserFacingError {
        let client = error as? ClientError
        let cause = client?.underlyingError ?? error
        if cause is ResponseLimit.TooLarge {
            return UserFacingError("\(request): answer over \(Self.maxResponse) bytes")
        }
        if cause is EncodingError {  // the options are validated first, so this is a bug, not a user error
            return UserFacingError("\(request): the request could not be written as JSON")
        }
        if let response = client?.response {
            let status = response.status.code
            if let decoding = cause as? DecodingError {
                return UserFacingError("\(request): HTTP \(status): the answer does not match the API (\(Self.describe(decoding)))")
            }
            let type = response.headerFields[.contentType].map { "content type \($0)" } ?? "no content type"
            return UserFacingError("\(request): HTTP \(status): the answer is not the API's JSON (\(type))")
        }
        return UserFacingError("cannot reach keyway serve at \(server): \(ConnectionFailure.describe(cause))")
    }

    /// `field a.b: missing` — where the answer differs from the document, without Swift's context dump.
    static func describe(_ error: DecodingError) -> String {
        func at(_ keys: [any CodingKey]) -> String {
            let p = keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.isEmpty ? "the answer" : "field " + (p.hasPrefix(".") ? String(p.dropFirst()) : p)
        }
        switch error {
        case .keyNotFound(let key, let c): return "\(at(c.codingPath + [key])): missing"
        case .valueNotFound(_, let c): return "\(at(c.codingPath)): null"
        case .typeMismatch(_, let c): return "\(at(c.codingPath)): wrong type"
        case .dataCorrupted(let c): return c.codingPath.isEmpty ? "not JSON" : "\(at(c.codingPath)): unexpected value"
        @unknown default: return "unreadable"
        }
    }
}

/// Sends `Authorization: Bearer <token>` when a token was given (`--token` or KEYWAY_API_TOKEN).
struct BearerToken: ClientMiddleware {
    let token: String?

    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        if let token { request.headerFields[.authorization] = "Bearer \(token)" }
        return try await next(request, body, baseURL)
    }
}

/// Reads the whole answer, refusing one over `maxBytes` (the generated client would collect any size).
struct ResponseLimit: ClientMiddleware {
    struct TooLarge: Error {}
    let maxBytes: Int

    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        let (response, responseBody) = try await next(request, body, baseURL)
        guard let responseBody else { return (response, nil) }
        if case .known(let n) = responseBody.length, n > maxBytes { throw TooLarge() }
        var data = Data()
        for try await chunk in responseBody {
            guard data.count + chunk.count <= maxBytes else { throw TooLarge() }
            data.append(contentsOf: chunk)
        }
        return (response, HTTPBody(data))
    }
}

/// The outcome of one operation, whatever the operation: its 200 answer, a documented error status with
/// the document's error body, or a status the document does not list.
enum APIOutcome<Answer> {
    case ok(Answer)
    case failed(status: Int, Components.Schemas._Error)
    case undocumented(status: Int, UndocumentedPayload)

    static func failed<R: APIErrorResponse>(_ response: R) -> Self { .failed(status: R.status, response.error) }
}

/// A generated operation's Output, reduced to APIOutcome (one switch per operation, below).
protocol APIOutput: Sendable {
    associatedtype Answer
    var outcome: APIOutcome<Answer> { get }
}

/// The document's shared error responses (components/responses), each with its status.
protocol APIErrorResponse {
    static var status: Int { get }
    var error: Components.Schemas._Error { get }
}

extension Components.Responses.BadRequest: APIErrorResponse {
    static var status: Int { 400 }
    var error: Components.Schemas._Error { switch body { case .json(let e): e } }
}

extension Components.Responses.Unauthorized: APIErrorResponse {
    static var status: Int { 401 }
    var error: Components.Schemas._Error { switch body { case .json(let e): e } }
}

extension Components.Responses.NotFound: APIErrorResponse {
    static var status: Int { 404 }
    var error: Components.Schemas._Error { switch body { case .json(let e): e } }
}

extension Components.Responses.Conflict: APIErrorResponse {
    static var status: Int { 409 }
    var error: Components.Schemas._Error { switch body { case .json(let e): e } }
}

extension Components.Responses.TooLarge: APIErrorResponse {
    static var status: Int { 413 }
    var error: Components.Schemas._Error { switch body { case .json(let e): e } }
}

extension Components.Responses.Unprocessable: APIErrorResponse {
    static var status: Int { 422 }
    var error: Components.Schemas._Error { switch body { case .json(let e): e } }
}

extension Operations.Tap.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.TapResult> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .conflict(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .unprocessableContent(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.GetLock.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Lock> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.SetDoorSensor.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.DoorController> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .conflict(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .unprocessableContent(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.PressExit.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.ExitResult> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .conflict(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .unprocessableContent(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.SetIQOnline.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Iq> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.MoveIQ.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Iq> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .conflict(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .unprocessableContent(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.SyncIQ.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.IQSyncReport> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .notFound(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.GetClock.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Clock> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .unauthorized(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.AdvanceClock.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Clock> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .conflict(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

extension Operations.SetClock.Output: APIOutput {
    var outcome: APIOutcome<Components.Schemas.Clock> {
        switch self {
        case .ok(let r): switch r.body { case .json(let a): .ok(a) }
        case .badRequest(let e): .failed(e)
        case .unauthorized(let e): .failed(e)
        case .conflict(let e): .failed(e)
        case .contentTooLarge(let e): .failed(e)
        case .undocumented(let status, let payload): .undocumented(status: status, payload)
        }
    }
}

/// Why a request never got an answer, in words: what AsyncHTTPClient and NIO report, without their
/// debug descriptions (`IOError connection reset (error set): …`, `NIOConnectionError DNS error: …`).
enum ConnectionFailure {
    static func describe(_ error: any Error) -> String {
        switch error {
        case let e as NIOConnectionError:
            if e.dnsAError != nil || e.dnsAAAAError != nil { return "cannot resolve host \(e.host)" }
            return e.connectionErrors.first.map { describe($0.error) } ?? "cannot connect to \(e.host) port \(e.port)"
        case is SocketAddressError:
            return "cannot resolve the host"
        case let e as IOError:
            return systemMessage(e.errnoCode)
        case let e as HTTPClientError:
            switch e {
            case .connectTimeout: return "no connection within \(APIConnection.connectSeconds) s"
            case .deadlineExceeded, .readTimeout: return "no answer within \(APIConnection.timeoutSeconds) s"
            case .remoteConnectionClosed: return "the server closed the connection"
            default: return e.shortDescription.prefix(1).lowercased() + e.shortDescription.dropFirst()
            }
        case let e as ChannelError:
            switch e {
            case .connectTimeout: return "no connection within \(APIConnection.connectSeconds) s"
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed: return "the server closed the connection"
            default: return "connection failed"
            }
        default:
            return "connection failed"
        }
    }

    /// `Connection refused` for ECONNREFUSED: the C library's text, which names the cause in words.
    static func systemMessage(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "system error \(code)" }
        return String(cString: text)
    }
}

// MARK: - Printing answers

/// `--json`: the typed answer as the API's JSON, keys sorted, indented.
func printJSON(_ value: some Encodable) throws { print(try jsonText(value)) }

func jsonText(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// A JSON value as the API sent it, for `describeFields` (decoded from the typed answer's own encoding,
/// so the keys and values are exactly the API's).
enum JSONValue: Decodable, Equatable {
    case null, bool(Bool), int(Int), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    init(encoding value: some Encodable) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(value))
    }

    /// One value as `describeFields` shows it: null as `-`, objects as `{k=v …}`, arrays as `[a,b]`.
    var text: String {
        switch self {
        case .null: return "-"
        case .bool(let b): return "\(b)"
        case .int(let i): return "\(i)"
        case .double(let d): return "\(d)"
        case .string(let s): return s
        case .array(let a): return "[\(a.map(\.text).joined(separator: ","))]"
        case .object(let o): return "{\(describeFields(o))}"
        }
    }
}

/// `key=value` pairs, sorted, for one-line human output of an API answer.
func describeFields(_ value: some Encodable) throws -> String {
    guard case .object(let o) = try JSONValue(encoding: value) else { return try JSONValue(encoding: value).text }
    return describeFields(o)
}

func describeFields(_ o: [String: JSONValue]) -> String {
    o.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.text)" }.joined(separator: " ")
}
