import Events
import Foundation
import HTTPTypes
import Hardware
import Hummingbird
import KeywayAPI
import Logging
import NIOCore
import OpenAPIHummingbird
import OpenAPIRuntime
import Yams

/// The HTTP control API. Its routes, bodies and answers are the ones of the OpenAPI document
/// (Sources/KeywayAPI/openapi.yaml, served at /openapi.yaml): the generated server decodes each
/// request into the document's types and `ControlAPIHandler` answers with them. Around it sit the
/// guards (RequestGuard.swift, the bearer token), the body limit and the one error mapping
/// (`{"error": {"code", "message", "field"}}`, 4xx; a 500 names nothing).
public enum ControlAPI {
    static let maxBody = 64 * 1024

    public static func router(_ emu: Emulator) throws -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorMiddleware(methods: try OpenAPIDocumentFile.methodsByPath()))
        // Host, Origin and Content-Type checks (RequestGuard.swift), before the token: no web page
        // drives the API, loopback or not.
        router.add(middleware: RequestGuardMiddleware(listenHost: emu.options.listenHost, allowedHosts: emu.options.allowedHosts))
        let session = emu.options.apiToken.map { LiveViewSession(token: $0) }
        if let token = emu.options.apiToken, let session {
            router.add(middleware: BearerTokenMiddleware(token: token, session: session))
        }
        router.add(middleware: BodyLimitMiddleware())
        router.add(middleware: SetCookieMiddleware())
        // Compact, sorted JSON, as the API has always answered (the runtime's default pretty-prints).
        try ControlAPIHandler(emu: emu, session: session)
            .registerHandlers(on: router, configuration: Configuration(jsonEncodingOptions: [.sortedKeys, .withoutEscapingSlashes]))
        return router
    }
}

/// The bundled OpenAPI document: its bytes for GET /openapi.yaml, its paths for 405 answers.
public enum OpenAPIDocumentFile {
    public static func bytes() throws -> Data {
        guard let url = OpenAPIDocument.url else {
            throw APIError(500, "internal", "internal error")
        }
        return try Data(contentsOf: url)
    }

    /// Each path of the document as a router pattern (`/v1/locks/:id`) with its methods.
    static func methodsByPath() throws -> [(pattern: String, methods: [String])] {
        struct Document: Decodable { let paths: [String: PathItem] }
        struct PathItem: Decodable { let get, put, post, delete, patch: Present? }
        struct Present: Decodable { init(from decoder: any Decoder) throws {} }
        let doc = try YAMLDecoder().decode(Document.self, from: try bytes())
        return doc.paths.map { path, item in
            let methods = [("GET", item.get), ("PUT", item.put), ("POST", item.post), ("DELETE", item.delete), ("PATCH", item.patch)]
                .filter { $0.1 != nil }.map(\.0)
            let pattern = path.replacingOccurrences(of: #"\{([^}]+)\}"#, with: ":$1", options: .regularExpression)
            return (pattern, methods)
        }
    }
}

/// Reads the request body once, up to the API's limit (413 beyond it), so the generated decoders
/// work on a complete buffer of known length.
struct BodyLimitMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post || request.method == .put || request.method == .patch || request.method == .delete else {
            return try await next(request, context)
        }
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: ControlAPI.maxBody) } catch {
            throw APIError(413, "body_too_large", "request body over \(ControlAPI.maxBody) bytes")
        }
        var head = request.head
        // No body is the empty object, as it always was here: `POST /v1/reset` needs none, and a
        // missing required field is then named ("lock: required") instead of "not JSON".
        let body = buffer.readableBytes == 0 ? ByteBuffer(string: "{}") : buffer
        if buffer.readableBytes == 0 { head.headerFields[.contentType] = "application/json" }
        head.headerFields[.contentLength] = String(body.readableBytes)
        return try await next(Request(head: head, body: .init(buffer: body)), context)
    }
}

/// The generated server writes header values URI-escaped (OpenAPI's `simple` style); a Set-Cookie
/// (POST /v1/login) must reach the browser as written.
struct SetCookieMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        if let cookie = response.headers[.setCookie], let plain = cookie.removingPercentEncoding {
            response.headers[.setCookie] = plain
        }
        return response
    }
}

func jsonResponse(_ error: APIError) -> Response {
    Response(status: HTTPResponse.Status(code: error.status), headers: [.contentType: "application/json"],
             body: .init(byteBuffer: ByteBuffer(bytes: error.jsonBytes)))
}

