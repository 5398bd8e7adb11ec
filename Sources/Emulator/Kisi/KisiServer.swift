import Foundation
import HTTPTypes
import Hardware
import Hummingbird
import Logging
import NIOCore
import OpenAPIHummingbird
import OpenAPIRuntime

/// The Kisi-compatible API on its own port (`keyway serve --kisi-listen`): the generated server of
/// Sources/KisiAPI/openapi.yaml answered by `KisiHandler`, behind the `KISI-LOGIN` key check and the
/// control API's body limit, every error in Kisi's `{"code", "message", "field"?}`.
public enum KisiServer {
    /// A fresh API key for a run that was given none (printed in the banner).
    public static func generateKey() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    public static func router(_ emu: Emulator, apiKey: String) throws -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: KisiErrorMiddleware())
        router.add(middleware: KisiLoginMiddleware(key: apiKey))
        router.add(middleware: BodyLimitMiddleware())
        try KisiHandler(emu: emu).registerHandlers(on: router, configuration: Configuration(jsonEncodingOptions: [.sortedKeys, .withoutEscapingSlashes]))
        return router
    }

    public static func run(_ emu: Emulator, host: String, port: Int, apiKey: String,
                           onReady: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        var logger = Logger(label: "keyway.kisi")
        logger.logLevel = .warning
        let app = Application(router: try router(emu, apiKey: apiKey),
                              configuration: .init(address: .hostname(host, port: port), serverName: "keyway-kisi"),
                              onServerRunning: { channel in await onReady(channel.localAddress?.port ?? port) }, logger: logger)
        try await app.run()
    }
}

func kisiResponse(_ e: KisiError) -> Response {
    Response(status: HTTPResponse.Status(code: e.status), headers: [.contentType: "application/json"],
             body: .init(byteBuffer: ByteBuffer(bytes: e.json)))
}

/// `Authorization: KISI-LOGIN <key>` on every request (scheme case-insensitive, key compared in
/// constant time).
struct KisiLoginMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let key: String
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let header = request.headers[.authorization]?.trimmingCharacters(in: .whitespaces) ?? ""
        let scheme = header.prefix { $0 != " " }
        guard scheme.uppercased() == "KISI-LOGIN" else {
            return kisiResponse(KisiError(401, "unauthorized", "use Authorization: KISI-LOGIN <api key>"))
        }
        guard constantTimeEquals(header.dropFirst(scheme.count).trimmingCharacters(in: .whitespaces), key) else {
            return kisiResponse(KisiError(401, "unauthorized", "wrong API key"))
        }
        return try await next(request, context)
    }
}

/// Every thrown error as Kisi's JSON error body: the handler's KisiError, the shared operations'
/// APIError, a body or parameter the document's types refused (422 naming it), Hummingbird's 404/405;
/// anything else a 500 naming nothing.
struct KisiErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as KisiError {
            return kisiResponse(e)
        } catch let e as APIError {
            return kisiResponse(KisiError(e))
        } catch let e as ServerError {
            switch e.underlyingError {
            case let k as KisiError: return kisiResponse(k)
            case let api as APIError: return kisiResponse(KisiError(api))
            case let device as HardwareError: return kisiResponse(KisiError(APIError.hardware(device)))
            default:
                let api = ErrorMiddleware.apiError(e, context: context)
                return kisiResponse(api.status == 400 ? KisiError(422, "invalid", api.message, field: api.field) : KisiError(api))
            }
        } catch let e as HTTPError {
            let code = e.status.code
            return kisiResponse(KisiError(code, code == 404 ? "not_found" : code == 405 ? "method_not_allowed" : "http_\(code)",
                                          code == 404 ? "no such path in the Kisi API Keyway emulates (docs/KISI.md)" : e.status.reasonPhrase))
        } catch {
            context.logger.error("kisi request failed: \(String(describing: type(of: error)))")
            return kisiResponse(KisiError(500, "internal", "internal error"))
        }
    }
}
