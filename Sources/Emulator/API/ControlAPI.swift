import Events
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The HTTP control API (docs/openapi.yaml, also served at /openapi.yaml). JSON in and out,
/// snake_case fields, errors as `{"error": {"code", "message", "field"}}` with a 4xx status.
public enum ControlAPI {
    static let maxBody = 64 * 1024

    /// Every route and its methods: the router answers an unknown method on a known path with 404,
    /// so the error middleware uses this table to answer 405 with `Allow` instead.
    static let routes: [(pattern: String, methods: [String])] = [
        ("/v1/health", ["GET"]), ("/openapi.yaml", ["GET"]), ("/v1/site", ["GET"]), ("/v1/locks", ["GET"]),
        ("/v1/locks/:id", ["GET"]), ("/v1/locks/:id/open", ["POST"]), ("/v1/locks/:id/certificate", ["POST"]), ("/v1/iqs", ["GET"]), ("/v1/iqs/:id/online", ["POST"]),
        ("/v1/iqs/:id/position", ["POST"]), ("/v1/iqs/:id/sync", ["POST"]), ("/v1/controllers", ["GET"]),
        ("/v1/controllers/:id/power", ["POST"]), ("/v1/doors/:id/sensor", ["POST"]), ("/v1/doors/:id/exit", ["POST"]),
        ("/v1/keys", ["GET", "POST"]), ("/v1/keys/:id", ["DELETE"]), ("/v1/taps", ["POST"]), ("/v1/clock", ["GET"]),
        ("/v1/clock/advance", ["POST"]), ("/v1/clock/set", ["POST"]), ("/v1/events", ["GET"]), ("/v1/events/stream", ["GET"]),
        ("/v1/deliveries", ["GET"]), ("/v1/reset", ["POST"]), ("/", ["GET"]), ("/live", ["GET"]), ("/v1/login", ["POST"]),
    ]

    /// A route that takes a JSON body: its allow-listed fields and the operation. One table for the
    /// router and for the fuzz target that feeds the same operations hostile bodies (KeywayFuzz).
    public struct BodyOperation: Sendable {
        public let path: String
        public let allowed: Set<String>
        /// 201 Created instead of 200.
        public let created: Bool
        /// Runs the operation; the `String?` is the path's `:id`.
        public let run: @Sendable (Emulator, String?, JSONBody) async throws -> [String: Any]
    }

    public static let bodyOperations: [BodyOperation] = [
        BodyOperation(path: "/v1/locks/:id/open", allowed: ["action", "user", "iq"], created: false) { try await $0.remoteOpen(try pathID($1), $2) },
        BodyOperation(path: "/v1/locks/:id/certificate", allowed: Emulator.certificateFields, created: false) {
            try await $0.setLockCertificate(try pathID($1), $2)
        },
        BodyOperation(path: "/v1/iqs/:id/online", allowed: ["online"], created: false) { try await $0.iqOnline(try pathID($1), $2) },
        BodyOperation(path: "/v1/iqs/:id/position", allowed: ["x", "y", "z", "range_m"], created: false) { try await $0.iqPosition(try pathID($1), $2) },
        BodyOperation(path: "/v1/controllers/:id/power", allowed: ["on"], created: false) { try await $0.controllerPower(try pathID($1), $2) },
        BodyOperation(path: "/v1/doors/:id/sensor", allowed: ["open"], created: false) { try await $0.doorSensor(try pathID($1), $2) },
        BodyOperation(path: "/v1/keys", allowed: Emulator.keyFields, created: true) { emu, _, body in try await emu.issueKey(body) },
        BodyOperation(path: "/v1/taps", allowed: Emulator.tapFields, created: false) { emu, _, body in try await emu.tap(body) },
        BodyOperation(path: "/v1/clock/advance", allowed: ["seconds"], created: false) { emu, _, body in try await emu.advanceClock(body) },
        BodyOperation(path: "/v1/clock/set", allowed: ["time"], created: false) { emu, _, body in try await emu.setClock(body) },
    ]

    static func pathID(_ id: String?) throws -> String {
        guard let id else { throw APIError.badRequest("id", "missing") }
        return id
    }

