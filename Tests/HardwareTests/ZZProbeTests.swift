import XCTest
import Foundation
@testable import Hardware
func rss() -> Int {
    let s = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
    return (Int(s.split(separator: " ")[1]) ?? 0) * 4096
}
final class ZZProbeTests: XCTestCase {
    func testSite10k() async throws {
        var t = Date()
        let yaml = SyntheticSite.yaml(locks: 10_000, iqs: 700)
        print("PROBE gen", Date().timeIntervalSince(t), "bytes", yaml.utf8.count)
        let r0 = rss()
        t = Date()
        let config = try SiteFile.parse(yaml: yaml, file: "s.yaml")
        let tParse = Date().timeIntervalSince(t)
        t = Date()
        let site = Site(config: config, clock: SimulatedClock())
        let tBuild = Date().timeIntervalSince(t)
        let r1 = rss()
        let out = await site.locksOutOfReach().count
        print("PROBE parse", tParse, "build", tBuild, "rss/lock", (r1 - r0) / 10_000, "outOfReach", out)
        withExtendedLifetime(site) {}
    }
}
