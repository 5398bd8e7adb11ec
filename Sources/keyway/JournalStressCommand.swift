import ArgumentParser
import Events
import Foundation

/// Hidden: drives the journal (and optionally delivery) hard so a test can SIGKILL it mid-stream and
/// check that every acknowledged event survives with the same id (Tests/peers/test_events_kill.py).
struct JournalStressCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "journal-stress", abstract: "Stress the event journal (for crash tests).",
                                                    shouldDisplay: false)
    @Option(help: "Journal database path.") var db: String
    @Option var sources = 8
    @Option(help: "Events to record; omit to run until killed.") var count: Int?
    @Option var concurrency = 64
    @Option var site = "stress"
    @Option var webhook: String?
    @Option var secret: String?

    func run() async throws {
        let options = JournalStress.Options(databasePath: db, sources: sources, count: count, concurrency: concurrency, site: site,
                                            webhookURL: webhook, webhookSecret: secret)
        let code = try await JournalStress.run(options) { line in print(line); fflush(nil) }
        if code != 0 { throw ExitCode(code) }
    }
}