    static func allowedMethods(for path: String) -> [String]? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        for r in routes {
            let rp = r.pattern.split(separator: "/", omittingEmptySubsequences: false)
            guard rp.count == parts.count else { continue }
            if zip(rp, parts).allSatisfy({ $0.hasPrefix(":") ? !$1.isEmpty : $0 == $1 }) { return r.methods }
        }
        return nil
    }

    public static func router(_ emu: Emulator) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        // Host, Origin and Content-Type checks (RequestGuard.swift), before the token: no web page
        // drives the API, loopback or not.
        router.add(middleware: RequestGuardMiddleware(listenHost: emu.options.listenHost, allowedHosts: emu.options.allowedHosts))
        let session = emu.options.apiToken.map { LiveViewSession(token: $0) }
        if let token = emu.options.apiToken, let session {
            router.add(middleware: BearerTokenMiddleware(token: token, session: session))
        }

        router.get("/v1/health") { _, _ in json(await emu.healthJSON()) }
        router.get("/openapi.yaml") { _, _ in
            let text = OpenAPIDocument.yaml
            return Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        // The live view (LiveView.swift): one self-contained page, a client of the routes below.
        router.get("/") { _, _ in liveView() }
        router.get("/live") { _, _ in liveView() }
        // The live view's login: the token in a JSON body, answered with an HttpOnly, SameSite=Strict
        // session cookie (RequestGuard.swift, LiveViewSession), so the token never sits in a URL.
        router.post("/v1/login") { req, _ in
            let body = try await parse(req, allowed: ["token"])
            let presented = try body.string("token", required: true, maxLength: 4096)!
            guard let token = emu.options.apiToken, let session else { return json(["token_required": false]) }
            guard constantTimeEquals(presented, token) else { throw APIError(401, "unauthorized", "wrong token", field: "token") }
            var r = json(["token_required": true])
            r.setCookie(session.cookie())
            return r
        }
        router.get("/v1/site") { _, _ in json(await emu.siteJSON()) }
        router.get("/v1/locks") { _, _ in json(await emu.locksJSON()) }
        router.get("/v1/locks/:id") { _, ctx in json(try await emu.lockJSON(id: try param(ctx, "id"))) }
        for op in bodyOperations {
            router.post(RouterPath(op.path)) { req, ctx in
                let id = op.path.contains(":id") ? try param(ctx, "id") : nil
                return json(try await op.run(emu, id, try await parse(req, allowed: op.allowed)), status: op.created ? .created : .ok)
            }
        }
        router.get("/v1/iqs") { _, _ in json(await emu.iqsJSON()) }
        router.post("/v1/iqs/:id/sync") { _, ctx in json(try await emu.iqSync(try param(ctx, "id"))) }
        router.get("/v1/controllers") { _, _ in json(await emu.controllersJSON()) }
        router.post("/v1/doors/:id/exit") { req, ctx in
            _ = try await parse(req, allowed: [])
            return json(try await emu.doorExit(try param(ctx, "id")))
        }

        router.get("/v1/keys") { req, _ in json(try emu.keysJSON(user: req.uri.queryParameters.get("user"))) }
        router.delete("/v1/keys/:id") { _, ctx in json(try await emu.revokeKey(try param(ctx, "id"))) }

        router.get("/v1/clock") { _, _ in json(emu.clockJSON()) }

        router.get("/v1/events") { req, _ in
            let q = req.uri.queryParameters
            let limit = try intQuery(q.get("limit"), "limit", 1...10_000) ?? 100
            let after = try intQuery(q.get("after"), "after", 0...Int.max).map(Int64.init)
            let since = try q.get("since").map { s -> Date in
                guard let d = parseRFC3339(s) else { throw APIError.badRequest("since", "must be an RFC 3339 date-time") }
                return d
            }
            let types = q.getAll("type").flatMap { $0.split(separator: ",").map(String.init) }
            let all = q.get("all") == "true"
            return json(try await emu.eventsJSON(types: types, lock: q.get("lock"), since: since, after: after, limit: limit, all: all))
        }
        router.get("/v1/events/stream") { req, _ in
            let after = try intQuery(req.uri.queryParameters.get("after"), "after", 0...Int.max).map(Int64.init) ?? emu.resetPosition
            let stream = emu.journal.follow(EventQuery(after: after == 0 ? nil : after))
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                            body: .init { writer in
                                try await writer.write(ByteBuffer(string: ": keyway event stream\n\n"))
                                for try await e in stream {
                                    let data = String(decoding: e.cloudEventJSON(), as: UTF8.self)
                                    try await writer.write(ByteBuffer(string: "id: \(e.position)\nevent: \(e.type.rawValue)\ndata: \(data)\n\n"))
                                }
                                try await writer.finish(nil)
                            })
        }
        router.get("/v1/deliveries") { _, _ in
            json(await emu.deliveryStatus.map { ["id": $0.name, "endpoint": $0.description, "delivered": Int($0.delivered),
                                                 "pending": Int($0.pending), "dead_lettered": Int($0.deadLettered)] as [String: Any] })
        }
        router.post("/v1/reset") { req, _ in
            _ = try await parse(req, allowed: [])
            let position = try await emu.reset()
            return json(["reset": true, "events_after": Int(position)])
        }
        return router
    }

    static func param(_ ctx: BasicRequestContext, _ name: String) throws -> String {
        guard let raw = ctx.parameters.get(name), let v = raw.removingPercentEncoding, !v.isEmpty, v.utf8.count <= 128 else {
            throw APIError.badRequest(name, "missing, badly encoded or too long")
        }
        return v
    }

    static func parse(_ req: Request, allowed: Set<String>) async throws -> JSONBody {
        var req = req
        let buffer: ByteBuffer
        do { buffer = try await req.collectBody(upTo: maxBody) } catch {
            throw APIError(413, "body_too_large", "request body over \(maxBody) bytes")
        }
        return try JSONBody(Data(buffer.readableBytesView), allowed: allowed)
    }

    static func intQuery(_ s: String?, _ name: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let s else { return nil }
        guard let v = Int(s), range.contains(v) else { throw APIError.badRequest(name, "must be an integer in \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

}

func liveView() -> Response {
    Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
             body: .init(byteBuffer: ByteBuffer(string: LiveView.html)))
}

func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// Turns every thrown error into a JSON error response: APIError keeps its status; Hummingbird's own
/// HTTP errors (404 no route, 405) get a JSON body too; anything else is a 500 with no internals.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            // HEAD is GET without the body (RFC 9110 §9.3.2).
            if request.method == .head {
                var head = request.head
                head.method = .get
                let response = try await next(Request(head: head, body: request.body), context)
                return Response(status: response.status, headers: response.headers, body: .init())
            }
            return try await next(request, context)
        } catch let e as APIError {
            return json(e.json, status: HTTPResponse.Status(code: e.status))
        } catch let e as HTTPError {
            if e.status == .notFound, let allowed = ControlAPI.allowedMethods(for: request.uri.path), !allowed.contains(request.method.rawValue) {
                var r = json(APIError(405, "method_not_allowed", "\(request.method.rawValue) not allowed; use \(allowed.joined(separator: ", "))").json,
                             status: .methodNotAllowed)
                r.headers[.allow] = (allowed + (allowed.contains("GET") ? ["HEAD"] : [])).joined(separator: ", ")
                return r
            }
            let code = e.status.code
            let name = code == 404 ? "not_found" : code == 405 ? "method_not_allowed" : "http_\(code)"
            return json(APIError(code, name, e.body ?? e.status.reasonPhrase).json, status: e.status)
        } catch {
            context.logger.error("request failed: \(String(describing: type(of: error)))")
            return json(APIError(500, "internal", "internal error").json, status: .internalServerError)
        }
    }
}

