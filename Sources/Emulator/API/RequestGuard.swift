import Foundation
import HTTPTypes
import Hummingbird
import KeywayCrypto

/// Keeps web pages from driving the control API (CSRF, DNS rebinding), token or not:
/// - `Host` must name the address the server listens on (an IP literal; any IP literal when bound to
///   every interface), `localhost`, or a name given with `--allow-host`: otherwise 421. A rebinding page
///   reaches us under its own DNS name, which is none of these.
/// - `Origin`, when sent, must be the API's own origin (`http(s)://` + the request's `Host`, or one on an
///   `--allow-host` name): otherwise 403. Browsers send it on every cross-origin request and every POST, so a foreign page's POST fails
///   here even on loopback without a token. The live view is same-origin and passes.
/// - `Sec-Fetch-Site: cross-site`/`same-site` on anything but a top-level navigation: 403.
/// - A request that carries a body must say `Content-Type: application/json`; one that names any
///   other type gets 415, body or not (an HTML form can only send form or text types).
struct RequestGuardMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let listenHost: String
    let allowedHosts: Set<String>

    static let secFetchSite = HTTPField.Name("Sec-Fetch-Site")!
    static let secFetchMode = HTTPField.Name("Sec-Fetch-Mode")!

    init(listenHost: String, allowedHosts: [String]) {
        self.listenHost = RequestGuardMiddleware.hostName(listenHost) ?? listenHost.lowercased()
        self.allowedHosts = Set(allowedHosts.compactMap(RequestGuardMiddleware.hostName))
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let authority = request.head.authority
        guard let authority, let host = Self.hostName(authority), isAllowed(host: host) else {
            throw APIError(421, "misdirected_request",
                           "Host is not an address or name this server answers to (see serve --allow-host)", field: "Host")
        }
        if let origin = request.headers[.origin] {
            guard isOwnOrigin(origin, authority: authority) else {
                throw APIError(403, "forbidden_origin", "requests from another origin are refused", field: "Origin")
            }
        }
        if let site = request.headers[Self.secFetchSite]?.lowercased(), site == "cross-site" || site == "same-site",
           request.headers[Self.secFetchMode]?.lowercased() != "navigate" {
            throw APIError(403, "forbidden_origin", "requests from another site are refused", field: "Origin")
        }
        if request.method != .get && request.method != .head {
            let hasBody = (request.headers[.contentLength].map { $0.trimmingCharacters(in: .whitespaces) != "0" } ?? false)
                || request.headers[.transferEncoding] != nil
            let type = request.headers[.contentType]
            if hasBody || type != nil {
                guard let type, Self.isJSON(type) else {
                    throw APIError(415, "unsupported_media_type", "request bodies must be Content-Type: application/json", field: "Content-Type")
                }
            }
        }
        return try await next(request, context)
    }

    /// The API's own origin: `http(s)://` + the request's Host, or any origin on an `--allow-host` name
    /// (a reverse proxy may rewrite Host to the listen address while the browser sends its own origin).
    func isOwnOrigin(_ origin: String, authority: String) -> Bool {
        let o = origin.lowercased()
        for scheme in ["http://", "https://"] where o.hasPrefix(scheme) {
            let rest = String(o.dropFirst(scheme.count))
            if rest == authority.lowercased() { return true }
            if let name = Self.hostName(rest), allowedHosts.contains(name) { return true }
        }
        return false
    }

    func isAllowed(host: String) -> Bool {
        if host == listenHost || host == "localhost" || allowedHosts.contains(host) { return true }
        guard Self.isIPLiteral(host) else { return false }
        if ["0.0.0.0", "::"].contains(listenHost) { return true }
        return ["127.0.0.1", "::1"].contains(host) && ["127.0.0.1", "::1", "localhost"].contains(listenHost)
    }

    static func isJSON(_ contentType: String) -> Bool {
        let media = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return media == "application/json"
    }

    /// The host part of a Host header (or a --listen / --allow-host value), lower-cased, without port,
    /// brackets or a trailing dot; nil if it is not a plausible host.
    static func hostName(_ authority: String) -> String? {
        var s = authority.trimmingCharacters(in: .whitespaces).lowercased()
        if s.hasPrefix("[") {
            guard let end = s.firstIndex(of: "]") else { return nil }
            let rest = s[s.index(after: end)...]
            guard rest.isEmpty || (rest.hasPrefix(":") && rest.dropFirst().allSatisfy(\.isNumber)) else { return nil }
            s = String(s[s.index(after: s.startIndex)..<end])
        } else if s.filter({ $0 == ":" }).count == 1 {
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            guard parts[1].allSatisfy(\.isNumber) else { return nil }
            s = String(parts[0])
        }
        if s.hasSuffix(".") { s.removeLast() }
        guard !s.isEmpty, s.utf8.count <= 253,
              s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-.:_".contains($0)) }) else { return nil }
        return s
    }

    static func isIPLiteral(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}

/// The live view's credential: a browser cannot add `Authorization: Bearer`, so `POST /v1/login`
/// checks the token once and sets an HttpOnly, SameSite=Strict cookie. The cookie holds
/// HMAC-SHA256(token, per-process random salt): never the token itself, and void after a restart.
public struct LiveViewSession: Sendable {
    public static let cookieName = "keyway_session"
    let value: String

    public init(token: String) {
        var salt = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in salt.indices { salt[i] = rng.next() }
        let mac = (try? HMACSHA256.authenticate(Array("keyway live view session v1".utf8) + salt, key: Array(token.utf8))) ?? salt
        value = mac.map { String(format: "%02x", $0) }.joined()
    }

    func cookie() -> Cookie {
        Cookie(name: Self.cookieName, value: value, path: "/", httpOnly: true, sameSite: .strict)
    }

    func matches(_ presented: String) -> Bool { constantTimeEquals(presented, value) }
}

/// Tokens and cookies compared in constant time (OpenSSL's CRYPTO_memcmp, via KeywayCrypto).
func constantTimeEquals(_ a: String, _ b: String) -> Bool { constantTimeEqual(Array(a.utf8), Array(b.utf8)) }
