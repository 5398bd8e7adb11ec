import XCTest
@testable import Emulator

/// The Host rules of the control API's request guard (docs/SECURITY.md D48), for listen addresses the
/// Python peers cannot easily bind (IPv6, every interface, a name). End to end: test_api_guard.py.
final class RequestGuardTests: XCTestCase {
    func testHostNameParsing() {
        XCTAssertEqual(RequestGuardMiddleware.hostName("127.0.0.1:8080"), "127.0.0.1")
        XCTAssertEqual(RequestGuardMiddleware.hostName("LocalHost."), "localhost")
        XCTAssertEqual(RequestGuardMiddleware.hostName("[::1]:8080"), "::1")
        XCTAssertEqual(RequestGuardMiddleware.hostName("[::1]"), "::1")
        XCTAssertEqual(RequestGuardMiddleware.hostName("::1"), "::1")
        XCTAssertEqual(RequestGuardMiddleware.hostName("Keyway.Test:443"), "keyway.test")
        for bad in ["", ":8080", "[::1", "[::1]x", "host:port", "a b", "evil.example/x", "h\u{0}st", "[::1]:80a"] {
            XCTAssertNil(RequestGuardMiddleware.hostName(bad), bad)
        }
    }

    func testWhichHostsALoopbackServerAnswers() {
        let g = RequestGuardMiddleware(listenHost: "127.0.0.1", allowedHosts: ["lab.test"])
        for ok in ["127.0.0.1", "localhost", "::1", "lab.test"] { XCTAssertTrue(g.isAllowed(host: ok), ok) }
        for no in ["evil.example", "127.0.0.2", "10.0.0.1", "sub.lab.test", "localhost.evil.example", "0.0.0.0"] {
            XCTAssertFalse(g.isAllowed(host: no), no)
        }
        let v6 = RequestGuardMiddleware(listenHost: "::1", allowedHosts: [])
        XCTAssertTrue(v6.isAllowed(host: "::1"))
        XCTAssertTrue(v6.isAllowed(host: "localhost"))
        XCTAssertFalse(v6.isAllowed(host: "evil.example"))
    }

    func testEveryInterfaceAnswersAnyAddressButNoForeignName() {
        for listen in ["0.0.0.0", "::"] {
            let g = RequestGuardMiddleware(listenHost: listen, allowedHosts: ["[Keyway.LAN]"])
            for ok in ["192.168.1.20", "10.0.0.5", "fe80::1", "localhost"] { XCTAssertTrue(g.isAllowed(host: ok), "\(listen) \(ok)") }
            XCTAssertTrue(g.isAllowed(host: "keyway.lan"))
            XCTAssertFalse(g.isAllowed(host: "evil.example"), listen)
        }
        let named = RequestGuardMiddleware(listenHost: "build-box.local", allowedHosts: [])
        XCTAssertTrue(named.isAllowed(host: "build-box.local"))
        XCTAssertFalse(named.isAllowed(host: "192.168.1.20"))
    }

    func testOwnOrigins() {
        let g = RequestGuardMiddleware(listenHost: "127.0.0.1", allowedHosts: ["kw.example"])
        XCTAssertTrue(g.isOwnOrigin("http://127.0.0.1:8080", authority: "127.0.0.1:8080"))
        XCTAssertTrue(g.isOwnOrigin("HTTP://LOCALHOST:8080", authority: "localhost:8080"))
        XCTAssertTrue(g.isOwnOrigin("https://kw.example", authority: "127.0.0.1:8080"), "a proxy that rewrites Host")
        XCTAssertTrue(g.isOwnOrigin("https://kw.example:8443", authority: "127.0.0.1:8080"))
        for foreign in ["http://127.0.0.1:8081", "http://localhost:8080", "null", "http://evil.example", "https://kw.example.evil.example",
                        "ftp://127.0.0.1:8080", "http://127.0.0.1:8080/x", ""] {
            XCTAssertFalse(g.isOwnOrigin(foreign, authority: "127.0.0.1:8080"), foreign)
        }
    }

    func testJSONMediaTypes() {
        for ok in ["application/json", "Application/JSON", "application/json; charset=utf-8", " application/json ;x=y"] {
            XCTAssertTrue(RequestGuardMiddleware.isJSON(ok), ok)
        }
        for no in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx",
                   "application/json-patch+json", ""] {
            XCTAssertFalse(RequestGuardMiddleware.isJSON(no), no)
        }
    }

    func testSessionCookieIsNotTheTokenAndDiffersPerProcess() {
        let a = LiveViewSession(token: "s3cret"), b = LiveViewSession(token: "s3cret")
        XCTAssertEqual(a.value.count, 64)
        XCTAssertFalse(a.value.contains("s3cret"))
        XCTAssertNotEqual(a.value, b.value, "a restart must void old cookies")
        XCTAssertTrue(a.matches(a.value))
        XCTAssertFalse(a.matches(b.value))
        XCTAssertFalse(a.matches(""))
        let c = a.cookie()
        XCTAssertEqual(c.name, "keyway_session")
        XCTAssertTrue(c.httpOnly)
        XCTAssertEqual(c.sameSite, .strict)
        XCTAssertEqual(c.path, "/")
    }
}