/// With a token (mandatory off loopback), every request needs `Authorization: Bearer <token>` (scheme
/// case-insensitive, RFC 9110 §11.1) or the live view's session cookie; both compared in constant time.
/// The live view page itself (`GET /`, `/live`: static HTML, no data) and `POST /v1/login` (which checks
/// the token itself) are open, so a browser can reach the login form.
struct BearerTokenMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let token: String
    let session: LiveViewSession
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if ((request.method == .get || request.method == .head) && (path == "/" || path == "/live"))
            || (request.method == .post && path == "/v1/login") {
            return try await next(request, context)
        }
        if let header = request.headers[.authorization] {
            let trimmed = header.trimmingCharacters(in: .whitespaces)
            let scheme = trimmed.prefix { $0 != " " }
            guard scheme.lowercased() == "bearer" else {
                return json(APIError(401, "unauthorized", "use Authorization: Bearer <token>").json, status: .unauthorized)
            }
            let presented = trimmed.dropFirst(scheme.count).trimmingCharacters(in: .whitespaces)
            guard constantTimeEquals(presented, token) else {
                return json(APIError(401, "unauthorized", "wrong bearer token").json, status: .unauthorized)
            }
            return try await next(request, context)
        }
        if let cookie = request.cookies[LiveViewSession.cookieName] {
            guard session.matches(cookie.value) else {
                return json(APIError(401, "unauthorized", "session expired: log in again").json, status: .unauthorized)
            }
            return try await next(request, context)
        }
        return json(APIError(401, "unauthorized", "missing Authorization: Bearer token").json, status: .unauthorized)
    }
}
