import Foundation

// keyway-bench: prints a table and writes .bench/results.json (../shared/BENCH.md). Each metric is
// measured next to a baseline taken in the same run; a metric that cannot be measured here is left out.
let report = BenchReport()
let only = Set(CommandLine.arguments.dropFirst())
func wanted(_ name: String) -> Bool { only.isEmpty || only.contains(name) }

if wanted("verify") { await runSection("verify") { try await benchVerify(report) } }
if wanted("tap") { await runSection("tap") { try await benchTap(report) } }
if wanted("fast") { await runSection("fast") { try await benchFastTap(report) } }
if wanted("journal") { await runSection("journal") { try await benchJournal(report) } }
if wanted("site") { await runSection("site") { try await benchSite(report) } }
if wanted("api") { await runSection("api") { try await benchAPI(report) } }

report.printTable()
try report.write(to: URL(fileURLWithPath: ".bench/results.json"))
print("wrote .bench/results.json")

func runSection(_ name: String, _ body: () async throws -> Void) async {
    do { try await body() } catch { print("bench \(name): not measured: \(error)") }
}
