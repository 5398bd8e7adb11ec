import Foundation
import Hardware
import Yams

/// site10k_load_ms / site10k_bytes_per_lock: a generated site of 10,000 locks and 700 IQs, loaded
/// and built into devices; next to parsing the same YAML with Yams alone.
func benchSite(_ report: BenchReport) async throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("kw-site10k-\(UUID().uuidString).yaml").path
    try SyntheticSite.yaml(locks: 10_000, iqs: 700).write(toFile: path, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: path) }
    let text = try String(contentsOfFile: path, encoding: .utf8)
    let p0 = now()
    _ = try Yams.compose(yaml: text)
    let parseMs = (now() - p0) * 1000

    let rssBefore = residentBytes()
    let t0 = now()
    let config = try SiteFile.load(path: path)
    let site = Site(config: config, clock: SimulatedClock())
    let loadMs = (now() - t0) * 1000
    let rssAfter = residentBytes()
    let perLock = Double(rssAfter - rssBefore) / Double(config.locks.count)
    report.add("site10k_load_ms", loadMs, unit: "ms", target: "<= 1000", baseline: parseMs, baselineWhat: "Yams parse of the same file alone, ms")
    report.add("site10k_bytes_per_lock", perLock, unit: "bytes", target: "<= 10240", baseline: Double(rssBefore) / 1024 / 1024,
               baselineWhat: "resident MiB before loading")
    withExtendedLifetime(site) {}
}

func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let f = s.split(separator: " ")
    return f.count > 1 ? (Int(f[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}