/// Turns every thrown error into the document's JSON error body: an APIError keeps its status; a
/// request the generated decoder refused is a 400 naming the field; Hummingbird's own HTTP errors
/// (404 no route, 405) get a JSON body too; anything else is a 500 with no internals.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let methods: [(pattern: String, methods: [String])]

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
            return jsonResponse(e)
        } catch let e as ServerError {
            return jsonResponse(Self.apiError(e, context: context))
        } catch let e as HTTPError {
            if e.status == .notFound, let allowed = allowedMethods(for: request.uri.path), !allowed.contains(request.method.rawValue) {
                var r = jsonResponse(APIError(405, "method_not_allowed", "\(request.method.rawValue) not allowed; use \(allowed.joined(separator: ", "))"))
                r.headers[.allow] = (allowed + (allowed.contains("GET") ? ["HEAD"] : [])).joined(separator: ", ")
                return r
            }
            let code = e.status.code
            let name = code == 404 ? "not_found" : code == 405 ? "method_not_allowed" : "http_\(code)"
            return jsonResponse(APIError(code, name, e.body ?? e.status.reasonPhrase))
        } catch {
            context.logger.error("request failed: \(String(describing: type(of: error)))")
            return jsonResponse(APIError(500, "internal", "internal error"))
        }
    }

    /// What the generated server threw, in the API's words: the handler's own APIError, a body or
    /// parameter the document's types refused (named by its coding path), or a request the runtime
    /// could not take (its status, our message: the runtime's descriptions are Swift's, not ours).
    static func apiError(_ e: ServerError, context: Context) -> APIError {
        switch e.underlyingError {
        case let api as APIError:
            return api
        case let device as HardwareError:
            return .hardware(device)
        case let decoding as DecodingError:
            return requestError(decoding)
        default:
            let status = e.httpStatus.code
            switch status {
            case 415: return APIError(415, "unsupported_media_type", "request bodies must be Content-Type: application/json", field: "Content-Type")
            case 406: return APIError(406, "not_acceptable", "this operation answers application/json (see the document)", field: "Accept")
            case 400..<500: return APIError(status, "invalid_request", e.httpStatus.reasonPhrase)
            default:
                context.logger.error("request failed in \(e.operationID): \(String(describing: type(of: e.underlyingError)))")
                return APIError(500, "internal", "internal error")
            }
        }
    }

    static func requestError(_ e: DecodingError) -> APIError {
        let path: [any CodingKey]
        let message: String
        switch e {
        case .typeMismatch(let type, let c):
            path = c.codingPath
            message = "must be \(jsonType(type))"
        case .valueNotFound(_, let c):
            path = c.codingPath
            message = "required"
        case .keyNotFound(let key, let c):
            path = c.codingPath + [key]
            message = "required"
        case .dataCorrupted(let c):
            path = c.codingPath
            if c.debugDescription.hasPrefix("Additional properties are disabled") {
                message = "unknown field"
            } else if c.debugDescription.hasPrefix("must be") {
                message = c.debugDescription
            } else if path.isEmpty {
                return APIError(400, "invalid_json", "request body is not a valid JSON object of this operation")
            } else {
                message = "not an allowed value"
            }
        @unknown default:
            return APIError(400, "invalid_json", "request body is not valid")
        }
        let field = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        return field.isEmpty ? APIError(400, "invalid_json", "request body \(message)") : APIError.badRequest(field, message)
    }

    static func jsonType(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Int.Type, is Int64.Type: return "a whole number"
        case is Double.Type, is Float.Type: return "a number"
        case is Date.Type: return "an RFC 3339 date-time"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "a value of the documented type"
        }
    }

    func allowedMethods(for path: String) -> [String]? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        for r in methods {
            let rp = r.pattern.split(separator: "/", omittingEmptySubsequences: false)
            guard rp.count == parts.count else { continue }
            if zip(rp, parts).allSatisfy({ $0.hasPrefix(":") ? !$1.isEmpty : $0 == $1 }) { return r.methods }
        }
        return nil
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
                return jsonResponse(APIError(401, "unauthorized", "use Authorization: Bearer <token>"))
            }
            let presented = trimmed.dropFirst(scheme.count).trimmingCharacters(in: .whitespaces)
            guard constantTimeEquals(presented, token) else {
                return jsonResponse(APIError(401, "unauthorized", "wrong bearer token"))
            }
            return try await next(request, context)
        }
        if let cookie = request.cookies[LiveViewSession.cookieName] {
            guard session.matches(cookie.value) else {
                return jsonResponse(APIError(401, "unauthorized", "session expired: log in again"))
            }
            return try await next(request, context)
        }
        return jsonResponse(APIError(401, "unauthorized", "missing Authorization: Bearer token"))
    }
}
